//! `bench-client`: archbench's load generator (`load`) and histogram tools (`merge`).
//!
//! Exit codes: 0 done; 1 done but with errors (or stopped early); 2 bad usage (clap's own
//! message for the command line's syntax; one line of ours for the checks after it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench_client::figures::{self, Figures};
use bench_client::load::{self, EngineKind, Labels, Refusal, Show};
use bench_client::meta::{self, Machine};
use bench_client::output;
use bench_client::request::{parse_header, parse_method, RequestSpec, StatusSet};
use bench_client::suite;
use bench_client::target::Target;
use bench_client::LoadSpec;
use clap::{Args, CommandFactory, Parser, Subcommand};
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serverkit::cli::{parse_duration, parse_duration_up_to};

/// archbench load generator.
#[derive(Parser)]
#[command(name = "bench-client", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load to one target and report throughput, latency and errors.
    Load(Box<LoadArgs>),
    /// Redo the paper's Tables 1 and 2 with every server (the `paper` preset).
    Paper(SuiteArgs),
    /// Run a preset of cells against every server.
    Suite {
        /// Preset: paper, http, hostile, models, scale or tiny.
        #[arg(long)]
        preset: String,
        #[command(flatten)]
        args: SuiteArgs,
    },
    /// Write a run's Markdown report and its plots again from its CSV (e.g. after the report
    /// code changed): results/<preset>/latest.md and its SVG files, or --out.
    Report {
        /// Preset the rows were measured with.
        #[arg(long)]
        preset: String,
        /// The run's CSV (its rows; a file holding several runs is reported as the last run).
        csv: PathBuf,
        /// Where to write the report (default: latest.md beside the CSV).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write every preset's report (results/*/latest.md) and plots on one static HTML page:
    /// results/report.html, or --out.
    Html {
        /// The results directory (default: results/ in the repository).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Where to write the page (default: report.html in the results directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The regression gate: compare a candidate build of the servers with a baseline build,
    /// paired and interleaved, against the machine's noise floor. Exit 0 pass, 1 regression
    /// (confirmed by a second round), 2 could not measure.
    Compare(Box<CompareArgs>),
    /// Run COMMAND (replacing this process) on the server's or the client's cores of the
    /// suite's placement (scripts/lecture.sh's `serve` starts servers this way).
    Pin {
        /// server or client.
        side: bench_client::lecture::Side,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run COMMAND (a load) on the client's core and print what the server's process tree
    /// spent meanwhile, measured as the suite measures (scripts/lecture.sh's `measure`).
    Measure {
        /// The server's process id.
        #[arg(long)]
        pid: u32,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Merge saved latency histograms (from --save-hist, e.g. from several hosts) and print
    /// their percentiles.
    Merge {
        /// Histogram files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a shell completion script: bench-client completions bash > /etc/bash_completion.d/bench-client
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (roff): bench-client.1 and one per subcommand, into --out (make man),
    /// or bench-client.1 alone on stdout.
    Man {
        /// Directory to write the pages into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The deepest `--pipeline`: past it a batch is no longer a plausible client.
const MAX_PIPELINE: i64 = 1024;

/// `--warmup`: a number of requests or a duration.
#[derive(Debug, Clone, Copy)]
enum Warmup {
    Requests(u64),
    Duration(Duration),
}

fn parse_warmup(text: &str) -> Result<Warmup, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("0 requests is no warm-up (leave the flag out)".into()),
        Ok(n) => Ok(Warmup::Requests(n)),
        Err(_) => parse_positive_duration(text).map(Warmup::Duration),
    }
}

/// `-c` when not given (with -n, at most -n).
const DEFAULT_CONCURRENCY: u64 = 10;

/// The longest `-d` and `--timeout`: a week (a soak run), where the servers' flags stop at an
/// hour.
const LONGEST_RUN: Duration = Duration::from_secs(7 * 24 * 3600);

/// A duration above zero, up to [`LONGEST_RUN`]: `-d 0s` would measure nothing (and divide by
/// nothing), `--timeout 0s` would fail every request.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration_up_to(text, LONGEST_RUN)? {
        d if d.is_zero() => Err(format!("'{text}' is zero; give a duration above 0")),
        d => Ok(d),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "'{text}' is not a positive rate (requests per second)"
        )),
    }
}

