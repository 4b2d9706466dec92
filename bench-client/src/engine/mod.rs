//! The load engines: every thread runs its own event loop over its share of the connections.
//!
//! Two engines implement the same [`LoadSpec`]: a hand-written epoll loop ([`epoll`], the
//! default) and a current-thread tokio runtime per thread ([`tokio`]). Which one is the
//! default was decided by measurement; see docs/architecture.md.

mod batch;
pub mod epoll;
pub mod tokio;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::request::{RequestSpec, StatusCounts};
use crate::response::{Bad, ResponseReader};
use crate::target::Target;
use crate::timeline::{Recorder, Second};

/// Everything a load run needs to know.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to send requests.
    pub target: Target,
    /// Total requests (`-n`); `None` with a duration.
    pub requests: Option<u64>,
    /// How long to send (`-d`); `None` with a request count.
    pub duration: Option<Duration>,
    /// Connections (requests in flight) at once (`-c`).
    pub concurrency: usize,
    /// Threads, each with its own event loop (`-t`).
    pub threads: usize,
    /// Reuse connections (`-k`); otherwise a new connection per request.
    pub keep_alive: bool,
    /// Open loop: total requests per second, each sent at its scheduled time (`--rate`).
    pub rate: Option<f64>,
    /// The paper's raw protocol instead of HTTP.
    pub raw: bool,
    /// Time allowed for one request, connect included.
    pub timeout: Duration,
    /// Never sleep in `epoll_wait` while requests are in flight (epoll engine): costs a whole
    /// core, and spares the server the cost of waking the client for every response.
    pub busy_poll: bool,
    /// With requests in flight, poll without blocking for this long before sleeping in
    /// `epoll_wait` (epoll engine): answers due within microseconds are picked up without the
    /// server paying to wake the client. Zero: always block.
    pub spin: Duration,
    /// Spread connections over this many source addresses, 127.0.0.1 upwards (0: let the
    /// kernel choose).
    pub source_addrs: u8,
    /// Requests written at once on a kept-alive connection, then answered before the next batch
    /// (`--pipeline`); 1: no pipelining. Open loop schedules batches (`rate / pipeline` per
    /// second); with `-n`, the last batch takes what is left of the budget.
    pub pipeline: usize,
    /// What each request sends (method, headers, body) and which statuses count as answers.
    pub request: RequestSpec,
}

impl LoadSpec {
    /// The bytes of one request, built once per run (`Connection: close` without `-k`).
    pub fn request_bytes(&self) -> Vec<u8> {
        self.request.bytes(&self.target, self.keep_alive)
    }

    /// A reader for this run's answers: its protocol, expected statuses and method.
    pub(crate) fn response_reader(&self) -> ResponseReader {
        ResponseReader::expecting(
            self.raw,
            self.request.expect.clone(),
            self.request.head_only(),
        )
    }

    /// The source address for the `k`-th connection a thread opens, if spreading.
    pub(crate) fn source_addr(&self, k: u64) -> Option<SocketAddr> {
        if self.source_addrs == 0 {
            return None;
        }
        let last = (k % u64::from(self.source_addrs)) as u8 + 1;
        Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))
    }

    /// The connections thread `t` owns: an even split, the first threads taking the rest.
    pub(crate) fn slots_of_thread(&self, t: usize) -> std::ops::Range<usize> {
        let base = self.concurrency / self.threads;
        let extra = self.concurrency % self.threads;
        let start = t * base + t.min(extra);
        start..start + base + usize::from(t < extra)
    }

    /// Open loop: the interval between two batches (requests, without pipelining) on one
    /// connection.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.rate.map(|rate| {
            Duration::from_secs_f64(self.concurrency as f64 * self.batch() as f64 / rate)
        })
    }

    /// Requests per batch: the pipeline depth, at least 1.
    pub(crate) fn batch(&self) -> u64 {
        self.pipeline.max(1) as u64
    }

    /// Open loop: the requests a connection's schedule, whose next batch is due at `next`, had
    /// due before the end of the run and never sent (0 in closed loop or without an end).
    pub(crate) fn unsent_from(&self, next: Instant, end: Option<Instant>) -> u64 {
        match (self.interval(), end) {
            (Some(interval), Some(end)) => unsent(next, interval, end) * self.batch(),
            _ => 0,
        }
    }
}

