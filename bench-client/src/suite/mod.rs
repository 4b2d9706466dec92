//! The suite runner: every server of a preset, measured on identical terms.
//!
//! For each cell (a workload, protocol and load shape) and each repetition, every server is
//! started afresh on port 0 on its own cores ([`placement`]), checked (one request must get
//! the right answer, or the server is reported and not measured), warmed up, measured with the
//! load engine, and stopped with SIGTERM; its exit must be clean. Its costs (CPU, context
//! switches, memory of its whole process tree) are those of the measured window only
//! ([`cost`]). Repetitions are interleaved (repetition 1 of every server, then repetition 2,
//! ...), each in a new random order from a recorded seed, so neither a slow minute of the
//! machine nor a fixed neighbour lands on one server. A server that fails to start, fails the
//! check or dies mid-cell gives a row with that status and the run goes on.

pub mod cost;
pub mod hostile;
pub mod placement;
pub mod plots;
pub mod report;
pub mod scale;
mod scale_report;
pub mod server;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serverkit::{Protocol, Workload};

use crate::engine::DEFAULT_SPIN;
use crate::load::{self, EngineKind, Labels, LoadResult};
use crate::meta::{self, Machine};
use crate::output::{self, Na, ResultRow, Status};
use crate::target::Target;
use crate::{stats, LoadSpec};
use hostile::Adversary;
use placement::Placement;
use scale::Step;
use server::{ConnLimits, Launch, Locations};

/// One server of the comparison.
#[derive(Debug, Clone)]
pub struct ServerDef {
    /// Row name.
    pub name: &'static str,
    /// Concurrency model, in words.
    pub model_class: &'static str,
    /// How to start it.
    pub launch: Launch,
    /// A reference peer rather than a model of the workspace.
    pub reference: bool,
}

/// Every server the suite knows: the workspace's models, then the reference peers (those
/// with a worker per core only where the servers may use more than one).
pub fn servers() -> Vec<ServerDef> {
    let model = |name, bin, model_class| ServerDef {
        name,
        model_class,
        launch: Launch::Binary(bin, &[]),
        reference: false,
    };
    let mut servers = vec![
        model(
            "iterative",
            "server-iterative",
            "iterative: one connection at a time",
        ),
        model("fork", "server-fork", "fork per connection"),
        model("threads", "server-threads", "thread per connection"),
        model("pool", "server-pool", "prethreaded pool (32 threads)"),
        ServerDef {
            launch: Launch::Binary("server-pool", &["--accept", "handoff"]),
            ..model(
                "pool-handoff",
                "server-pool",
                "prethreaded pool, an acceptor hands off (32 threads)",
            )
        },
        model("prefork", "server-prefork", "preforked pool (32 processes)"),
        model("epoll", "server-epoll", "epoll event loop, one thread"),
        model("select", "server-select", "select loop, one thread"),
        model("poll", "server-poll", "poll loop, one thread"),
        model("busypoll", "server-busypoll", "busy-poll loop, one thread"),
        model("sigio", "server-sigio", "signal-driven I/O, one thread"),
        model(
            "reuseport",
            "server-reuseport",
            "epoll workers with SO_REUSEPORT, one per core",
        ),
        model("tokio", "server-tokio", "tokio, work-stealing runtime"),
        model("uring", "server-uring", "io_uring completions, one thread"),
        ServerDef {
            name: "node",
            model_class: "Node.js event loop (reference)",
            launch: Launch::Node(1),
            reference: true,
        },
        ServerDef {
            name: "nginx",
            model_class: "nginx, 1 worker (reference)",
            launch: Launch::Nginx(1),
            reference: true,
        },
    ];
    // A worker per server core: the count is set when a run knows the server's cores
    // (`PER_CORE` until then), and the rows are left out where the server has only one.
    servers.extend([
        ServerDef {
            name: "node-cluster",
            model_class: "Node.js cluster, a worker per core (reference)",
            launch: Launch::Node(PER_CORE),
            reference: true,
        },
        ServerDef {
            name: "nginx-workers",
            model_class: "nginx, a reuseport worker per core (reference)",
            launch: Launch::Nginx(PER_CORE),
            reference: true,
        },
    ]);
    // Last, so that every server before it keeps its place, and its plot colour, in the
    // reports committed before it came.
    servers.push(model("mio", "server-mio", "mio event loop, one thread"));
    servers
}