#[derive(Args)]
struct LoadArgs {
    /// Target: URL (http://127.0.0.1:8080/path?q, read as curl reads it: [::1] in brackets,
    /// user:password@ as Basic auth, every resolved address tried in order) or host:port.
    target: Target,

    /// Total requests (ab's -n). Without -n or -d: 10 s.
    #[arg(short = 'n', long = "requests", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Requests in flight at once: one per connection (ab's -c).
    /// Default 10, or -n when that is smaller; above -n it is refused (as ab refuses it).
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    concurrency: Option<u32>,

    /// How long to send (wrk's -d), e.g. 5s, 90m, 24h; with -n, whichever ends first.
    #[arg(short = 'd', long, value_parser = parse_positive_duration)]
    duration: Option<Duration>,

    /// Threads, each running its own event loop over its share of the connections.
    #[arg(short = 't', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,

    /// Keep connections alive; without it, a new connection per request (as ab and the paper).
    #[arg(short = 'k', long)]
    keep_alive: bool,

    /// Open loop: total requests per second, each sent at its scheduled time; latency counts
    /// from that time (coordinated omission corrected).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,

    /// Pipelining: write N requests at once on each kept-alive connection, then read their N
    /// answers before the next batch (needs -k; HTTP only). Latency of each request is from
    /// its batch's send (open loop: the batch's scheduled time) to its own answer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_PIPELINE))]
    pipeline: u32,

    /// Protocol: http, or raw (the paper's: connect, read HelloWorld\n until close).
    #[arg(long, value_enum, default_value_t = serverkit::Protocol::Http)]
    protocol: serverkit::Protocol,

    /// Time allowed for one request, connect included.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,

    /// Request method (HTTP only), e.g. POST, HEAD (whose answers have no body).
    #[arg(short = 'm', long, default_value = "GET", value_parser = parse_method)]
    method: String,

    /// A request header, 'Name: value' (repeatable); a Host header replaces the target's.
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// Request body (sent with its Content-Length on every request).
    #[arg(short = 'b', long, conflicts_with = "body_file")]
    body: Option<String>,

    /// Request body from a file, read once before the run.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,

    /// Content-Type header of the request (as ab -T).
    #[arg(short = 'T', long, value_name = "TYPE")]
    content_type: Option<String>,

    /// Statuses that count as answers, e.g. 200, 2xx, 200-204,404; the others are `status`
    /// errors. Every answer's status is counted and shown either way.
    #[arg(long, value_name = "LIST", default_value = "2xx,3xx")]
    expect_status: StatusSet,

    /// Unmeasured warm-up before the run: a number of requests or a duration (e.g. 2s).
    #[arg(long, value_parser = parse_warmup)]
    warmup: Option<Warmup>,

    /// Spread connections over N source addresses 127.0.0.1..N (against TIME_WAIT port
    /// exhaustion with a connection per request).
    #[arg(long, default_value_t = 0)]
    source_addrs: u8,

    /// Append one result row to this CSV file (header written once; atomic).
    #[arg(long)]
    csv: Option<PathBuf>,

    /// Print the result as JSON on stdout instead of the summary (with its per-second
    /// `timeline`, status codes and percentiles; missing numbers are null).
    #[arg(long, conflicts_with_all = ["latency", "histogram", "quiet"])]
    json: bool,

    /// Write the JSON document to this file as well (replaced atomically).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Print the latency percentile spectrum (wrk2's --latency layout) after the summary.
    #[arg(long)]
    latency: bool,

    /// Print a histogram of the latencies (11 bars, as oha) after the summary.
    #[arg(long)]
    histogram: bool,

