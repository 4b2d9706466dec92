//! The `Date` header, formatted at most once a second and cached.
//!
//! RFC 9110 (6.6.1) asks an origin server with a clock to send `Date` in its 2xx and 4xx
//! answers. Formatting an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) per request would be
//! a cost no model needs, so every server keeps a [`DateCache`]: the formatted text and the
//! monotonic instant at which the wall-clock second it shows ends. Answering then costs one
//! comparison of instants the driver has already read; the wall clock is read, and the text
//! formatted, once a second.
//!
//! Where the cache lives is part of each model's lesson, and each model file says so:
//!
//! - the event loops (epoll, and each tokio worker) keep their own, refreshed once per wake-up;
//! - the thread models (threads, pool) share one [`SharedDate`] between their threads: a thread
//!   that finds it stale formats it for all of them;
//! - the process models (iterative, fork, prefork) have the same `static`, but each process
//!   its own copy of it: `fork` copies memory, it does not share it.

use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// A formatted `Date` value and how long it stays right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateCache {
    text: [u8; DATE_LEN],
    valid_until: Instant,
}

impl DateCache {
    /// The date now: reads the wall clock and formats it (once a second is the point).
    pub fn at(now: Instant) -> DateCache {
        let wall = SystemTime::now();
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let to_next_second =
            Duration::from_secs(1) - Duration::from_nanos(since_epoch.subsec_nanos().into());
        let mut text = [b' '; DATE_LEN];
        let formatted = httpdate::fmt_http_date(wall);
        let len = formatted.len().min(DATE_LEN);
        text[..len].copy_from_slice(&formatted.as_bytes()[..len]);
        DateCache {
            text,
            valid_until: now + to_next_second,
        }
    }

    /// A date that never goes stale (for tests of the code that only copies it).
    pub fn fixed(text: &[u8; DATE_LEN]) -> DateCache {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        DateCache {
            text: *text,
            valid_until: far,
        }
    }

    /// The header value.
    pub fn text(&self) -> &[u8; DATE_LEN] {
        &self.text
    }

    /// True once the second it shows has passed.
    pub fn is_stale(&self, now: Instant) -> bool {
        now >= self.valid_until
    }

    /// Reformats if stale; otherwise costs one comparison.
    pub fn refresh(&mut self, now: Instant) {
        if self.is_stale(now) {
            *self = DateCache::at(now);
        }
    }
}

/// One [`DateCache`] shared by the threads of a process. Readers take a copy (a read lock,
/// uncontended but for once a second); the thread that finds it stale reformats it for all.
/// A connection keeps its copy until that goes stale, so the lock is taken once per
/// connection and once a second, not per request.
pub struct SharedDate(RwLock<Option<DateCache>>);

impl Default for SharedDate {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedDate {
    /// An empty cache, filled at first use (usable in a `static`).
    pub const fn new() -> SharedDate {
        SharedDate(RwLock::new(None))
    }

    /// The current date, reformatted first if it went stale.
    pub fn current(&self, now: Instant) -> DateCache {
        let cached = *self.0.read().unwrap_or_else(|e| e.into_inner());
        match cached {
            Some(date) if !date.is_stale(now) => date,
            _ => {
                let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
                match *slot {
                    // Another thread got here first.
                    Some(date) if !date.is_stale(now) => date,
                    _ => *slot.insert(DateCache::at(now)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let now = Instant::now();
        let date = DateCache::at(now);
        let text = std::str::from_utf8(date.text()).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off < Duration::from_secs(2), "{text} is {off:?} off");
        assert!(!date.is_stale(now));
        assert!(date.is_stale(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_stale_shared_date_is_reformatted_once() {
        let shared = SharedDate::new();
        let now = Instant::now();
        let first = shared.current(now);
        assert_eq!(shared.current(now), first, "a fresh date is reused");
        let later = now + Duration::from_millis(1500);
        let second = shared.current(later);
        assert!(!second.is_stale(later));
        assert!(second.valid_until > first.valid_until);
    }
}
