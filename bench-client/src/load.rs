//! One load run: threads, progress, SIGINT, CPU accounting, and the result row.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::engine::{self, LoadSpec, Shared, ThreadStats};
use crate::figures::round_to;
use crate::meta::{self, Machine};
use crate::output::{Na, ResultRow, Status};
use crate::timeline;

/// Which engine runs the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EngineKind {
    /// Hand-written epoll loop per thread (the default: faster, see docs/architecture.md).
    #[default]
    Epoll,
    /// A current-thread tokio runtime per thread.
    Tokio,
}

/// What a load run measured.
pub struct LoadResult {
    /// The merged figures of all threads.
    pub stats: ThreadStats,
    /// Wall time of the measurement.
    pub elapsed: Duration,
    /// CPU time the load threads used over the run (user + system, each thread's own clock:
    /// not the process's set-up, main thread or anything else in it).
    pub client_cpu: Duration,
    /// A thread's first answer was in the other protocol: the run stopped at once.
    pub protocol_mismatch: bool,
    /// Why the run stopped early, if it did (interrupted, target gone).
    pub partial: Option<String>,
    /// Per second of the measurement: answers, errors, latency (see [`timeline`]).
    pub timeline: Vec<timeline::Entry>,
}

impl LoadResult {
    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Client CPU as a percentage of what its threads could use.
    pub fn client_cpu_pct(&self, threads: usize) -> f64 {
        100.0 * self.client_cpu.as_secs_f64()
            / (self.elapsed.as_secs_f64() * threads as f64).max(1e-9)
    }
}

/// A row is client-bound when the client used at least this share of the cores it could use.
pub const CLIENT_BOUND_PCT: f64 = 80.0;

/// The client-bound rule, in its one place: CPU as a percentage of `threads` threads' capacity,
/// against the cores the client could actually use (`min(threads, cores)`).
pub fn is_client_bound(client_cpu_pct: f64, threads: usize, cores: usize) -> bool {
    let usable = threads.min(cores).max(1) as f64;
    client_cpu_pct * threads as f64 / usable >= CLIENT_BOUND_PCT
}

/// Cores the calling thread may run on (after any `--cpus` pinning: the client's).
pub fn client_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT end the current run early (marked partial) instead of killing the process, so
/// what was measured is still reported and written.
///
/// # Errors
/// If `sigaction` fails.
pub fn catch_sigint() -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGINT, &action) }.map_err(io::Error::from)?;
    Ok(())
}

/// True once SIGINT arrived (after [`catch_sigint`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Why the pre-flight refused to start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No address of the target accepted a connection (exit 1: the target is down).
    Unreachable(String),
    /// The target speaks the other protocol (exit 2: the flag is wrong).
    WrongProtocol(String),
}

/// Checks that the target accepts a connection, trying every address it resolved to in order
/// (as curl does), and returns the first that accepts: the run connects there. With the raw
/// protocol it also checks that the target is not an HTTP server (see [`raw_probe`]).
///
/// # Errors
/// A message naming the target and the reason.
pub fn preflight(spec: &LoadSpec) -> Result<std::net::SocketAddr, Refusal> {
    let mut tried = Vec::new();
    for &addr in &spec.target.addrs {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => {
                if spec.raw {
                    raw_probe(stream, spec.timeout).map_err(Refusal::WrongProtocol)?;
                }
                return Ok(addr);
            }
            Err(e) => tried.push(format!("{addr}: {e}")),
        }
    }
    Err(Refusal::Unreachable(format!(
        "cannot connect to {} ({}) (is the server running?)",
        spec.target.host,
        tried.join("; ")
    )))
}

/// How long the raw probe waits for a raw server to speak first.
const RAW_GREETING_WAIT: Duration = Duration::from_millis(300);

