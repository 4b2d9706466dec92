//! Timers for event loops: deadlines (a `delay` ending, a sweep tick) kept in a heap, and one
//! timerfd armed for the earliest, which the loop watches like any other descriptor.
//!
//! Why a timerfd and not the timeout of `epoll_wait` (or `poll`): that timeout counts whole
//! milliseconds, which would add up to 1 ms to every `delay:100ms` (1 % on the paper's Table
//! 2); a timerfd has nanoseconds. Why one timerfd and a heap, not one per connection: a
//! timer costs a heap push, not a descriptor and three syscalls.
//!
//! The heap alone is [`Deadlines`], for a loop that waits some other way or not at all: the
//! busy-polling server looks at it on every pass, and the signal-driven server passes the
//! earliest as the timeout of `sigtimedwait` (nanoseconds too), because a timerfd cannot raise
//! a signal (it refuses `O_ASYNC`). [`Timers`] is the heap and the timerfd that wakes a loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// Deadlines, each with a key (a connection's token), earliest first: a binary heap.
#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Deadlines {
    /// Adds a deadline for `key`.
    pub fn add(&mut self, when: Instant, key: u64) {
        self.heap.push(Reverse((when, key)));
    }

    /// The earliest deadline, or `tick` if that comes first (a loop's periodic sweep; `None`
    /// when it needs none); `None` when there is nothing to wait for.
    pub fn next(&self, tick: Option<Instant>) -> Option<Instant> {
        let earliest = self.heap.peek().map(|Reverse((when, _))| *when);
        match (earliest, tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many deadlines are kept (those of closed connections too, until they pass or are
    /// dropped by [`retain`](Self::retain)).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps only the deadlines whose key `keep` accepts (O(n)): a loop drops its closed
    /// connections' deadlines this way once they outnumber its open ones.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.heap.retain(|Reverse((_, key))| keep(*key));
    }

    /// The key of a deadline passed by `now`, earliest first; `None` when none is left.
    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        match self.heap.peek() {
            Some(Reverse((when, key))) if *when <= now => {
                let key = *key;
                self.heap.pop();
                Some(key)
            }
            _ => None,
        }
    }
}

/// [`Deadlines`], and the timerfd that wakes the loop at the earliest.
pub struct Timers {
    deadlines: Deadlines,
    fd: TimerFd,
    /// When the timerfd fires next, if armed.
    armed: Option<Instant>,
}

impl Timers {
    /// No deadlines; a non-blocking timerfd on the monotonic clock.
    ///
    /// # Errors
    /// If the timerfd cannot be made.
    pub fn new() -> io::Result<Timers> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        Ok(Timers {
            deadlines: Deadlines::default(),
            fd: TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?,
            armed: None,
        })
    }

    /// Adds a deadline for `key`.
    pub fn add(&mut self, when: Instant, key: u64) {
        self.deadlines.add(when, key);
    }

    /// Arms the timerfd for the earliest deadline, or `tick` if that comes first (a loop's
    /// periodic sweep; `None` when it needs none). Costs a syscall only when that moves earlier.
    ///
    /// # Errors
    /// If the timerfd cannot be set.
    pub fn arm(&mut self, tick: Option<Instant>) -> io::Result<()> {
        let Some(next) = self.deadlines.next(tick) else {
            return Ok(());
        };
        if self.armed.is_some_and(|armed| armed <= next) {
            return Ok(());
        }
        // A zero interval would disarm the timer: a deadline already past fires in 1 ns.
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let expiration = Expiration::OneShot(TimeSpec::from_duration(wait));
        self.fd.set(expiration, TimerSetTimeFlags::empty())?;
        self.armed = Some(next);
        Ok(())
    }

    /// The timerfd fired: consume its expiry (it must be re-armed).
    pub fn fired(&mut self) {
        let _ = self.fd.wait(); // non-blocking: reads the expiry count
        self.armed = None;
    }

    /// The key of a deadline passed by `now`, earliest first; `None` when none is left.
    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        self.deadlines.pop_due(now)
    }
}

impl AsFd for Timers {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_out_in_order_once_passed() {
        let mut timers = Timers::new().unwrap();
        let t = Instant::now();
        timers.add(t + Duration::from_millis(30), 3);
        timers.add(t + Duration::from_millis(10), 1);
        timers.add(t + Duration::from_millis(20), 2);
        assert_eq!(timers.pop_due(t), None);
        let later = t + Duration::from_millis(25);
        assert_eq!(timers.pop_due(later), Some(1));
        assert_eq!(timers.pop_due(later), Some(2));
        assert_eq!(timers.pop_due(later), None);
    }

    #[test]
    fn the_next_wait_is_the_earliest_deadline_or_the_tick() {
        let mut deadlines = Deadlines::default();
        let t = Instant::now();
        assert_eq!(deadlines.next(None), None);
        assert_eq!(deadlines.next(Some(t)), Some(t));
        deadlines.add(t + Duration::from_millis(10), 1);
        assert_eq!(deadlines.next(None), Some(t + Duration::from_millis(10)));
        assert_eq!(deadlines.next(Some(t)), Some(t));
    }

    #[test]
    fn retain_drops_the_deadlines_of_keys_left_out() {
        let mut deadlines = Deadlines::default();
        let t = Instant::now();
        for key in 1..=4 {
            deadlines.add(t + Duration::from_millis(key), key);
        }
        deadlines.retain(|key| key % 2 == 0);
        assert_eq!(deadlines.len(), 2);
        let later = t + Duration::from_secs(1);
        assert_eq!(deadlines.pop_due(later), Some(2));
        assert_eq!(deadlines.pop_due(later), Some(4));
        assert!(deadlines.is_empty());
    }

    #[test]
    fn the_timerfd_fires_at_the_earliest_deadline() {
        use std::os::fd::AsRawFd;
        let mut timers = Timers::new().unwrap();
        let start = Instant::now();
        timers.add(start + Duration::from_millis(20), 7);
        timers.arm(Some(start + Duration::from_secs(5))).unwrap();
        let mut pfd = libc::pollfd {
            fd: timers.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 2000) }, 1);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(20) && waited < Duration::from_secs(1));
        timers.fired();
        assert_eq!(timers.pop_due(Instant::now()), Some(7));
    }
}