/// A kind of request error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    Connect,
    Reset,
    Timeout,
    Status,
    Malformed,
    Closed,
}

impl From<Bad> for ErrorClass {
    fn from(bad: Bad) -> Self {
        match bad {
            Bad::Status(_) => ErrorClass::Status,
            Bad::Malformed | Bad::WrongProtocol => ErrorClass::Malformed,
            Bad::EarlyClose => ErrorClass::Closed,
        }
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorCounts {
    /// The connection could not be made (refused, unreachable, out of local ports).
    pub connect: u64,
    /// The connection was reset (or the pipe broke) while a request was in flight.
    pub reset: u64,
    /// No whole response within the timeout.
    pub timeout: u64,
    /// A status outside `--expect-status` (default: 2xx and 3xx are answers).
    pub status: u64,
    /// Not a valid response (unparsable, no Content-Length, wrong raw answer, extra bytes).
    pub malformed: u64,
    /// The server closed before the whole response.
    pub closed: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.timeout + self.status + self.malformed + self.closed
    }

    pub(crate) fn count(&mut self, class: ErrorClass, n: u64) {
        let count = match class {
            ErrorClass::Connect => &mut self.connect,
            ErrorClass::Reset => &mut self.reset,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Status => &mut self.status,
            ErrorClass::Malformed => &mut self.malformed,
            ErrorClass::Closed => &mut self.closed,
        };
        *count += n;
    }

    pub(crate) fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.status += other.status;
        self.malformed += other.malformed;
        self.closed += other.closed;
    }
}

/// A new latency histogram: from 1 µs, 3 significant digits, values in µs. It grows to hold
/// the longest latency recorded (no silent cap); its memory depends on that range, not on the
/// number of requests.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    h.auto(true);
    h
}

/// Open loop: how many requests of a schedule (`next`, `next + interval`, ...) fall before
/// `end`: those the run never got to send.
pub fn unsent(next: Instant, interval: Duration, end: Instant) -> u64 {
    if next >= end || interval.is_zero() {
        return 0;
    }
    let span = (end - next).as_nanos();
    span.div_ceil(interval.as_nanos()) as u64
}

/// What one thread measured.
pub struct ThreadStats {
    /// Latency from each request's scheduled time (closed loop: its start).
    pub latency: Histogram<u64>,
    /// Latency from the moment the request was actually started.
    pub latency_uncorrected: Histogram<u64>,
    /// Latency of every request that ended, failed ones included (to the moment it failed),
    /// from its scheduled time.
    pub latency_all: Histogram<u64>,
    /// Open loop: requests the schedule had due before the end that were never sent.
    pub not_sent: u64,
    /// Requests in flight when the run ended (duration over, or stopped), counted nowhere else.
    pub abandoned: u64,
    /// Whole, valid responses.
    pub ok: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Connections opened.
    pub connections: u64,
    /// A connect failed with EADDRNOTAVAIL (ephemeral ports used up).
    pub ports_exhausted: bool,
    /// When the thread finished its last request (merged: the latest of all threads).
    pub ended: Option<Instant>,
    /// Answers by status code, expected or not (HTTP only).
    pub statuses: StatusCounts,
    /// Bytes read from the server (answers, heads included).
    pub bytes_read: u64,
    /// CPU time of the load thread (user + system, its own clock) from its start to the end
    /// of its run (merged: the sum over threads).
    pub cpu: Duration,
    /// Per-second figures, handed to the run's timeline as each second passes.
    timeline: Option<Recorder>,
}

impl ThreadStats {
    pub(crate) fn new() -> Self {
        ThreadStats {
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
            latency_all: new_histogram(),
            not_sent: 0,
            abandoned: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            connections: 0,
            ports_exhausted: false,
            ended: None,
            statuses: StatusCounts::default(),
            bytes_read: 0,
            cpu: Duration::ZERO,
            timeline: None,
        }
    }