    /// Print a line on stderr as each second ends: answers and errors in it.
    #[arg(long)]
    live: bool,

    /// Print nothing on stdout and no progress: the exit code, -o, --csv and the files say it
    /// all.
    #[arg(short = 'q', long, conflicts_with_all = ["latency", "histogram", "live"])]
    quiet: bool,

    /// Write the per-second timeline (answers, errors, req/s, p50 and p99 of each second) to
    /// this CSV file (replaced atomically).
    #[arg(long)]
    timeline: Option<PathBuf>,

    /// Save the latency histogram (HdrHistogram V2) to this file, for `merge`.
    #[arg(long)]
    save_hist: Option<PathBuf>,

    /// Never sleep while requests are in flight (epoll engine only). Costs the client a whole
    /// core per thread; spares the server the cost of waking the client for every response,
    /// as wrk's busy loop does. Off by default: on shared cores it steals CPU from the server.
    #[arg(long)]
    busy_poll: bool,

    /// With requests in flight, poll this long without blocking before sleeping (epoll
    /// engine; 0 disables): picks up answers due within microseconds without making the server
    /// wake the client. See docs/bench-client.md.
    #[arg(long, default_value = "50us", value_parser = parse_duration)]
    spin: Duration,

    /// Engine: epoll (default) or tokio.
    #[arg(long, value_enum, default_value_t = EngineKind::Epoll)]
    engine: EngineKind,

    /// Label for the server column of result rows.
    #[arg(long, default_value = "NA")]
    server: String,

    /// UDP: a datagram per request, `HelloWorld\n` back (a server started with `--transport
    /// udp`); closed loop with -c, open loop with --rate; an answer not back within --timeout
    /// is counted lost, never resent. Takes -n, -d, -c, --rate, --timeout, --json.
    #[arg(long)]
    udp: bool,

    /// Label for the workload column of result rows.
    #[arg(long, default_value = "NA")]
    workload: String,
}

#[derive(Args)]
struct SuiteArgs {
    /// Multiply every cell's request count by K (the paper's 1000 requests last well under a
    /// second today; a larger K steadies the figures).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    scale: u64,

    /// Repetitions per cell (default: the preset's; paper: 5).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    reps: Option<u32>,

    /// Only these servers, comma-separated (iterative,fork,threads,pool,pool-handoff,prefork,
    /// epoll,select,poll,busypoll,sigio,reuseport,mio,uring,tokio,node,nginx; node-cluster and
    /// nginx-workers with more than one core).
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,

    /// Results directory (default: results/<preset> in the repository).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Directory of the server-* binaries (default: beside this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,

    /// Extra flags for every archbench server (not node or nginx), e.g. "--headers minimal";
    /// named in the report and in each row's notes.
    #[arg(long, allow_hyphen_values = true)]
    server_args: Option<String>,

    /// Core placement: `server=LIST,client=LIST` (e.g. server=1-3,client=0) or `shared`.
    /// Default: with two or more cores, the client on the lowest and the servers on the rest.
    #[arg(long)]
    cpus: Option<String>,

    /// Seed of the random repetition order and the report's bootstrap (default: from the clock;
    /// the report and every row record it).
    #[arg(long)]
    seed: Option<u64>,

    /// Measure each duration cell (scale, hostile) for this long instead of the preset's
    /// window, e.g. 500ms: shortens a run for a smoke test.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Scale preset only: the levels of every sweep, comma-separated (default: 1, 10, 100,
    /// 1000, 10000 connections; 1000 and 10000 idle, and 100000 where the descriptor limit
    /// allows).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    levels: Option<Vec<u64>>,
}

#[derive(Args)]
struct CompareArgs {
    /// Directory of the baseline's server-* binaries (e.g. a release build of the base revision).
    #[arg(long)]
    baseline: PathBuf,

    /// Directory of the candidate's server-* binaries.
    #[arg(long)]
    candidate: PathBuf,

