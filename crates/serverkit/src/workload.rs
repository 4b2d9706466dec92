//! What a request costs: nothing (`hello`), a wait (`delay:D`) or CPU (`cpu:D`).
//!
//! The workload is the independent variable of every table: the same request on every model,
//! so that what differs is how the model overlaps (or fails to overlap) the cost.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use crate::cli::parse_duration;

/// What each request costs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Answer at once.
    Hello,
    /// Answer after this long, without holding back other connections where the model allows
    /// (blocking models sleep in the handling thread or process; event loops arm a timer).
    Delay(Duration),
    /// Burn this much CPU time in the handler before answering (an event loop stalls here).
    Cpu(Duration),
}

impl Workload {
    /// Pays the cost the blocking way: sleep for `delay`, spin for `cpu`.
    pub fn run_blocking(&self) {
        match *self {
            Workload::Hello => {}
            Workload::Delay(d) => std::thread::sleep(d),
            Workload::Cpu(d) => burn_cpu(d),
        }
    }
}

/// Below this, a spin is timed by the monotonic clock (vDSO: no syscall) instead of the
/// thread's CPU clock (a syscall per read, about a microsecond here): a spin of a few
/// microseconds is rarely preempted, and two thread-clock reads would cost more than the spin.
pub const WALL_SPIN_BELOW: Duration = Duration::from_micros(20);

/// Burns `amount` of CPU time on the calling thread.
///
/// Counted in the thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a busy
/// machine where client and server share cores, a wall-clock spin would burn less CPU than it
/// claims, and the `cpu` rows would measure the scheduler instead of the model. Spins shorter
/// than [`WALL_SPIN_BELOW`] are timed by the monotonic clock, so that `cpu:500ns` costs about
/// 500 ns and not the two syscalls that would time it.
pub fn burn_cpu(amount: Duration) {
    if amount < WALL_SPIN_BELOW {
        return spin_wall(amount);
    }
    let Some(start) = thread_cpu_time() else {
        return spin_wall(amount);
    };
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        // About a microsecond of arithmetic between clock reads, so the clock is not the load.
        for _ in 0..256 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        std::hint::black_box(state);
        match thread_cpu_time() {
            Some(now) if now.saturating_sub(start) < amount => {}
            _ => return,
        }
    }
}

fn thread_cpu_time() -> Option<Duration> {
    let ts = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32))
}

fn spin_wall(amount: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < amount {
        std::hint::spin_loop();
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = match text.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (text, None),
        };
        match (kind, arg) {
            ("hello", None) => Ok(Workload::Hello),
            ("delay", Some(d)) => Ok(Workload::Delay(parse_duration(d)?)),
            ("cpu", Some(d)) => Ok(Workload::Cpu(parse_duration(d)?)),
            ("delay" | "cpu", None) => Err(format!("'{text}' needs a duration, e.g. {kind}:100ms")),
            _ => Err(format!(
                "unknown workload '{text}' (use hello, delay:D or cpu:D, e.g. delay:100ms)"
            )),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Hello => write!(f, "hello"),
            Workload::Delay(d) => write!(f, "delay:{}", format_duration(*d)),
            Workload::Cpu(d) => write!(f, "cpu:{}", format_duration(*d)),
        }
    }
}

/// Formats a duration in the largest unit that keeps it whole (`100ms`, `250us`, `2s`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0s".to_string()
    } else if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else if ns % 1_000 == 0 {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn workloads_parse_and_print_back() {
        for text in ["hello", "delay:100ms", "cpu:200us", "delay:2s", "cpu:15ns"] {
            let w: Workload = text.parse().unwrap();
            assert_eq!(w.to_string(), text);
        }
        assert_eq!(
            "delay:100ms".parse(),
            Ok(Workload::Delay(Duration::from_millis(100)))
        );
    }

    #[test]
    fn bad_workloads_say_why() {
        assert!("sleep:1s"
            .parse::<Workload>()
            .unwrap_err()
            .contains("unknown workload"));
        assert!("delay"
            .parse::<Workload>()
            .unwrap_err()
            .contains("needs a duration"));
        assert!("cpu:10"
            .parse::<Workload>()
            .unwrap_err()
            .contains("no unit"));
        assert!("hello:1s".parse::<Workload>().is_err());
    }

    #[test]
    fn burn_cpu_burns_at_least_what_it_is_asked() {
        let before = thread_cpu_time().unwrap();
        let wall = Instant::now();
        burn_cpu(Duration::from_millis(20));
        let used = thread_cpu_time().unwrap() - before;
        assert!(used >= Duration::from_millis(20), "burned only {used:?}");
        assert!(wall.elapsed() < Duration::from_secs(2));
    }
}