    /// A load thread's figures, its per-second ones going to `shared`'s timeline.
    pub(crate) fn for_thread(shared: &Shared) -> Self {
        ThreadStats {
            timeline: Some(Recorder::new(shared.start, Arc::clone(&shared.timeline))),
            ..ThreadStats::new()
        }
    }

    pub(crate) fn record_ok(&mut self, scheduled: Instant, started: Instant, now: Instant) {
        self.ok += 1;
        let latency = micros(now.saturating_duration_since(scheduled));
        record(&mut self.latency, latency);
        record(
            &mut self.latency_uncorrected,
            micros(now.saturating_duration_since(started)),
        );
        record(&mut self.latency_all, latency);
        if let Some(timeline) = &mut self.timeline {
            timeline.ok(now, latency);
        }
    }

    /// `n` requests that failed now, all of `class`.
    pub(crate) fn record_failures(&mut self, class: ErrorClass, n: u64, scheduled: Instant) {
        if n == 0 {
            return;
        }
        let now = Instant::now();
        self.errors.count(class, n);
        let latency = micros(now.saturating_duration_since(scheduled));
        if self.latency_all.record_n(latency, n).is_err() {
            self.latency_all.saturating_record_n(latency, n);
        }
        if let Some(timeline) = &mut self.timeline {
            timeline.errors(now, n);
        }
    }

    /// The thread is done: notes when and its CPU time so far (the calling thread's), and
    /// hands the last second to the timeline.
    pub(crate) fn finish(&mut self, ended: Instant) {
        self.ended = Some(ended);
        self.cpu = thread_cpu_time();
        if let Some(timeline) = &mut self.timeline {
            timeline.flush();
        }
    }

    /// Adds another thread's figures.
    pub fn merge(&mut self, other: &ThreadStats) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.latency_uncorrected
            .add(&other.latency_uncorrected)
            .expect("same histogram bounds");
        self.latency_all
            .add(&other.latency_all)
            .expect("same histogram bounds");
        self.not_sent += other.not_sent;
        self.abandoned += other.abandoned;
        self.ok += other.ok;
        self.errors.add(&other.errors);
        self.connections += other.connections;
        self.ports_exhausted |= other.ports_exhausted;
        self.ended = self.ended.max(other.ended);
        self.statuses.add(&other.statuses);
        self.bytes_read += other.bytes_read;
        self.cpu += other.cpu;
    }
}