/// `--protocol raw` against an HTTP server would wait out the timeout on every request (an HTTP
/// server says nothing until asked). So, on a connection of its own: a raw server speaks
/// first; if nothing comes within a moment, an HTTP request is sent, and an answer starting
/// `HTTP/` means the target speaks HTTP. A raw server with a slow workload answers that
/// request with its own greeting, and passes.
///
/// # Errors
/// The line to print when the target speaks HTTP.
pub fn raw_probe(mut stream: std::net::TcpStream, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut buf = [0u8; 64];
    let _ = stream.set_read_timeout(Some(RAW_GREETING_WAIT));
    let greeting = match stream.read(&mut buf) {
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(_) => return Ok(()),
    };
    let n = match greeting {
        Some(n) => n,
        None => {
            if stream
                .write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .is_err()
            {
                return Ok(());
            }
            let _ = stream.set_read_timeout(Some(timeout.min(Duration::from_secs(2))));
            stream.read(&mut buf).unwrap_or(0)
        }
    };
    if buf[..n].starts_with(b"HTTP/") {
        let line = String::from_utf8_lossy(&buf[..n]);
        let status = line.lines().next().unwrap_or("").trim();
        return Err(format!(
            "--protocol raw: the target speaks HTTP (it answered '{status}'); leave out \
             --protocol raw"
        ));
    }
    Ok(())
}

/// The line `load` prints when a run stopped because the target speaks the other protocol.
pub fn wrong_protocol_line(raw: bool) -> &'static str {
    if raw {
        "--protocol raw: the target's first answer was an HTTP response; leave out --protocol raw"
    } else {
        "the target does not speak HTTP: its first answer did not start with 'HTTP/' (a server \
         of the paper's raw protocol sends HelloWorld and closes); use --protocol raw"
    }
}

/// What `run` shows while it runs (on stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Show {
    /// A progress bar from the start, updated ten times a second, when stderr is a terminal.
    pub progress: bool,
    /// One line per second of the run: answers and errors in it, and so far.
    pub live: bool,
}

/// Runs `spec` to the end and returns what was measured, showing what `show` asks for.
///
/// # Errors
/// Only if an engine cannot set itself up; request errors are counted in the result.
pub fn run(spec: &LoadSpec, engine: EngineKind, show: Show) -> io::Result<LoadResult> {
    let start = Instant::now();
    let shared = Arc::new(Shared::new(spec, start));
    let results: Vec<io::Result<ThreadStats>> = std::thread::scope(|scope| {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let done = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("load-{t}"))
                    .spawn_scoped(scope, move || {
                        let stats = match engine {
                            EngineKind::Epoll => engine::epoll::run_thread(spec, &shared, t, start),
                            EngineKind::Tokio => engine::tokio::run_thread(spec, &shared, t, start),
                        };
                        let _ = done.send(());
                        stats
                    })
                    .expect("spawn load thread")
            })
            .collect();
        let bar = (show.progress && io::stderr().is_terminal()).then(|| progress_bar(spec));
        let mut live = Live::default();
        let mut finished = 0;
        while finished < spec.threads {
            // Woken at once when a thread ends; the timeout paces progress, live lines and
            // SIGINT.
            match done_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => finished += 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if interrupted() {
                shared.stop_early("interrupted by SIGINT");
            }
            if let Some(bar) = &bar {
                update_bar(bar, spec, &shared, start.elapsed());
            }
            if show.live {
                if let Some(line) = live.line(&shared, start.elapsed()) {
                    match &bar {
                        Some(bar) => bar.println(line),
                        None => eprintln!("{line}"),
                    }
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect()
    });
    let mut stats = ThreadStats::new();
    for result in results {
        stats.merge(&result?);
    }
    // From the start to the moment the last thread finished its last request.
    let wall = stats.ended.map_or_else(
        || start.elapsed(),
        |end| end.saturating_duration_since(start),
    );
    let partial = shared
        .partial
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // A duration run ends at its deadline; what the loops did after it is not measured time.
    let elapsed = match (spec.duration, &partial) {
        (Some(d), None) => wall.min(d),
        _ => wall,
    };
    let seconds = std::mem::take(&mut *shared.timeline.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(LoadResult {
        timeline: timeline::entries(&seconds, elapsed),
        client_cpu: stats.cpu,
        protocol_mismatch: shared.protocol_mismatch.load(Ordering::SeqCst),
        stats,
        elapsed,
        partial,
    })
}

/// A bar over the requests (`-n`) or the duration (in ms), its text in tenths of a second.
fn progress_bar(spec: &LoadSpec) -> indicatif::ProgressBar {
    let len = match (spec.requests, spec.duration) {
        (Some(n), _) => n,
        (None, Some(d)) => d.as_millis() as u64,
        _ => 0,
    };
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {msg}") {
        bar.set_style(style);
    }
    bar
}