/// Worker count of a reference row that runs a worker per server core.
const PER_CORE: usize = 0;

/// The server as it runs on `server_cores` cores: a worker-per-core reference row gets its
/// count, or is left out (`None`) where the server has one core (it would repeat its
/// one-worker row).
fn on_cores(mut def: ServerDef, server_cores: usize) -> Option<ServerDef> {
    match &mut def.launch {
        Launch::Node(n) | Launch::Nginx(n) if *n == PER_CORE => {
            if server_cores < 2 {
                return None;
            }
            *n = server_cores;
        }
        _ => {}
    }
    Some(def)
}

/// One cell of a preset: what every server is measured on.
#[derive(Debug, Clone)]
pub struct CellSpec {
    /// Table id (`paper-1`, ...).
    pub table: String,
    /// Heading for the report.
    pub title: String,
    /// Server workload.
    pub workload: Workload,
    /// Protocol.
    pub protocol: Protocol,
    /// Keep connections alive (else one per request).
    pub keep_alive: bool,
    /// Requests per repetition, before `--scale`.
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Measure for this long instead of a request count.
    pub duration: Option<Duration>,
    /// What misbehaves beside the load.
    pub adversary: Adversary,
    /// Open loop at this many requests per second (else closed loop).
    pub rate: Option<f64>,
    /// Spread the load's connections over this many loopback source addresses (0: one).
    pub source_addrs: u8,
    /// The cell's sweep and level in the scale preset ([`scale`]), which adds the idle
    /// connections, the memory per connection and the level's limits.
    pub scale: Option<Step>,
    /// Requests pipelined per batch on a kept-alive connection (1: none; see `load --pipeline`).
    pub pipeline: usize,
}

/// A named set of cells.
#[derive(Debug, Clone)]
pub struct Preset {
    /// Name (`paper`, `tiny`, ...).
    pub name: &'static str,
    /// What it is for.
    pub about: &'static str,
    /// The cells.
    pub cells: Vec<CellSpec>,
    /// Repetitions unless `--reps` says otherwise.
    pub reps: u32,
}