/// CPU time (user + system) the calling thread has used since it started, from its own clock
/// (`CLOCK_THREAD_CPUTIME_ID`): a load thread reads it at its end, so the client's CPU covers
/// the engine threads over the run and nothing else in the process (set-up, the main thread,
/// other threads of a test harness).
pub fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Records a latency, growing the histogram when it is the longest yet.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    if h.record(micros).is_err() {
        h.saturating_record(micros);
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Default `--spin`: long enough to catch an answer that is on its way on loopback, short
/// enough that a client waiting on a slow server sleeps almost all the time.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// After this many connection attempts in a row fail, with no success between them, the run
/// stops: the target is gone, and hammering it measures nothing.
pub const GIVE_UP_AFTER_FAILED_CONNECTS: u64 = 500;

/// State shared by the threads of one run.
pub struct Shared {
    /// When the measurement started.
    pub start: Instant,
    /// Requests not yet started (`u64::MAX` in duration mode).
    remaining: AtomicU64,
    /// End of a duration run.
    pub stop_at: Option<Instant>,
    /// Set to stop early (SIGINT, target gone); the reason goes in `partial`.
    pub stop: AtomicBool,
    /// Requests finished (ok or error), for the progress bar.
    pub finished: AtomicU64,
    /// Requests failed, for the live lines.
    pub failed: AtomicU64,
    /// A thread's first answer was in the other protocol: the run stopped at once.
    pub protocol_mismatch: AtomicBool,
    failed_connects_in_a_row: AtomicU64,
    /// Why the run stopped early, if it did.
    pub partial: Mutex<Option<String>>,
    /// Per-second figures, merged from every thread (index: whole seconds since `start`).
    pub timeline: Arc<Mutex<Vec<Second>>>,
}

impl Shared {
    /// Shared state for `spec`, starting now.
    pub fn new(spec: &LoadSpec, start: Instant) -> Self {
        Shared {
            start,
            remaining: AtomicU64::new(spec.requests.unwrap_or(u64::MAX)),
            stop_at: spec.duration.map(|d| start + d),
            stop: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            protocol_mismatch: AtomicBool::new(false),
            failed_connects_in_a_row: AtomicU64::new(0),
            partial: Mutex::new(None),
            timeline: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Takes up to `most` requests from the budget (fewer at the end of a `-n` budget): how
    /// many were taken, 0 when the run is over.
    pub(crate) fn claim(&self, now: Instant, most: u64) -> u64 {
        if self.stop.load(Ordering::Relaxed) || self.stop_at.is_some_and(|end| now >= end) {
            return 0;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0).then(|| left - left.min(most))
            })
            .map_or(0, |left| left.min(most))
    }

    /// True when threads should abandon what is in flight.
    pub(crate) fn should_stop(&self, now: Instant) -> bool {
        self.stop.load(Ordering::Relaxed) || self.stop_at.is_some_and(|end| now >= end)
    }

    /// Stops the run early, for `reason` (kept if it is the first).
    pub fn stop_early(&self, reason: &str) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        partial.get_or_insert_with(|| reason.to_string());
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn connect_failed(&self) {
        let streak = self
            .failed_connects_in_a_row
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if streak == GIVE_UP_AFTER_FAILED_CONNECTS {
            self.stop_early(&format!(
                "target stopped accepting connections ({streak} attempts in a row failed)"
            ));
        }
    }

    pub(crate) fn finished_ok(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.failed_connects_in_a_row.store(0, Ordering::Relaxed);
    }

    pub(crate) fn finished_failed(&self, n: u64) {
        self.finished.fetch_add(n, Ordering::Relaxed);
        self.failed.fetch_add(n, Ordering::Relaxed);
    }

    /// A thread's first answer was in the other protocol (raw for an HTTP client, HTTP for a
    /// raw one): every request would fail the same way, so the run stops at once.
    pub(crate) fn wrong_protocol(&self) {
        self.protocol_mismatch.store(true, Ordering::SeqCst);
        self.stop_early("the target answered in the other protocol");
    }
}

/// `n` requests failed now with `class`: counted in `stats` and in the progress.
pub(crate) fn fail(
    stats: &mut ThreadStats,
    shared: &Shared,
    class: ErrorClass,
    n: u64,
    scheduled: Instant,
) {
    stats.record_failures(class, n, scheduled);
    shared.finished_failed(n);
}

/// Classifies an I/O error on a connection with `n` requests in flight: one connect attempt
/// that failed (each of its requests a `connect` error), or a reset or timeout of each.
pub(crate) fn count_io_error(
    stats: &mut ThreadStats,
    shared: &Shared,
    connected: bool,
    e: &std::io::Error,
    scheduled: Instant,
    n: u64,
) {
    use std::io::ErrorKind::*;
    let class = if !connected {
        if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            stats.ports_exhausted = true;
        }
        shared.connect_failed();
        ErrorClass::Connect
    } else if matches!(e.kind(), TimedOut | WouldBlock) {
        ErrorClass::Timeout
    } else {
        ErrorClass::Reset
    };
    fail(stats, shared, class, n, scheduled);
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn spec(concurrency: usize, threads: usize) -> LoadSpec {
        LoadSpec {
            target: "127.0.0.1:1".parse().unwrap(),
            requests: Some(10),
            duration: None,
            concurrency,
            threads,
            keep_alive: false,
            rate: None,
            raw: false,
            timeout: Duration::from_secs(1),
            busy_poll: false,
            spin: Duration::ZERO,
            source_addrs: 0,
            pipeline: 1,
            request: RequestSpec::default(),
        }
    }

    #[test]
    fn connections_split_evenly_over_threads() {
        let s = spec(10, 3);
        let ranges: Vec<_> = (0..3).map(|t| s.slots_of_thread(t)).collect();
        assert_eq!(ranges, vec![0..4, 4..7, 7..10]);
    }

    #[test]
    fn the_budget_is_exact_across_threads() {
        let s = spec(4, 2);
        let shared = Shared::new(&s, Instant::now());
        let now = Instant::now();
        let claimed = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..100).filter(|_| shared.claim(now, 1) == 1).count()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(claimed, 10);
    }

    #[test]
    fn io_errors_are_classified_and_port_exhaustion_is_noticed() {
        let shared = Shared::new(&spec(1, 1), Instant::now());
        let mut stats = ThreadStats::new();
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        count_io_error(&mut stats, &shared, false, &refused, Instant::now(), 1);
        assert!(!stats.ports_exhausted);
        let no_port = std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        count_io_error(&mut stats, &shared, false, &no_port, Instant::now(), 1);
        assert!(
            stats.ports_exhausted,
            "EADDRNOTAVAIL on connect means no local port was free"
        );
        count_io_error(
            &mut stats,
            &shared,
            true,
            &std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            Instant::now(),
            1,
        );
        count_io_error(
            &mut stats,
            &shared,
            true,
            &std::io::Error::from(std::io::ErrorKind::TimedOut),
            Instant::now(),
            1,
        );
        let e = stats.errors;
        assert_eq!((e.connect, e.reset, e.timeout, e.total()), (2, 1, 1, 4));
        assert_eq!(shared.finished.load(Ordering::Relaxed), 4);
        assert_eq!(
            stats.latency_all.len(),
            4,
            "failures are in the all-requests latency"
        );
    }

    #[test]
    fn batches_take_what_is_left_of_the_budget() {
        let s = spec(2, 1); // a budget of 10
        let shared = Shared::new(&s, Instant::now());
        let now = Instant::now();
        let taken: Vec<u64> = (0..5).map(|_| shared.claim(now, 4)).collect();
        assert_eq!(taken, [4, 4, 2, 0, 0]);
    }

    #[test]
    fn open_loop_schedules_batches_at_the_rate_of_requests() {
        let s = LoadSpec {
            rate: Some(1000.0),
            pipeline: 4,
            ..spec(2, 1)
        };
        // 2 connections, 1000 req/s in batches of 4: a batch every 8 ms on each.
        assert_eq!(s.interval(), Some(Duration::from_millis(8)));
        let t = Instant::now();
        let end = Some(t + Duration::from_millis(40));
        assert_eq!(s.unsent_from(t, end), 5 * 4, "5 batches of 4 never sent");
        assert_eq!(spec(2, 1).unsent_from(t, end), 0, "closed loop");
    }

    #[test]
    fn the_unsent_backlog_counts_due_requests_before_the_end() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(unsent(t, ms(10), t + ms(100)), 10, "t, t+10, ..., t+90");
        assert_eq!(unsent(t, ms(10), t + ms(95)), 10);
        assert_eq!(unsent(t + ms(100), ms(10), t + ms(100)), 0);
        assert_eq!(unsent(t, Duration::ZERO, t + ms(1)), 0);
    }

    #[test]
    fn latencies_beyond_a_minute_are_kept() {
        let mut h = new_histogram();
        record(&mut h, 600_000_000);
        assert!(h.max() >= 599_000_000, "no silent cap: {}", h.max());
    }

    #[test]
    fn source_addresses_cycle_over_loopback() {
        let mut s = spec(1, 1);
        assert_eq!(s.source_addr(5), None);
        s.source_addrs = 3;
        let ips: Vec<_> = (0..4)
            .map(|k| s.source_addr(k).unwrap().ip().to_string())
            .collect();
        assert_eq!(ips, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"]);
    }
}
