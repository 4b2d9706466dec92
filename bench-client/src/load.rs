//! One load run: threads, progress, SIGINT, CPU accounting, and the result row.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::resource::{getrusage, UsageWho};

use crate::engine::{self, LoadSpec, Shared, ThreadStats};
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
    /// CPU time the client used (all threads, user + system).
    pub client_cpu: Duration,
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

fn cpu_time() -> Duration {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let user = u.user_time();
            let sys = u.system_time();
            Duration::new(user.tv_sec() as u64, user.tv_usec() as u32 * 1000)
                + Duration::new(sys.tv_sec() as u64, sys.tv_usec() as u32 * 1000)
        })
        .unwrap_or_default()
}

/// Checks that the target accepts a connection, so a dead target gets a clear message instead
/// of a run full of errors.
///
/// # Errors
/// A message naming the target and the reason.
pub fn preflight(spec: &LoadSpec) -> Result<(), String> {
    std::net::TcpStream::connect_timeout(&spec.target.addr, Duration::from_secs(2))
        .map(drop)
        .map_err(|e| {
            format!(
                "cannot connect to {}: {e} (is the server running?)",
                spec.target.addr
            )
        })
}

/// Runs `spec` to the end and returns what was measured. A progress bar is drawn on stderr
/// when it is a terminal and the run lasts over 2 s.
///
/// # Errors
/// Only if an engine cannot set itself up; request errors are counted in the result.
pub fn run(spec: &LoadSpec, engine: EngineKind, show_progress: bool) -> io::Result<LoadResult> {
    let start = Instant::now();
    let shared = Arc::new(Shared::new(spec, start));
    let cpu_before = cpu_time();
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
        let mut bar: Option<indicatif::ProgressBar> = None;
        let terminal = show_progress && io::stderr().is_terminal();
        let mut finished = 0;
        while finished < spec.threads {
            // Woken at once when a thread ends; the timeout only paces progress and SIGINT.
            match done_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => finished += 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if interrupted() {
                shared.stop_early("interrupted by SIGINT");
            }
            if terminal && bar.is_none() && start.elapsed() > Duration::from_secs(2) {
                bar = Some(progress_bar(spec));
            }
            if let Some(bar) = &bar {
                match spec.requests {
                    Some(_) => bar.set_position(shared.finished.load(Ordering::Relaxed)),
                    None => bar.set_position(start.elapsed().as_secs()),
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
        stats,
        elapsed,
        client_cpu: cpu_time().saturating_sub(cpu_before),
        partial,
    })
}

fn progress_bar(spec: &LoadSpec) -> indicatif::ProgressBar {
    let (len, unit) = match (spec.requests, spec.duration) {
        (Some(n), _) => (n, "requests"),
        (None, Some(d)) => (d.as_secs(), "s"),
        _ => (0, ""),
    };
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{elapsed}})");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
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
        elapsed_s: result.elapsed.as_secs_f64(),
        ok: result.stats.ok,
        err_connect: errors.connect,
        err_reset: errors.reset,
        err_timeout: errors.timeout,
        err_status: errors.status,
        err_malformed: errors.malformed,
        err_closed: errors.closed,
        rps: result.rps(),
        lat_mean_ms: Na((!lat.is_empty()).then(|| lat.mean() / 1000.0)),
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
        client_cpu_pct,
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