    /// Only these servers, comma-separated (default: every model of the workspace).
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,

    /// Cells, comma-separated: keep-alive, per-request (default: both).
    #[arg(long, value_delimiter = ',')]
    cells: Option<Vec<String>>,

    /// ABBA pairs per server and cell (each pair gives one ratio): an even number, so that AB
    /// and BA come equally often, from 6 (the fewest with a 95 % interval) to 200.
    #[arg(long, default_value_t = 28, value_parser = parse_pairs)]
    pairs: u32,

    /// ABBA pairs per suspected server and cell in the confirmation round, on fresh servers:
    /// more than round 1, since this round decides (even, 6 to 200).
    #[arg(long, default_value_t = 64, value_parser = parse_pairs)]
    confirm_pairs: u32,

    /// Load per segment: short, so that both halves of a pair see the same machine.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    segment: Duration,

    /// Unmeasured load per side before its first segment.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    warmup: Duration,

    /// Smallest change called a regression, in percent (the noise floor may raise it).
    #[arg(long, default_value = "5", value_parser = parse_percent)]
    min_effect: f64,

    /// Metrics that can fail the gate, comma-separated: cpu, rps, p99 (the others are reported).
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    gate: Vec<bench_client::regress::verdict::Metric>,

    /// Directory of cached noise floors (default: $XDG_CACHE_HOME/archbench or ~/.cache/archbench).
    #[arg(long)]
    noise_cache: Option<PathBuf>,

    /// Measure the noise floor again even if one is cached for this machine.
    #[arg(long)]
    recalibrate: bool,

    /// A/A rounds of a calibration.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    calibration_rounds: u32,

    /// Core placement: `server=LIST,client=LIST` or `shared` (default: as the suite).
    #[arg(long)]
    cpus: Option<String>,

    /// Seed of the orders (default: from the clock; the report records it).
    #[arg(long)]
    seed: Option<u64>,

    /// Where report.md, report.json and segments.csv go.
    #[arg(long, default_value = "target/regress/report")]
    out: PathBuf,
}

fn parse_pairs(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (6..=200).contains(&n) && n % 2 == 0 => Ok(n),
        _ => Err(format!(
            "'{text}' is not an even number of pairs from 6 to 200"
        )),
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("'{text}' is not a percentage from 0 to 100")),
    }
}

