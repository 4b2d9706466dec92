//! Results: one tidy row schema for CSV and JSON, atomic file writes, the human summary.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that may be missing; written `NA` in the CSV (the `notes` column of the row says
/// why) and `null` in `load`'s JSON (see [`with_na_as_null`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Na<T>(pub Option<T>);

thread_local! {
    /// Set while a JSON document is serialized on this thread: a missing value is `null`.
    static NA_AS_NULL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `serialize` with every missing [`Na`] value written as `null` instead of `"NA"`.
///
/// Why a switch and not a second schema: the CSV must keep `NA` (its readers, and the committed
/// results, expect it) and serde gives a field one way to serialize whatever the format; the
/// row's seventy fields are declared once. The switch is per thread and reset on return.
pub fn with_na_as_null<R>(serialize: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            NA_AS_NULL.with(|flag| flag.set(false));
        }
    }
    NA_AS_NULL.with(|flag| flag.set(true));
    let _reset = Reset;
    serialize()
}

impl<T: Serialize> Serialize for Na<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(v) => v.serialize(s),
            None if NA_AS_NULL.with(|flag| flag.get()) => s.serialize_none(),
            None => s.serialize_str("NA"),
        }
    }
}

impl<'de, T: std::str::FromStr> Deserialize<'de> for Na<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            // Integers before floats: a u64 (a seed) must not round through an f64.
            Int(u64),
            Float(f64),
            Text(String),
        }
        // `null` (JSON) or an empty field (CSV) is missing, as `NA` is.
        let text = match Option::<Raw>::deserialize(d)? {
            None => return Ok(Na(None)),
            Some(Raw::Bool(b)) => b.to_string(),
            Some(Raw::Int(i)) => i.to_string(),
            Some(Raw::Float(f)) => f.to_string(),
            Some(Raw::Text(t)) => t,
        };
        if text == "NA" || text.is_empty() {
            return Ok(Na(None));
        }
        text.parse()
            .map(|v| Na(Some(v)))
            .map_err(|_| serde::de::Error::custom(format!("bad value {text:?}")))
    }
}

/// What became of a row: the one field a script checks before trusting the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Measured to the end, every request answered correctly.
    Ok,
    /// Measured to the end, but some requests failed (the `err_*` columns say how).
    Errors,
    /// Stopped early (interrupted, target gone, server died): the figures cover part of it.
    Partial,
    /// The server could not be measured or misbehaved around the measurement: it did not start,
    /// failed the check, did not answer afterwards, or did not stop cleanly.
    Failed,
    /// Nothing to measure here: a peer that is not installed, a workload it cannot serve, a
    /// kernel feature the machine refuses.
    Unavailable,
    /// The server could not hold the cell's level (scale preset): connections refused,
    /// closed or timed out beyond the tolerance, its cap, descriptors, memory; the notes say
    /// how far it got. A finding about the model, not a failure of the run.
    Limit,
}

impl Status {
    /// True for rows that make a suite run fail (`failed`, `partial`).
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::Partial)
    }

    /// True when the row has figures to report.
    pub fn measured(self) -> bool {
        matches!(
            self,
            Status::Ok | Status::Errors | Status::Partial | Status::Limit
        )
    }
}