/// The presets `bench-client suite --preset NAME` knows.
pub fn presets() -> Vec<Preset> {
    let ms = Duration::from_millis;
    let cell = |table: &str, title: &str, workload, protocol, keep_alive, requests, concurrency| {
        CellSpec {
            table: table.into(),
            title: title.into(),
            workload,
            protocol,
            keep_alive,
            requests,
            concurrency,
            duration: None,
            adversary: Adversary::None,
            rate: None,
            source_addrs: 0,
            scale: None,
            pipeline: 1,
        }
    };
    let hostile = |table: &str, title: &str, adversary| CellSpec {
        duration: Some(Duration::from_secs(2)),
        adversary,
        ..cell(table, title, Workload::Hello, Protocol::Http, false, 0, 10)
    };
    vec![
        Preset {
            name: "paper",
            about: "the paper's Tables 1 and 2: raw protocol, a new connection per request",
            cells: vec![
                cell(
                    "paper-1",
                    "Table 1: hello, 1000 requests, 10 at a time",
                    Workload::Hello,
                    Protocol::Raw,
                    false,
                    1000,
                    10,
                ),
                cell(
                    "paper-2",
                    "Table 2: delay:100ms, 100 requests, 5 at a time",
                    Workload::Delay(ms(100)),
                    Protocol::Raw,
                    false,
                    100,
                    5,
                ),
            ],
            reps: 5,
        },
        Preset {
            name: "http",
            about: "HTTP: hello with a connection per request, and kept alive at -c 50",
            cells: vec![
                cell(
                    "http-per-request",
                    "HTTP hello, a new connection per request, 10 at a time",
                    Workload::Hello,
                    Protocol::Http,
                    false,
                    10_000,
                    10,
                ),
                cell(
                    "http-keep-alive",
                    "HTTP hello, keep-alive, 50 connections",
                    Workload::Hello,
                    Protocol::Http,
                    true,
                    50_000,
                    50,
                ),
            ],
            reps: 3,
        },
        Preset {
            name: "hostile",
            about:
                "HTTP hello (a connection per request, 10 at a time, 2 s) beside hostile clients",
            cells: vec![
                hostile(
                    "hostile-clean",
                    "clean: the normal load alone",
                    Adversary::None,
                ),
                hostile(
                    "hostile-slowloris-10",
                    "beside 10 slowloris connections",
                    Adversary::Slowloris(10),
                ),
                hostile(
                    "hostile-slowloris-100",
                    "beside 100 slowloris connections",
                    Adversary::Slowloris(100),
                ),
                hostile(
                    "hostile-slowloris-1000",
                    "beside 1000 slowloris connections",
                    Adversary::Slowloris(1000),
                ),
                hostile(
                    "hostile-malformed",
                    "beside a stream of malformed requests",
                    Adversary::Malformed,
                ),
                hostile(
                    "hostile-resets",
                    "beside a stream of clients that reset before their answer",
                    Adversary::Resets,
                ),
            ],
            reps: 3,
        },
        Preset {
            name: "models",
            about: "HTTP hello kept alive at -c 100 and a connection per request at -c 10: \
                    server CPU per request of each model against epoll's (issue 11)",
            cells: vec![
                cell(
                    "models-keep-alive",
                    "HTTP hello, keep-alive, 100 connections",
                    Workload::Hello,
                    Protocol::Http,
                    true,
                    100_000,
                    100,
                ),
                cell(
                    "models-per-request",
                    "HTTP hello, a new connection per request, 10 at a time",
                    Workload::Hello,
                    Protocol::Http,
                    false,
                    20_000,
                    10,
                ),
            ],
            reps: 5,
        },
        Preset {
            name: "scale",
            about: "where each model stops scaling: keep-alive (plain and 16 deep pipelined) \
                    and per-request load at 1 to 10,000 connections, and 1,000 to 10,000 idle \
                    connections beside a light load, with memory per connection (issue 13)",
            // The pipelined sweep (16 requests at a time, as TechEmpower's plaintext test)
            // is `scale::Sweep::Pipelined`, beside the keep-alive one.
            cells: scale::default_cells(),
            reps: 1,
        },
        Preset {
            name: "tiny",
            about: "a seconds-long smoke run of every server (used by the tests)",
            cells: vec![
                cell(
                    "tiny-hello",
                    "hello, 20 requests, 2 at a time",
                    Workload::Hello,
                    Protocol::Raw,
                    false,
                    20,
                    2,
                ),
                cell(
                    "tiny-delay",
                    "delay:20ms, 4 requests, 2 at a time",
                    Workload::Delay(ms(20)),
                    Protocol::Raw,
                    false,
                    4,
                    2,
                ),
            ],
            reps: 2,
        },
    ]
}

/// How a suite run is set up.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The preset.
    pub preset: Preset,
    /// Request counts are multiplied by this.
    pub scale: u64,
    /// Repetitions per cell.
    pub reps: u32,
    /// Only these servers (by name); all when `None`.
    pub only: Option<Vec<String>>,
    /// Where results go.
    pub out_dir: PathBuf,
    /// Where the servers are.
    pub places: Locations,
    /// Extra flags for the archbench servers (not the reference servers).
    pub server_args: Vec<String>,
    /// Which cores the servers and the client run on.
    pub placement: Placement,
    /// Seed of the repetition order and of the report's bootstrap.
    pub seed: u64,
    /// Measure every duration cell for this long instead of the preset's duration.
    pub duration: Option<Duration>,
}