fn update_bar(bar: &indicatif::ProgressBar, spec: &LoadSpec, shared: &Shared, elapsed: Duration) {
    let done = shared.finished.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    match (spec.requests, spec.duration) {
        (Some(n), _) => {
            bar.set_position(done);
            bar.set_message(format!("{done}/{n} requests ({secs:.1} s)"));
        }
        (None, Some(d)) => {
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(format!(
                "{secs:.1}/{:.1} s ({done} requests)",
                d.as_secs_f64()
            ));
        }
        _ => {}
    }
}

/// `--live`: a line as each second of the run ends, from the shared counters (no lock, nothing
/// on the load threads' path).
#[derive(Debug, Default)]
struct Live {
    /// Seconds printed so far.
    seconds: u64,
    /// Counters at the last line.
    finished: u64,
    failed: u64,
}

impl Live {
    fn line(&mut self, shared: &Shared, elapsed: Duration) -> Option<String> {
        if elapsed.as_secs() <= self.seconds {
            return None;
        }
        self.seconds = elapsed.as_secs();
        let finished = shared.finished.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let (done, errors) = (finished - self.finished, failed - self.failed);
        self.finished = finished;
        self.failed = failed;
        Some(format!(
            "live      {:>4} s  {:>9} answers  {errors:>6} errors  ({finished} requests so far)",
            self.seconds,
            done.saturating_sub(errors)
        ))
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> Na<f64> {
    Na((!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0))
}

/// Labels a row carries beside the figures.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Which results table (`load`, `paper-1`, ...).
    pub table: String,
    /// Server name.
    pub server: String,
    /// Model class.
    pub model_class: String,
    /// Workload.
    pub workload: String,
    /// Repetition number (1-based).
    pub repetition: u32,
    /// The run id shared by the rows of one run.
    pub run_id: String,
}

/// The result row for a measured run.
pub fn row(spec: &LoadSpec, result: &LoadResult, labels: &Labels, machine: &Machine) -> ResultRow {
    let lat = &result.stats.latency;
    let unc = &result.stats.latency_uncorrected;
    let errors = result.stats.errors;
    let mut notes: Vec<String> = Vec::new();
    if let Some(reason) = &result.partial {
        notes.insert(0, format!("partial: {reason}"));
    }
    if result.stats.ports_exhausted {
        notes.push(PORTS_HINT.to_string());
    }
    if let Some(rate) = spec.rate {
        let achieved =
            (result.stats.ok + errors.total()) as f64 / result.elapsed.as_secs_f64().max(1e-9);
        if achieved < 0.95 * rate {
            notes.push(format!(
                "achieved {achieved:.0} req/s, under 95% of --rate {rate}: {} requests never sent on time",
                result.stats.not_sent
            ));
        }
    }
    if result.stats.abandoned > 0 {
        notes.push(format!(
            "{} requests in flight at the end were abandoned",
            result.stats.abandoned
        ));
    }
    let status = if result.partial.is_some() {
        Status::Partial
    } else if errors.total() > 0 {
        Status::Errors
    } else {
        Status::Ok
    };
    let client_cpu_pct = result.client_cpu_pct(spec.threads);
    let all = &result.stats.latency_all;
    ResultRow {
        run_id: labels.run_id.clone(),
        time: meta::now_iso8601(),
        git_rev: machine.git_rev.clone(),
        build: meta::build(),
        host: machine.host.clone(),
        cpu_model: machine.cpu_model.clone(),
        cores: machine.cores,
        kernel: machine.kernel.clone(),
        table: labels.table.clone(),
        server: labels.server.clone(),
        model_class: labels.model_class.clone(),
        workload: labels.workload.clone(),
        protocol: if spec.raw { "raw" } else { "http" }.into(),
        conn_mode: conn_mode(spec),
        concurrency: spec.concurrency,
        threads: spec.threads,
        requests: Na(spec.requests),
        duration_s: Na(spec.duration.map(|d| d.as_secs_f64())),
        rate: Na(spec.rate),
        repetition: labels.repetition,
        seed: Na(None),
        cpus: "shared".into(),
        status,
        elapsed_s: round_to(result.elapsed.as_secs_f64(), 6),
        ok: result.stats.ok,
        err_connect: errors.connect,
        err_reset: errors.reset,
        err_timeout: errors.timeout,
        err_status: errors.status,
        err_malformed: errors.malformed,
        err_closed: errors.closed,
        rps: round_to(result.rps(), 3),
        lat_mean_ms: Na((!lat.is_empty()).then(|| round_to(lat.mean() / 1000.0, 3))),
        lat_p50_ms: ms(lat, 0.5),
        lat_p90_ms: ms(lat, 0.9),
        lat_p99_ms: ms(lat, 0.99),
        lat_p999_ms: ms(lat, 0.999),
        lat_max_ms: Na((!lat.is_empty()).then(|| lat.max() as f64 / 1000.0)),
        lat_all_p50_ms: ms(all, 0.5),
        lat_all_p99_ms: ms(all, 0.99),
        lat_p50_uncorrected_ms: ms(unc, 0.5),
        lat_p99_uncorrected_ms: ms(unc, 0.99),
        connections: result.stats.connections,
        not_sent: result.stats.not_sent,
        abandoned: result.stats.abandoned,
        client_cpu_pct: round_to(client_cpu_pct, 2),
        client_bound: is_client_bound(client_cpu_pct, spec.threads, client_cores()),
        steal_pct: Na(None),
        server_build: "NA".into(),
        cost_source: "NA".into(),
        server_cpu_s: Na(None),
        server_cpu_user_s: Na(None),
        server_cpu_sys_s: Na(None),
        server_ctx_switches: Na(None),
        server_ctx_voluntary: Na(None),
        server_ctx_involuntary: Na(None),
        server_peak_rss_kb: Na(None),
        server_threads: Na(None),
        server_processes: Na(None),
        server_requests: Na(None),
        server_life_cpu_s: Na(None),
        server_ok_after: Na(None),
        idle_conns: Na(None),
        idle_held: Na(None),
        server_pss_base_kb: Na(None),
        server_pss_kb: Na(None),
        mem_per_conn_b: Na(None),
        partial: result.partial.is_some(),
        notes: notes.join("; "),
    }
}

/// The `conn_mode` column: `per-request`, `keep-alive`, or `pipeline-N` (kept alive, N
/// requests written at once).
pub fn conn_mode(spec: &LoadSpec) -> String {
    match (spec.keep_alive, spec.pipeline) {
        (false, _) => "per-request".into(),
        (true, 0 | 1) => "keep-alive".into(),
        (true, n) => format!("pipeline-{n}"),
    }
}

/// What to do when connections per request run out of local ports.
pub const PORTS_HINT: &str = "ran out of local ports (EADDRNOTAVAIL): closed connections wait in \
     TIME_WAIT and hold theirs; use -k, a lower rate, or --source-addrs N to spread connections \
     over 127.0.0.1..N";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_bound_is_judged_against_the_cores_the_client_had() {
        // One thread at 85 % of a core: bound, whatever the machine.
        assert!(is_client_bound(85.0, 1, 1));
        assert!(is_client_bound(85.0, 1, 16));
        assert!(!is_client_bound(60.0, 1, 16));
        // Four threads pinned to two cores: 45 % of four threads is 90 % of two cores.
        assert!(is_client_bound(45.0, 4, 2));
        assert!(!is_client_bound(45.0, 4, 8));
    }
}