/// One measured cell and repetition: the schema of every CSV and JSON result (see
/// results/README.md for each column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    // Identity
    /// Id shared by the rows of one run (UTC time and pid).
    pub run_id: String,
    /// When the row was measured (UTC, ISO 8601).
    pub time: String,
    /// Git revision bench-client was built from (`+dirty`: uncommitted changes to the code at
    /// build time), or NA.
    pub git_rev: String,
    /// How bench-client was built: profile and rustc version.
    pub build: String,
    /// Host name.
    pub host: String,
    /// CPU model name.
    pub cpu_model: String,
    /// CPUs available to the client process.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    // Cell
    /// Which table the row belongs to (`load`, `paper-1`, `paper-2`, a preset name).
    pub table: String,
    /// Server measured (binary or peer name).
    pub server: String,
    /// Concurrency model class of the server.
    pub model_class: String,
    /// Server workload (`hello`, `delay:100ms`, `cpu:200us`).
    pub workload: String,
    /// `http` or `raw`.
    pub protocol: String,
    /// `per-request` (a new connection per request), `keep-alive`, or `pipeline-N` (kept alive,
    /// N requests written at a time).
    pub conn_mode: String,
    /// Connections (requests in flight) at once.
    pub concurrency: usize,
    /// Client threads.
    pub threads: usize,
    /// Requests asked for (`-n`), or NA for a duration run.
    pub requests: Na<u64>,
    /// Duration asked for (`-d`) in seconds, or NA.
    pub duration_s: Na<f64>,
    /// Open-loop rate in requests per second, or NA (closed loop).
    pub rate: Na<f64>,
    /// Repetition number of this cell, from 1.
    pub repetition: u32,
    /// Seed of the run's random repetition order (suite), or NA.
    pub seed: Na<u64>,
    /// Core placement: `shared`, or `server=LIST,client=LIST`.
    pub cpus: String,
    /// What became of the row: ok, errors, partial, failed, unavailable, limit.
    pub status: Status,
    // Client side
    /// Measured wall time in seconds.
    pub elapsed_s: f64,
    /// Whole, valid responses.
    pub ok: u64,
    /// Connections that could not be made.
    pub err_connect: u64,
    /// Connections reset with a request in flight.
    pub err_reset: u64,
    /// Requests without a whole response within the timeout.
    pub err_timeout: u64,
    /// Responses with a status that is not an answer: other than 200 in the suite and the
    /// gate; outside `--expect-status` (default 2xx and 3xx) for `load`.
    pub err_status: u64,
    /// Responses that are not valid (unparsable, wrong length or raw answer).
    pub err_malformed: u64,
    /// Connections closed by the server before the whole response.
    pub err_closed: u64,
    /// Valid responses per second of elapsed time.
    pub rps: f64,
    /// Mean latency in ms (from the scheduled time in open loop).
    pub lat_mean_ms: Na<f64>,
    /// Median latency in ms.
    pub lat_p50_ms: Na<f64>,
    /// 90th percentile latency in ms.
    pub lat_p90_ms: Na<f64>,
    /// 99th percentile latency in ms.
    pub lat_p99_ms: Na<f64>,
    /// 99.9th percentile latency in ms.
    pub lat_p999_ms: Na<f64>,
    /// Largest latency in ms.
    pub lat_max_ms: Na<f64>,
    /// Median latency in ms over every request that ended, failed ones included.
    pub lat_all_p50_ms: Na<f64>,
    /// 99th percentile latency in ms over every request that ended, failed ones included.
    pub lat_all_p99_ms: Na<f64>,
    /// Median latency from the actual send time (differs in open loop).
    pub lat_p50_uncorrected_ms: Na<f64>,
    /// 99th percentile latency from the actual send time.
    pub lat_p99_uncorrected_ms: Na<f64>,
    /// Connections the client opened.
    pub connections: u64,
    /// Open loop: requests the schedule had due before the end that were never sent.
    pub not_sent: u64,
    /// Requests still in flight when the run ended, neither answered nor failed.
    pub abandoned: u64,
    /// Client CPU use as a percentage of its threads' capacity.
    pub client_cpu_pct: f64,
    /// The client used at least 80 % of the cores it could use: the row's req/s and latency
    /// may be the client's limit, not the server's.
    pub client_bound: bool,
    /// Steal time of the machine during the row, as a percentage of all CPU time (NA where
    /// not measured).
    pub steal_pct: Na<f64>,
    // Server side (filled by the suite runner)
    /// The server measured: a hash of its binary (`sha256:` and 12 hex digits) or a peer's
    /// version; NA for `load`.
    pub server_build: String,
    /// Where the server costs below come from: `perf` (counters on the whole process tree) or
    /// `proc` (/proc snapshots); NA when not measured. See docs/method.md.
    pub cost_source: String,
    /// Server CPU seconds inside the measured window, every thread and process of its tree.
    pub server_cpu_s: Na<f64>,
    /// The user part of `server_cpu_s` (the /proc tick split, scaled to it).
    pub server_cpu_user_s: Na<f64>,
    /// The system part of `server_cpu_s`.
    pub server_cpu_sys_s: Na<f64>,
    /// Context switches of the tree inside the window (perf: all; proc: its live threads').
    pub server_ctx_switches: Na<u64>,
    /// Voluntary context switches inside the window, of the threads alive at its end.
    pub server_ctx_voluntary: Na<u64>,
    /// Involuntary context switches inside the window, of the threads alive at its end.
    pub server_ctx_involuntary: Na<u64>,
    /// Largest resident set of the whole tree (summed over its processes) seen in the window, KiB
    /// (sampled every 25 ms).
    pub server_peak_rss_kb: Na<u64>,
    /// Most server threads seen at once during the measurement (all its processes; sampled every 25 ms).
    pub server_threads: Na<u64>,
    /// Most server processes seen at once during the measurement (sampled every 25 ms).
    pub server_processes: Na<u64>,
    /// Requests answered inside the window (the load's, and the hostile clients' that were
    /// answered): the window's costs divided by it give the costs per request.
    pub server_requests: Na<u64>,
    /// CPU seconds of the server's whole life in this row (start-up, check, warm-up, window,
    /// stop), from `wait4`: for comparison, not per request.
    pub server_life_cpu_s: Na<f64>,
    /// The server answered a request after the measurement and exited cleanly on SIGTERM
    /// (suite only; NA for `load`).
    pub server_ok_after: Na<bool>,
    // Scale preset (absent from older CSVs, which read as NA)
    /// Idle keep-alive connections asked for beside the load (each sent one request, then
    /// left idle), or NA.
    #[serde(default)]
    pub idle_conns: Na<u64>,
    /// How many of them got their answer and were held open through the window, or NA.
    #[serde(default)]
    pub idle_held: Na<u64>,
    /// Proportional set size summed over the server's process tree before the cell's
    /// connections opened (after the warm-up), KiB, or NA.
    #[serde(default)]
    pub server_pss_base_kb: Na<u64>,
    /// The same with the cell's connections open (idle cells: once they are idle), KiB, or NA.
    #[serde(default)]
    pub server_pss_kb: Na<u64>,
    /// (`server_pss_kb` - `server_pss_base_kb`) over the connections open (idle held, else
    /// the concurrency), in bytes per connection, or NA.
    #[serde(default)]
    pub mem_per_conn_b: Na<f64>,
    /// True when the run stopped early (the notes say why).
    pub partial: bool,
    /// Why a value is NA, why a run is partial, hints.
    pub notes: String,
}