/// What a suite run produced.
pub struct SuiteRun {
    /// Every row, in the order measured.
    pub rows: Vec<ResultRow>,
    /// The CSV written.
    pub csv: PathBuf,
    /// The Markdown written.
    pub markdown: PathBuf,
}

/// Runs the suite, printing a line per measurement through `log`.
///
/// # Errors
/// Only when results cannot be written or the client cannot be placed on its cores; failures
/// of servers become rows with their status.
pub fn run(opts: &SuiteOptions, mut log: impl FnMut(&str)) -> io::Result<SuiteRun> {
    let machine = Machine::describe();
    opts.placement.pin_client().map_err(io::Error::from)?;
    let run_id = meta::new_run_id();
    let server_cores = opts.placement.server_cores(&placement::allowed_cores());
    let servers: Vec<ServerDef> = servers()
        .into_iter()
        .filter(|s| {
            opts.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == s.name))
        })
        .filter_map(|s| {
            let name = s.name;
            let placed = on_cores(s, server_cores);
            if placed.is_none() {
                log(&format!(
                    "{name}: left out (a worker per core, and the servers have one core)"
                ));
            }
            placed
        })
        .collect();
    let builds: Vec<String> = servers
        .iter()
        .map(|s| server::build_of(&s.launch, &opts.places))
        .collect();
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut rows = Vec::new();
    if opts.preset.cells.iter().any(|c| c.scale.is_some()) {
        log(&format!(
            "descriptor limit: {} (hard; client and servers raise their soft limit to it)",
            scale::fd_hard_limit()
        ));
    }
    // Scale preset: a server that could not hold a level of a sweep is not run at its higher
    // levels of that sweep (the level and why, by server and sweep).
    let mut stopped: HashMap<(&str, scale::Sweep), (usize, String)> = HashMap::new();
    for cell in &opts.preset.cells {
        log(&format!("== {} ({} repetitions)", cell.title, opts.reps));
        if let Some(why) = cell.scale.and_then(scale::preflight) {
            log(&format!("warning: not run here: {why}"));
        }
        let mut given_up: Vec<&str> = Vec::new();
        for rep in 1..=opts.reps {
            // A new random order every repetition: no server always runs first, or right
            // after the most expensive one.
            for i in stats::shuffled_order(servers.len(), &mut rng) {
                let def = &servers[i];
                if given_up.contains(&def.name) {
                    continue;
                }
                let labels = Labels {
                    table: cell.table.clone(),
                    server: def.name.to_string(),
                    model_class: def.model_class.to_string(),
                    workload: cell.workload.to_string(),
                    repetition: rep,
                    run_id: run_id.clone(),
                };
                let earlier = cell.scale.and_then(|step| {
                    let (level, why) = stopped.get(&(def.name, step.sweep))?;
                    (step.level > *level).then(|| why.clone())
                });
                let mut row = match &earlier {
                    Some(why) => unmeasured(
                        cell,
                        opts,
                        &labels,
                        &machine,
                        Status::Limit,
                        &format!("not run: {why}"),
                    ),
                    None => measure(def, cell, opts, &labels, &machine),
                };
                row.seed = Na(Some(opts.seed));
                row.cpus = opts.placement.label();
                row.server_build = builds[i].clone();
                if !row.status.measured() && row.server_cpu_s.0.is_none() {
                    given_up.push(def.name);
                }
                if let (Some(step), Status::Limit, None) = (cell.scale, row.status, &earlier) {
                    let first = row.notes.split("; ").next().unwrap_or_default();
                    let why = first.strip_prefix(scale::NOT_HELD).unwrap_or(first);
                    let why = format!("could not hold {} ({why})", scale::thousands(step.level));
                    stopped.insert((def.name, step.sweep), (step.level, why));
                }
                log(&format!(
                    "{:<10} rep {rep}/{}: {}",
                    def.name,
                    opts.reps,
                    describe(&row)
                ));
                rows.push(row);
            }
        }
    }
    let host = machine
        .host
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let date = meta::now_iso8601()[..10].to_string();
    let csv = output::append_csv_or_beside(
        &opts.out_dir.join(format!("{date}-{host}.csv")),
        &rows,
        &run_id,
    )?;
    let csv_name = csv
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let written = report::render(opts, &machine, &rows, &csv_name);
    let markdown = written.write(&opts.out_dir)?;
    Ok(SuiteRun {
        rows,
        csv,
        markdown,
    })
}