fn main() -> ExitCode {
    // clap's own message for a malformed command line, whole: the argument's name, what was
    // expected, a suggestion for a misspelt flag, colour on a terminal; exit 2 (clap's code
    // for usage errors, and ours). The servers keep their one-line rule (serverkit::cli).
    let cli = Cli::parse();
    serverkit::listener::raise_fd_limit();
    match cli.command {
        Command::Load(args) => load_command(*args),
        Command::Paper(args) => suite_command("paper", args),
        Command::Suite { preset, args } => suite_command(&preset, args),
        Command::Report { preset, csv, out } => report_command(&preset, &csv, out),
        Command::Html { results, out } => html_command(results, out),
        Command::Compare(args) => compare_command(*args),
        Command::Merge { files } => merge_command(&files),
        Command::Pin { side, command } => exit(bench_client::lecture::pin(side, &command)),
        Command::Measure { pid, command } => exit(bench_client::lecture::measure(pid, &command)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "bench-client",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { out } => man_command(out),
    }
}

fn man_command(out: Option<PathBuf>) -> ExitCode {
    let command = Cli::command();
    let Some(dir) = out else {
        return match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-client: {e}");
                ExitCode::FAILURE
            }
        };
    };
    // One page per subcommand (bench-client-load.1, ...), named as git names its pages.
    let written =
        std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(command, &dir));
    match written {
        Ok(()) => {
            println!("wrote the man pages into {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-client: cannot write {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// `load --udp`: the UDP client of `bench_client::udp`, its summary or its JSON.
fn udp_load(args: &LoadArgs) -> ExitCode {
    let spec = bench_client::udp::UdpSpec {
        target: args.target.addr,
        requests: args.requests,
        duration: args
            .duration
            .or(args.requests.is_none().then_some(Duration::from_secs(10))),
        concurrency: args
            .concurrency
            .map_or(DEFAULT_CONCURRENCY as usize, |c| c as usize),
        rate: args.rate,
        timeout: args.timeout,
    };
    match bench_client::udp::run(&spec) {
        Ok(result) if args.json => {
            println!("{}", serde_json::to_string(&result).expect("serializable"));
            ExitCode::SUCCESS
        }
        Ok(result) => {
            print!("{}", bench_client::udp::summary(&spec, &result));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: UDP load: {e}");
            ExitCode::from(1)
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message} (see --help)");
    ExitCode::from(2)
}

/// Checks a `load` command line past what clap checks, before anything runs, and turns it into
/// the run's [`LoadSpec`]. Every refusal is one line naming the flag.
fn load_spec(args: &LoadArgs) -> Result<LoadSpec, String> {
    let raw = args.protocol == serverkit::Protocol::Raw;
    if args.source_addrs > 0 && !args.target.addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err("--source-addrs spreads over 127.0.0.x and needs a loopback target".into());
    }
    let concurrency = match (args.concurrency, args.requests) {
        // As ab: more connections than requests would leave some with nothing to send.
        (Some(c), Some(n)) if u64::from(c) > n => {
            return Err(format!(
                "-c {c} is more than -n {n}: at most {n} requests can be in flight (ab refuses \
                 this too); lower -c or raise -n"
            ))
        }
        (Some(c), _) => c as usize,
        (None, Some(n)) => n.min(DEFAULT_CONCURRENCY) as usize,
        (None, None) => DEFAULT_CONCURRENCY as usize,
    };
    if args.busy_poll && args.engine != EngineKind::Epoll {
        return Err("--busy-poll needs the epoll engine".into());
    }
    if raw && args.keep_alive {
        return Err("-k does not apply to the raw protocol (one answer per connection)".into());
    }
    if args.pipeline > 1 && raw {
        return Err("--pipeline needs the http protocol".into());
    }
    if args.pipeline > 1 && !args.keep_alive {
        return Err("--pipeline needs -k (batches are written on kept-alive connections)".into());
    }
    let http_only = [
        ("--method", args.method != "GET"),
        ("--header", !args.headers.is_empty()),
        ("--body", args.body.is_some()),
        ("--body-file", args.body_file.is_some()),
        ("--content-type", args.content_type.is_some()),
        (
            "--expect-status",
            args.expect_status != StatusSet::default(),
        ),
    ];
    if let Some((flag, _)) = http_only.iter().find(|(_, given)| raw && *given) {
        return Err(format!(
            "{flag} applies to HTTP only (the raw protocol sends nothing)"
        ));
    }
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| format!("--body-file {}: cannot read it: {e}", path.display()))?,
        (None, None) => Vec::new(),
    };
    let mut headers = args.headers.clone();
    if let Some(kind) = &args.content_type {
        headers.push(("Content-Type".into(), kind.clone()));
    }
    for (flag, path) in [
        ("--csv", &args.csv),
        ("--timeline", &args.timeline),
        ("--save-hist", &args.save_hist),
        ("--output", &args.output),
    ] {
        if let Some(path) = path {
            output::check_writable(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        }
    }
    if let Some(path) = &args.csv {
        output::check_appendable(path).map_err(|e| format!("--csv {}: {e}", path.display()))?;
    }
    Ok(LoadSpec {
        target: args.target.clone(),
        requests: args.requests,
        duration: args.duration.or(if args.requests.is_none() {
            Some(Duration::from_secs(10))
        } else {
            None
        }),
        concurrency,
        threads: (args.threads as usize).min(concurrency),
        keep_alive: args.keep_alive,
        rate: args.rate,
        raw,
        timeout: args.timeout,
        busy_poll: args.busy_poll,
        spin: args.spin,
        source_addrs: args.source_addrs,
        pipeline: args.pipeline as usize,
        request: RequestSpec {
            method: args.method.clone(),
            headers,
            body,
            expect: args.expect_status.clone(),
        },
    })
}

fn load_command(args: LoadArgs) -> ExitCode {
    if args.udp {
        return udp_load(&args);
    }
    let mut spec = match load_spec(&args) {
        Ok(spec) => spec,
        Err(message) => return usage_error(&message),
    };
    match load::preflight(&spec) {
        Ok(addr) => spec.target.addr = addr,
        Err(Refusal::Unreachable(message)) => {
            eprintln!("bench-client: {message}");
            return ExitCode::FAILURE;
        }
        Err(Refusal::WrongProtocol(message)) => return usage_error(&message),
    }
    if let Err(e) = load::catch_sigint() {
        eprintln!("bench-client: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(warmup) = args.warmup {
        let (requests, duration) = match warmup {
            Warmup::Requests(n) => (Some(n), None),
            Warmup::Duration(d) => (None, Some(d)),
        };
        let warm = LoadSpec {
            requests,
            duration,
            ..spec.clone()
        };
        match load::run(&warm, args.engine, Show::default()) {
            Ok(result) if result.protocol_mismatch => {
                return usage_error(load::wrong_protocol_line(spec.raw))
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("bench-client: warm-up failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let show = Show {
        progress: !args.json && !args.quiet,
        live: args.live,
    };
    let result = match load::run(&spec, args.engine, show) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("bench-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    if result.protocol_mismatch {
        return usage_error(load::wrong_protocol_line(spec.raw));
    }
    let machine = Machine::describe();
    let labels = Labels {
        table: "load".into(),
        server: args.server.clone(),
        model_class: "NA".into(),
        workload: args.workload.clone(),
        repetition: 1,
        run_id: meta::new_run_id(),
    };
    let mut row = load::row(&spec, &result, &labels, &machine);
    let unmeasured = "server-side costs are not measured by `load` (the suite measures them)";
    row.notes = if row.notes.is_empty() {
        unmeasured.to_string()
    } else {
        format!("{}; {unmeasured}", row.notes)
    };
    let figures = Figures::of(&result, &spec.request.expect.to_string());
    let json = figures::json(&row, &figures, &result.timeline);
    let mut failed = false;
    if args.json {
        match &json {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("bench-client: {e}"),
        }
    } else if !args.quiet {
        let target = if spec.raw {
            format!("tcp://{}", spec.target.addr)
        } else {
            spec.target.to_string()
        };
        let open_loop = spec.rate.is_some();
        print!(
            "{}",
            output::summary(&row, &figures, &target, open_loop, row.client_bound)
        );
        if let Some(line) = output::spread_line(&result.timeline) {
            println!("{line}");
        }
        if result.stats.ports_exhausted {
            println!("hint      {}", load::PORTS_HINT);
        }
        if args.latency {
            print!("\n{}", figures::spectrum(&result.stats.latency));
        }
        if args.histogram {
            print!("\n{}", figures::histogram(&result.stats.latency));
        }
    }
    if let Some(path) = &args.output {
        let written = json
            .as_ref()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|json| output::write_atomic(path, format!("{json}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("bench-client: cannot write {}: {e}", path.display());
            failed = true;
        }
    }
    if let Some(path) = &args.csv {
        if let Err(e) = output::append_csv(path, &[row]) {
            eprintln!("bench-client: cannot write {}: {e}", path.display());
            failed = true;
        }
    }
    if let Some(path) = &args.timeline {
        let written = bench_client::timeline::to_csv(&result.timeline)
            .and_then(|bytes| output::write_atomic(path, &bytes));
        if let Err(e) = written {
            eprintln!("bench-client: cannot write {}: {e}", path.display());
            failed = true;
        }
    }
    if let Some(path) = &args.save_hist {
        let mut bytes = Vec::new();
        let saved = V2Serializer::new()
            .serialize(&result.stats.latency, &mut bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|_| output::write_atomic(path, &bytes));
        if let Err(e) = saved {
            eprintln!(
                "bench-client: cannot save histogram to {}: {e}",
                path.display()
            );
            failed = true;
        }
    }
    if failed || result.partial.is_some() || result.stats.errors.total() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn suite_command(preset: &str, args: SuiteArgs) -> ExitCode {
    let mut preset = match suite::preset(preset) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    if let Some(levels) = &args.levels {
        if preset.name != "scale" {
            return usage_error("--levels applies to the scale preset only");
        }
        let levels: Vec<usize> = levels.iter().map(|&l| l as usize).collect();
        preset.cells = suite::scale::cells(&levels, &levels);
    }
    if let Some(names) = &args.servers {
        if let Err(e) = suite::check_server_names(names) {
            return usage_error(&e);
        }
    }
    let mut places = suite::server::Locations::beside_executable();
    if let Some(dir) = args.bin_dir {
        places.bin_dir = dir;
    }
    let out_dir = args
        .out
        .unwrap_or_else(|| suite::default_out_dir(&places, preset.name));
    let placement = match placement_of(args.cpus.as_deref()) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let seed = args.seed.unwrap_or_else(default_seed);
    let opts = suite::SuiteOptions {
        placement,
        seed,
        reps: args.reps.unwrap_or(preset.reps),
        preset,
        scale: args.scale,
        only: args.servers,
        out_dir,
        places,
        server_args: args
            .server_args
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        duration: args.duration,
    };
    if let Err(e) = load::catch_sigint() {
        eprintln!("bench-client: {e}");
        return ExitCode::FAILURE;
    }
    let run = match suite::run(&opts, |line| eprintln!("{line}")) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("bench-client: cannot write results: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("wrote {} and {}", run.csv.display(), run.markdown.display());
    let failed = run.rows.iter().filter(|r| r.status.is_failure()).count();
    use bench_client::output::Status;
    for (status, what) in [
        (
            Status::Errors,
            "had request errors (status 'errors'; see their err_* columns)",
        ),
        (
            Status::Limit,
            "are levels a server could not hold, or did not run after one (status 'limit'; \
             see their notes and the report)",
        ),
    ] {
        let count = run.rows.iter().filter(|r| r.status == status).count();
        if count > 0 {
            println!("{count} rows {what}");
        }
    }
    if failed > 0 {
        eprintln!(
            "bench-client: {failed} rows failed or are partial (status 'failed' or 'partial'; see their notes)"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn report_command(preset: &str, csv: &std::path::Path, out: Option<PathBuf>) -> ExitCode {
    if let Err(e) = suite::preset(preset) {
        return usage_error(&e);
    }
    let rows = match output::read_csv(csv) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("bench-client: cannot read {}: {e}", csv.display());
            return ExitCode::FAILURE;
        }
    };
    // The last run in the file.
    let last = rows.last().map(|r| r.run_id.clone()).unwrap_or_default();
    let rows: Vec<_> = rows.into_iter().filter(|r| r.run_id == last).collect();
    let name = csv
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report = match suite::report_from_rows(preset, &rows, &name) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bench-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = out.unwrap_or_else(|| csv.with_file_name("latest.md"));
    if let Err(e) = report.write_as(&out) {
        eprintln!("bench-client: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} and {} plots beside it",
        out.display(),
        report.plots.len()
    );
    ExitCode::SUCCESS
}

fn html_command(results: Option<PathBuf>, out: Option<PathBuf>) -> ExitCode {
    let places = suite::server::Locations::beside_executable();
    let results = results.unwrap_or_else(|| {
        places
            .repo_root
            .map_or_else(|| PathBuf::from("results"), |r| r.join("results"))
    });
    if !results.is_dir() {
        return usage_error(&format!("{} is not a directory", results.display()));
    }
    let out = out.unwrap_or_else(|| results.join("report.html"));
    match bench_client::html::write(&results, &out) {
        Ok(path) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--cpus`, or the default placement on the cores this process may use.
fn placement_of(cpus: Option<&str>) -> Result<suite::placement::Placement, String> {
    let allowed = suite::placement::allowed_cores();
    match cpus {
        Some(text) => suite::placement::Placement::parse(text, &allowed),
        None => Ok(suite::placement::Placement::default_for(&allowed)),
    }
}

fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn compare_command(args: CompareArgs) -> ExitCode {
    use bench_client::regress::{self, report, GateOptions, NoiseOptions};
    let mut servers = regress::default_servers();
    if let Some(names) = &args.servers {
        if let Some(bad) = names.iter().find(|n| !servers.iter().any(|s| s.name == *n)) {
            let known: Vec<&str> = servers.iter().map(|s| s.name).collect();
            return usage_error(&format!(
                "unknown server '{bad}' for the gate (known: {})",
                known.join(", ")
            ));
        }
        servers.retain(|s| names.iter().any(|n| n == s.name));
    }
    let mut cells = regress::cells();
    if let Some(names) = &args.cells {
        if let Some(bad) = names.iter().find(|n| !cells.iter().any(|c| c.id == *n)) {
            return usage_error(&format!(
                "unknown cell '{bad}' (known: keep-alive, per-request)"
            ));
        }
        cells.retain(|c| names.iter().any(|n| n == c.id));
    }
    let placement = match placement_of(args.cpus.as_deref()) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let cache_dir = args.noise_cache.unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("archbench")
    });
    let opts = GateOptions {
        baseline: args.baseline,
        candidate: args.candidate,
        repo_root: suite::server::Locations::beside_executable().repo_root,
        servers,
        cells,
        pairs: args.pairs,
        confirm_pairs: args.confirm_pairs,
        segment: args.segment,
        warmup: args.warmup,
        min_effect: args.min_effect,
        gate: args.gate,
        placement,
        seed: args.seed.unwrap_or_else(default_seed),
        noise: NoiseOptions {
            cache_dir,
            recalibrate: args.recalibrate,
            rounds: args.calibration_rounds,
        },
    };
    // Ctrl-C ends the segment under way early: the run stops with exit 2, its servers resumed
    // and stopped, and what was measured written.
    if let Err(e) = load::catch_sigint() {
        eprintln!("bench-client: {e}");
        return ExitCode::from(2);
    }
    let mut segments = Vec::new();
    let outcome = regress::run(&opts, &mut segments, &mut |line| eprintln!("{line}"));
    print!("{}", report::markdown(&outcome));
    match report::write_all(&args.out, &outcome, &segments) {
        Ok(paths) => eprintln!(
            "wrote {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => {
            eprintln!(
                "bench-client: cannot write the report to {}: {e}",
                args.out.display()
            );
            return ExitCode::from(2);
        }
    }
    if let Some(why) = &outcome.error {
        eprintln!("bench-client: could not measure: {why}");
    }
    ExitCode::from(outcome.exit_code)
}

fn merge_command(files: &[PathBuf]) -> ExitCode {
    let mut merged = bench_client::engine::new_histogram();
    for path in files {
        let loaded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                Deserializer::new()
                    .deserialize::<u64, _>(&mut bytes.as_slice())
                    .map_err(|e| format!("not a latency histogram saved by --save-hist ({e})"))
            })
            .and_then(|h| merged.add(&h).map_err(|e| e.to_string()));
        if let Err(e) = loaded {
            eprintln!("bench-client: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("requests  {}", merged.len());
    if merged.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("mean      {:.3} ms", merged.mean() / 1000.0);
    for q in [0.5, 0.9, 0.99, 0.999] {
        println!(
            "p{:<8} {:.3} ms",
            q * 100.0,
            merged.value_at_quantile(q) as f64 / 1000.0
        );
    }
    println!("max       {:.3} ms", merged.max() as f64 / 1000.0);
    ExitCode::SUCCESS
}