/// The CSV header, derived from [`ResultRow`] (stable: a test pins it).
pub fn csv_header() -> String {
    let mut writer = csv::Writer::from_writer(vec![]);
    writer
        .serialize(ResultRow::example())
        .expect("serialize example");
    let bytes = writer.into_inner().expect("flush");
    String::from_utf8(bytes)
        .expect("utf8")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

impl ResultRow {
    /// A row with every field set, for tests and the header.
    pub fn example() -> ResultRow {
        ResultRow {
            run_id: "r".into(),
            time: "t".into(),
            git_rev: "g".into(),
            build: "b".into(),
            host: "h".into(),
            cpu_model: "c".into(),
            cores: 2,
            kernel: "k".into(),
            table: "load".into(),
            server: "s".into(),
            model_class: "m".into(),
            workload: "hello".into(),
            protocol: "http".into(),
            conn_mode: "keep-alive".into(),
            concurrency: 10,
            threads: 1,
            requests: Na(Some(100)),
            duration_s: Na(None),
            rate: Na(None),
            repetition: 1,
            seed: Na(None),
            cpus: "shared".into(),
            status: Status::Ok,
            elapsed_s: 1.5,
            ok: 100,
            err_connect: 0,
            err_reset: 0,
            err_timeout: 0,
            err_status: 0,
            err_malformed: 0,
            err_closed: 0,
            rps: 66.7,
            lat_mean_ms: Na(Some(1.0)),
            lat_p50_ms: Na(Some(1.0)),
            lat_p90_ms: Na(Some(1.0)),
            lat_p99_ms: Na(Some(1.0)),
            lat_p999_ms: Na(Some(1.0)),
            lat_max_ms: Na(Some(1.0)),
            lat_all_p50_ms: Na(Some(1.0)),
            lat_all_p99_ms: Na(Some(1.0)),
            lat_p50_uncorrected_ms: Na(Some(1.0)),
            lat_p99_uncorrected_ms: Na(Some(1.0)),
            connections: 10,
            not_sent: 0,
            abandoned: 0,
            client_cpu_pct: 12.5,
            client_bound: false,
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
            partial: false,
            notes: String::new(),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename. A reader
/// sees the old file or the new one, never half of either.
///
/// # Errors
/// Any I/O error; `path` is then unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The directory a file goes into (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks, before a run, that a file can be written at `path` as [`write_atomic`] writes it: a
/// file name, and a directory (made if missing) where a file can be created and removed.
///
/// # Errors
/// Why not, in words.
pub fn check_writable(path: &Path) -> io::Result<()> {
    if path.file_name().is_none() || path.is_dir() {
        return Err(io::Error::other("not a file name"));
    }
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".archbench-probe.{}", std::process::id()));
    fs::File::create(&probe)?;
    fs::remove_file(&probe)
}

/// Checks, before a run, that rows can be appended to the CSV at `path`: none there yet, or one
/// with this schema's header that ends with a whole line.
///
/// # Errors
/// Why not, in words.
pub fn check_appendable(path: &Path) -> io::Result<()> {
    match fs::read_to_string(path) {
        Ok(existing) => existing_rows_accept(path, &existing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the CSV `existing` (read from `path`) takes more rows of this schema.
fn existing_rows_accept(path: &Path, existing: &str) -> io::Result<()> {
    if existing.is_empty() {
        return Ok(());
    }
    if existing.lines().next() != Some(csv_header().as_str()) {
        return Err(io::Error::other(format!(
            "{} has a different header (another schema version?); not appending to it",
            path.display()
        )));
    }
    if !existing.ends_with('\n') {
        return Err(io::Error::other(format!(
            "{} ends mid-line; not appending",
            path.display()
        )));
    }
    Ok(())
}

/// Appends rows to a CSV file, writing the header when the file is new. The file is rewritten
/// atomically while its directory is locked (`flock` on the directory itself: concurrent runs
/// do not lose rows, and no lock file is left behind), and a crash leaves the old file whole.
///
/// # Errors
/// I/O errors, or an existing file whose header differs (it is left untouched).
pub fn append_csv(path: &Path, rows: &[ResultRow]) -> io::Result<()> {
    if path.file_name().is_none() {
        return Err(io::Error::other("path has no file name"));
    }
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let dir_handle = fs::File::open(dir)?;
    let _lock = nix::fcntl::Flock::lock(dir_handle, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    let mut content = match fs::read_to_string(path) {
        Ok(existing) => {
            existing_rows_accept(path, &existing)?;
            existing
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut writer = csv::WriterBuilder::new()
        .has_headers(content.is_empty())
        .from_writer(vec![]);
    for row in rows {
        writer.serialize(row).map_err(io::Error::other)?;
    }
    let new_rows = writer
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    content.push_str(&String::from_utf8_lossy(&new_rows));
    write_atomic(path, content.as_bytes())
}

/// Appends to `path` as [`append_csv`]; when that file holds another schema (an older
/// bench-client wrote it), the rows go to a new file beside it named after `run_id` instead of
/// being lost. Returns the file written.
///
/// # Errors
/// I/O errors.
pub fn append_csv_or_beside(path: &Path, rows: &[ResultRow], run_id: &str) -> io::Result<PathBuf> {
    match append_csv(path, rows) {
        Err(e) if e.to_string().contains("different header") => {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let beside = path.with_file_name(format!("{stem}-{run_id}.csv"));
            append_csv(&beside, rows)?;
            Ok(beside)
        }
        other => other.map(|()| path.to_path_buf()),
    }
}

/// Reads every row of a results CSV.
///
/// # Errors
/// I/O or parse errors.
pub fn read_csv(path: &Path) -> io::Result<Vec<ResultRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(io::Error::other)?;
    reader
        .deserialize()
        .map(|r| r.map_err(io::Error::other))
        .collect()
}

/// The summary's line on how req/s varied from second to second (whole seconds only), when
/// there were at least two.
pub fn spread_line(timeline: &[crate::timeline::Entry]) -> Option<String> {
    let (seconds, min, median, max) = crate::timeline::spread(timeline)?;
    Some(format!(
        "per sec   req/s min {min:.1}  median {median:.1}  max {max:.1} over {seconds} whole seconds"
    ))
}

fn fmt_ms(v: Na<f64>) -> String {
    match v.0 {
        Some(ms) if ms < 10.0 => format!("{ms:.3}"),
        Some(ms) => format!("{ms:.1}"),
        None => "NA".into(),
    }
}

/// The human summary of one row, with the figures the row does not hold.
pub fn summary(
    row: &ResultRow,
    figures: &crate::figures::Figures,
    target: &str,
    open_loop: bool,
    client_bound: bool,
) -> String {
    let mut s = String::new();
    let load = match (row.requests.0, row.duration_s.0) {
        (Some(n), _) => format!("{n} requests"),
        (None, Some(d)) => format!("{d} s"),
        _ => String::new(),
    };
    let shape = match row.rate.0 {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        s,
        "target    {target} ({}, {})",
        row.protocol, row.conn_mode
    );
    let _ = writeln!(
        s,
        "load      {load}, {} connections, {} threads, {shape}",
        row.concurrency, row.threads
    );
    let errors = row.err_connect
        + row.err_reset
        + row.err_timeout
        + row.err_status
        + row.err_malformed
        + row.err_closed;
    let _ = writeln!(
        s,
        "elapsed   {:.3} s   {} ok, {errors} errors, {} connections opened",
        row.elapsed_s, row.ok, row.connections
    );
    let _ = writeln!(s, "req/s     {:.1}", row.rps);
    if row.not_sent + row.abandoned > 0 {
        let _ = writeln!(
            s,
            "unsent    {} due and never sent, {} abandoned in flight at the end",
            row.not_sent, row.abandoned
        );
    }
    let _ = writeln!(
        s,
        "latency   min {}  mean {}  stdev {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {} (ms)",
        fmt_ms(figures.lat_min_ms),
        fmt_ms(row.lat_mean_ms),
        fmt_ms(figures.lat_stdev_ms),
        fmt_ms(row.lat_p50_ms),
        fmt_ms(row.lat_p90_ms),
        fmt_ms(row.lat_p99_ms),
        fmt_ms(row.lat_p999_ms),
        fmt_ms(row.lat_max_ms)
    );
    if errors > 0 {
        let _ = writeln!(
            s,
            "          (successes only; every request, failures included: p50 {}  p99 {})",
            fmt_ms(row.lat_all_p50_ms),
            fmt_ms(row.lat_all_p99_ms)
        );
    }
    if open_loop {
        let _ = writeln!(
            s,
            "          (from each request's scheduled time; uncorrected: p50 {}  p99 {})",
            fmt_ms(row.lat_p50_uncorrected_ms),
            fmt_ms(row.lat_p99_uncorrected_ms)
        );
    }
    if errors > 0 {
        let _ = writeln!(
            s,
            "errors    connect {}, reset {}, timeout {}, status {}, malformed {}, closed {}",
            row.err_connect,
            row.err_reset,
            row.err_timeout,
            row.err_status,
            row.err_malformed,
            row.err_closed
        );
    }
    s.push_str(&figures.summary_lines());
    let _ = writeln!(
        s,
        "client    {:.0}% CPU of its {} threads",
        row.client_cpu_pct, row.threads
    );
    if client_bound {
        let _ = writeln!(
            s,
            "warning   client-bound: the client used at least 80% of the cores it could use, so these figures \
             may measure the client; add threads (-t) or cores"
        );
    }
    if row.partial {
        let _ = writeln!(s, "PARTIAL   {}", row.notes);
    } else if !row.notes.is_empty() {
        let _ = writeln!(s, "note      {}", row.notes);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_stable() {
        assert_eq!(
            csv_header(),
            "run_id,time,git_rev,build,host,cpu_model,cores,kernel,table,server,model_class,\
             workload,protocol,conn_mode,concurrency,threads,requests,duration_s,rate,repetition,\
             seed,cpus,status,elapsed_s,ok,err_connect,err_reset,err_timeout,err_status,\
             err_malformed,err_closed,rps,lat_mean_ms,lat_p50_ms,lat_p90_ms,lat_p99_ms,lat_p999_ms,\
             lat_max_ms,lat_all_p50_ms,lat_all_p99_ms,lat_p50_uncorrected_ms,\
             lat_p99_uncorrected_ms,connections,not_sent,abandoned,client_cpu_pct,client_bound,\
             steal_pct,server_build,cost_source,server_cpu_s,server_cpu_user_s,server_cpu_sys_s,\
             server_ctx_switches,server_ctx_voluntary,server_ctx_involuntary,server_peak_rss_kb,\
             server_threads,server_processes,server_requests,server_life_cpu_s,server_ok_after,\
             idle_conns,idle_held,server_pss_base_kb,server_pss_kb,mem_per_conn_b,partial,notes"
        );
    }

    #[test]
    fn results_readme_documents_every_column() {
        let readme = include_str!("../../results/README.md");
        for column in csv_header().split(',') {
            assert!(
                readme.contains(&format!("| `{column}` |")),
                "results/README.md lacks {column}"
            );
        }
    }

    #[test]
    fn rows_round_trip_through_csv_with_na() {
        let dir = std::env::temp_dir().join(format!("archbench-csv-{}", std::process::id()));
        let path = dir.join("out.csv");
        let _ = fs::remove_file(&path);
        let first = ResultRow::example();
        let second = ResultRow {
            repetition: 2,
            seed: Na(Some(1_795_455_982_570_851_685)),
            lat_p99_ms: Na(None),
            ..ResultRow::example()
        };
        append_csv(&path, std::slice::from_ref(&first)).unwrap();
        append_csv(&path, std::slice::from_ref(&second)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("run_id,").count(), 1, "header written once");
        assert!(text.contains(",NA,"));
        assert_eq!(read_csv(&path).unwrap(), vec![first, second]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_with_another_header_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("archbench-hdr-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("other.csv");
        fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = append_csv(&path, &[ResultRow::example()]).unwrap_err();
        assert!(err.to_string().contains("different header"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "a,b\n1,2\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