/// A measured row in one line, for the log.
fn describe(row: &ResultRow) -> String {
    if !row.status.measured() || row.server_cpu_s.0.is_none() {
        return format!("{:?}: {}", row.status, row.notes);
    }
    let mut line = format!(
        "{:.3} s, {:.0} req/s, {} errors, {:.1} us server CPU/req",
        row.elapsed_s,
        row.rps,
        errors(row),
        row.server_cpu_s.0.unwrap_or(f64::NAN) * 1e6
            / row.server_requests.0.unwrap_or(0).max(1) as f64,
    );
    if let Some(b) = row.mem_per_conn_b.0 {
        line.push_str(&format!(", {b:.0} B/conn"));
    }
    if row.client_bound {
        line.push_str(", client-bound");
    }
    match row.status {
        Status::Partial => line.push_str(" (partial)"),
        Status::Limit => line.push_str(&format!(" (limit: {})", row.notes)),
        _ => {}
    }
    line
}

fn errors(row: &ResultRow) -> u64 {
    row.err_connect
        + row.err_reset
        + row.err_timeout
        + row.err_status
        + row.err_malformed
        + row.err_closed
}

/// The load a cell sends (to a placeholder target until the server is up).
fn load_spec(cell: &CellSpec, opts: &SuiteOptions) -> LoadSpec {
    let requests = cell.requests * opts.scale;
    let duration = cell
        .duration
        .map(|d| opts.duration.unwrap_or(d * opts.scale as u32));
    LoadSpec {
        target: Target::at(([127, 0, 0, 1], 1).into()),
        requests: if duration.is_some() {
            None
        } else {
            Some(requests)
        },
        duration,
        concurrency: cell.concurrency,
        threads: 1,
        keep_alive: cell.keep_alive,
        rate: cell.rate,
        raw: cell.protocol == Protocol::Raw,
        // In a duration cell, a request a starved server never answers counts as a timeout
        // (half the cell) instead of being abandoned unseen at the end.
        timeout: duration.map_or(Duration::from_secs(10), |d| d / 2),
        busy_poll: false,
        spin: DEFAULT_SPIN,
        source_addrs: cell.source_addrs,
        pipeline: cell.pipeline,
        request: crate::request::RequestSpec::hello(),
    }
}

/// The row of a server not measured in a cell, with its status and why.
fn unmeasured(
    cell: &CellSpec,
    opts: &SuiteOptions,
    labels: &Labels,
    machine: &Machine,
    status: Status,
    reason: &str,
) -> ResultRow {
    let empty = LoadResult {
        stats: crate::engine::ThreadStats::new(),
        elapsed: Duration::ZERO,
        client_cpu: Duration::ZERO,
        protocol_mismatch: false,
        partial: None,
        timeline: Vec::new(),
    };
    let mut row = load::row(&load_spec(cell, opts), &empty, labels, machine);
    row.status = status;
    row.client_bound = false;
    row.notes = if reason.starts_with("not run") {
        reason.to_string()
    } else {
        format!("not measured: {reason}")
    };
    if let Some(step) = cell.scale.filter(|s| s.sweep == scale::Sweep::Idle) {
        row.idle_conns = Na(Some(step.level as u64));
    }
    row
}

/// Measures one server on one cell, once. A row that is neither measured nor has server
/// costs (it could not start or failed the check) is not tried again in this cell.
fn measure(
    def: &ServerDef,
    cell: &CellSpec,
    opts: &SuiteOptions,
    labels: &Labels,
    machine: &Machine,
) -> ResultRow {
    let spec = load_spec(cell, opts);
    let not_measured =
        |status: Status, reason: String| unmeasured(cell, opts, labels, machine, status, &reason);
    if let Some(why) = cell.scale.and_then(scale::preflight) {
        return not_measured(Status::Unavailable, why);
    }
    let extra = &opts.server_args;
    let running = match server::start(
        &def.launch,
        extra,
        cell.scale.map_or(ConnLimits::default(), Step::limits),
        cell.workload,
        cell.protocol,
        &opts.places,
        &opts.placement,
    ) {
        Ok(r) => r,
        Err(e) if e.unavailable => return not_measured(Status::Unavailable, e.message),
        Err(e) => return not_measured(Status::Failed, e.message),
    };
    let guard = cell
        .scale
        .map(|_| running.guard_memory(scale::memory_floor_kb()));
    let spec = LoadSpec {
        target: Target::at(running.addr),
        ..spec
    };

    // The check: one request must get the right answer before anything is measured.
    let check = LoadSpec {
        requests: Some(1),
        concurrency: 1,
        keep_alive: false,
        rate: None,
        source_addrs: 0,
        pipeline: 1,
        timeout: Duration::from_secs(5),
        ..spec.clone()
    };
    let checked = load::run(&check, EngineKind::Epoll, load::Show::default());
    if !matches!(&checked, Ok(r) if r.stats.ok == 1) {
        let exit = running.stop();
        let why = match &checked {
            Ok(r) => format!("{:?}", r.stats.errors).replace("ErrorCounts ", ""),
            Err(e) => e.to_string(),
        };
        return not_measured(
            Status::Failed,
            format!(
                "failed the check (one request, expecting HelloWorld): {why}; {}",
                exit.describe()
            ),
        );
    }
    // Warm-up, not measured: a tenth of the requests (duration cells: ten per connection;
    // scale cells: a fifth of a second on at most ten connections, so that the warm-up does
    // not open the level's connections before the baseline of memory is read).
    let warm = match cell.scale {
        Some(_) => LoadSpec {
            requests: None,
            duration: Some(Duration::from_millis(200)),
            concurrency: spec.concurrency.min(scale::LIGHT_CONNS),
            rate: None,
            ..spec.clone()
        },
        None => LoadSpec {
            requests: Some(
                if spec.duration.is_some() {
                    10 * cell.concurrency as u64
                } else {
                    spec.requests.unwrap_or(0) / 10
                }
                .max(cell.concurrency as u64),
            ),
            duration: None,
            ..spec.clone()
        },
    };
    let _ = load::run(&warm, EngineKind::Epoll, load::Show::default());

    // Scale cells: the tree's memory before the cell's connections open, then the idle
    // connections (idle sweep), held until the end of the window.
    let pss_base = cell.scale.and_then(|_| cost::pss_tree_kb(running.pid()));
    let idle_step = cell.scale.filter(|s| s.sweep == scale::Sweep::Idle);
    let held = idle_step.map(|step| {
        let deadline = Duration::from_secs(10) + Duration::from_millis(step.level as u64);
        let held = scale::hold_idle(running.addr, step.level, deadline, scale::IDLE_STALL);
        // Let the server settle (a thread or process per connection goes to sleep).
        std::thread::sleep(Duration::from_millis(300));
        held.unwrap_or_default()
    });
    let pss_idle = held.as_ref().and_then(|_| cost::pss_tree_kb(running.pid()));

    // The measured window: from just before the first measured request to just after the
    // last answer. Nothing the server did before or after it is in the row's costs.
    let attack = hostile::start(cell.adversary, running.addr);
    let steal_before = meta::cpu_jiffies();
    let measured = server::Window::open(running.pid(), || running.counters());
    // The load's connections are all open in the middle of the window: their memory is
    // read then (concurrency sweeps).
    let pss_mid = cell
        .scale
        .filter(|s| s.sweep != scale::Sweep::Idle)
        .and(spec.duration)
        .map(|d| {
            let pid = running.pid();
            std::thread::spawn(move || {
                std::thread::sleep(d.mul_f64(0.6));
                cost::pss_tree_kb(pid)
            })
        });
    let result = load::run(&spec, EngineKind::Epoll, load::Show::default());
    let (window, peak) = measured.close(|| running.counters());
    let steal_after = meta::cpu_jiffies();
    let actions = attack.stop();
    let pss_loaded = match pss_mid {
        Some(reader) => reader.join().ok().flatten(),
        None => pss_idle,
    };
    // The idle connections go before the check: a server that serves one connection at a
    // time, or refuses past its descriptors, would not answer it beside them.
    let idle_held = held.as_ref().map(|h| h.streams.len());
    let idle_note = held
        .as_ref()
        .zip(idle_step)
        .map(|(h, step)| h.describe(step.level));
    drop(held);
    // Still standing? One more request must be answered after the load (and the attack).
    let answered_after = matches!(load::run(&check, EngineKind::Epoll, load::Show::default()), Ok(r) if r.stats.ok == 1);
    let out_of_memory = guard.is_some_and(server::MemoryGuard::finish);
    let exit = running.stop();
    let result = match result {
        Ok(r) => r,
        Err(e) => return not_measured(Status::Failed, format!("load engine failed: {e}")),
    };
    let mut row = load::row(&spec, &result, labels, machine);
    let mut notes: Vec<String> = row
        .notes
        .split("; ")
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    if !extra.is_empty() && matches!(def.launch, Launch::Binary(..)) {
        notes.push(format!("server args: {}", extra.join(" ")));
    }
    // The hostile clients' requests that the server answered count as requests it served.
    let adversary_requests = match cell.adversary {
        Adversary::None => 0,
        Adversary::Slowloris(k) => {
            notes.push(format!(
                "adversary: {actions} of {k} slowloris connections opened and held"
            ));
            0
        }
        other => {
            notes.push(format!("adversary: {} ({actions} sent)", other.label()));
            actions
        }
    };
    if !answered_after {
        row.status = Status::Failed;
        notes.push("did not answer a request after the measurement".into());
    }
    let died = if out_of_memory {
        Some(format!(
            "killed by the suite: the machine's available memory fell below {} MiB",
            scale::memory_floor_kb() / 1024
        ))
    } else if exit.died_early {
        Some(format!(
            "server died during the measurement ({}){}",
            exit.describe(),
            stderr_note(&exit)
        ))
    } else {
        None
    };
    if let Some(how) = died.as_ref().filter(|_| cell.scale.is_none()) {
        row.partial = true;
        row.status = Status::Partial;
        notes.insert(0, how.clone());
    } else if !exit.clean() && !exit.died_early {
        row.status = Status::Failed;
        notes.push(format!(
            "unclean stop: {}{}{}",
            exit.describe(),
            if exit.killed {
                " (killed after 10 s)"
            } else {
                ""
            },
            stderr_note(&exit)
        ));
    }
    if exit.left_behind {
        notes.push("processes of its group outlived it (killed)".into());
    }
    row.steal_pct = Na(meta::steal_pct(steal_before, steal_after));
    if row.steal_pct.0.is_some_and(|p| p > meta::HIGH_STEAL_PCT) {
        notes.push(format!(
            "high steal: {:.1}% of the machine's CPU went to other guests",
            row.steal_pct.0.unwrap_or(0.0)
        ));
    }
    row.cost_source = window.source.to_string();
    row.server_cpu_s = Na(Some(window.cpu_s));
    row.server_cpu_user_s = Na(window.user_s);
    row.server_cpu_sys_s = Na(window.sys_s);
    row.server_ctx_switches = Na(Some(window.switches));
    row.server_ctx_voluntary = Na(Some(window.voluntary));
    row.server_ctx_involuntary = Na(Some(window.involuntary));
    row.server_peak_rss_kb = Na(Some(peak.rss_kb));
    row.server_threads = Na(Some(peak.threads));
    row.server_processes = Na(Some(peak.processes));
    row.server_requests = Na(Some(result.stats.ok + adversary_requests));
    row.server_life_cpu_s = Na(Some(exit.life_cpu_s));
    row.server_ok_after = Na(Some(answered_after && exit.clean()));
    if let Some(step) = cell.scale {
        let conns = idle_held.unwrap_or(step.level) as u64;
        row.idle_conns = Na(idle_step.map(|s| s.level as u64));
        row.idle_held = Na(idle_held.map(|h| h as u64));
        row.server_pss_base_kb = Na(pss_base);
        row.server_pss_kb = Na(pss_loaded);
        row.mem_per_conn_b = Na(pss_base
            .zip(pss_loaded)
            .and_then(|(base, loaded)| cost::mem_per_conn_b(base, loaded, conns)));
        if let Some(note) = idle_note {
            notes.insert(0, note);
        }
        // A level the server could not hold is a finding, not a failure of the run: the
        // row says how far it got (first note), and its higher levels are not run.
        if let Err(why) = scale::verdict(step, &row, idle_held, died.as_deref()) {
            row.status = Status::Limit;
            row.partial = false;
            notes.insert(0, format!("{}{why}", scale::NOT_HELD));
        }
    }
    row.notes = notes.join("; ");
    row
}

fn stderr_note(exit: &server::Exit) -> String {
    if exit.stderr_tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", exit.stderr_tail)
    }
}

/// The report of a finished run, written again from its rows (`bench-client report`): the
/// options the run had are read back from the rows (seed, placement, repetitions, scale,
/// the scale preset's levels).
///
/// # Errors
/// An unknown preset, or no rows.
pub fn report_from_rows(
    preset_name: &str,
    rows: &[ResultRow],
    csv_name: &str,
) -> Result<report::Written, String> {
    let mut preset = preset(preset_name)?;
    let first = rows.first().ok_or("the CSV has no rows")?;
    if preset.name == "scale" {
        // The levels the run had (`--levels`), not today's defaults.
        preset.cells = scale::cells_of_rows(rows);
    }
    let reps = rows.iter().map(|r| r.repetition).max().unwrap_or(1);
    let scale = preset
        .cells
        .iter()
        .find_map(|c| {
            let row = rows.iter().find(|r| r.table == c.table)?;
            Some(row.requests.0? / c.requests.max(1))
        })
        .unwrap_or(1)
        .max(1);
    let opts = SuiteOptions {
        preset,
        scale,
        reps,
        only: None,
        out_dir: PathBuf::new(),
        places: Locations::beside_executable(),
        server_args: Vec::new(),
        placement: Placement::from_label(&first.cpus).unwrap_or(Placement::Shared),
        seed: first.seed.0.unwrap_or(0),
        duration: None,
    };
    let machine = Machine {
        host: first.host.clone(),
        cpu_model: first.cpu_model.clone(),
        cores: first.cores,
        kernel: first.kernel.clone(),
        git_rev: first.git_rev.clone(),
    };
    Ok(report::render(&opts, &machine, rows, csv_name))
}

/// The preset called `name`.
///
/// # Errors
/// A message listing the known presets.
pub fn preset(name: &str) -> Result<Preset, String> {
    presets()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = presets().iter().map(|p| p.name).collect();
            format!("unknown preset '{name}' (known: {})", names.join(", "))
        })
}

/// Checks `--servers` names against the known servers.
///
/// # Errors
/// A message naming the unknown one and listing the known ones.
pub fn check_server_names(names: &[String]) -> Result<(), String> {
    let known: Vec<&str> = servers().iter().map(|s| s.name).collect();
    match names.iter().find(|n| !known.contains(&n.as_str())) {
        Some(bad) => Err(format!(
            "unknown server '{bad}' (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// The default results directory for a preset: `results/<preset>` under the repository when
/// it is found, else under the current directory.
pub fn default_out_dir(places: &Locations, preset: &str) -> PathBuf {
    places
        .repo_root
        .clone()
        .unwrap_or_else(|| Path::new(".").to_path_buf())
        .join("results")
        .join(preset)
}
