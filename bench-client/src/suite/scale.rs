//! The `scale` preset (issue 13): where each model stops scaling, and what a connection costs.
//!
//! Four sweeps, each a cell per level, every server measured at every level it can hold:
//!
//! - **keep-alive**: closed-loop load at 1, 10, 100, 1,000 and 10,000 kept-alive connections;
//! - **pipelined**: the same from 100 connections on, each writing [`PIPELINE_DEPTH`] requests
//!   at a time (TechEmpower's plaintext test: 16 deep at 256 to 16,384 connections);
//! - **per-request**: the same concurrencies with a new connection per request, spread over
//!   [`SOURCE_ADDRS`] loopback source addresses so that the client's ports last (levels the
//!   machine's ports cannot hold are not run, and their rows say so);
//! - **idle**: 1,000 and 10,000 idle keep-alive connections (100,000 where the descriptor
//!   limit allows), each sent one request and then left idle, held beside a light open-loop
//!   load ([`LIGHT_CONNS`] connections at [`LIGHT_RATE`] req/s) whose server CPU per request
//!   is the row's.
//!
//! Each cell also reads the memory of the server's whole process tree: its proportional set
//! size (PSS) after the warm-up, before the cell's connections open, and again with them open
//! (the idle connections once idle; the load's in the middle of its window), and divides the
//! growth among the connections ([`super::cost::mem_per_conn_b`]).
//!
//! A server that cannot hold a level (refusals, its cap, timeouts, descriptors, memory) gets a
//! row with status `limit` and a note saying how far it got; its higher levels in that sweep
//! are not run (their rows say so), and the sweep goes on with the other servers. Every wait
//! is bounded: the load by its duration, the idle connections by a deadline and a stall
//! timer, the server's stop by [`super::server::STOP_TIMEOUT`], after which its whole process
//! group is killed; a guard kills it too should the machine's available memory run low.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serverkit::{Protocol, Workload};
use socket2::{Domain, Socket, Type};

use super::hostile::Adversary;
use super::server::ConnLimits;
use super::CellSpec;
use crate::output::ResultRow;
use crate::response::{Progress, ResponseReader};

/// Concurrency levels of the keep-alive and per-request sweeps.
pub const LOAD_LEVELS: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Idle connections of the idle sweep.
pub const IDLE_LEVELS: [usize; 2] = [1_000, 10_000];
/// A further idle level, run where the descriptor limit allows it.
pub const MORE_IDLE: usize = 100_000;
/// Measured window of a cell (before `--duration`); levels of [`LONG_FROM`] connections and
/// more get [`LONG_WINDOW`], so that opening them all (a SYN retried after 1 s when the
/// accept queue overflows) does not fill the window.
pub const WINDOW: Duration = Duration::from_millis(1500);
/// The window of the largest levels.
pub const LONG_WINDOW: Duration = Duration::from_secs(3);
/// From this level on, cells get [`LONG_WINDOW`].
pub const LONG_FROM: usize = 10_000;
/// The light load beside the idle connections: connections...
pub const LIGHT_CONNS: usize = 10;
/// ... and requests per second (open loop).
pub const LIGHT_RATE: f64 = 1000.0;
/// Loopback source addresses the per-request sweep and the idle connections spread over.
pub const SOURCE_ADDRS: u8 = 16;
/// The servers' idle timeout in this preset: longer than opening 10,000 idle connections.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The servers' connection cap is the level plus this.
pub const CAP_MARGIN: usize = 1024;
/// Requests written at a time on each connection of the pipelined sweep.
pub const PIPELINE_DEPTH: usize = 16;
/// The pipelined sweep's lowest level.
pub const PIPELINE_FROM: usize = 100;
/// Descriptors the client needs beyond a cell's connections (its own files, the checks).
pub const FD_MARGIN: u64 = 64;
/// Idle connections being opened at once (each: connect, one request, its answer).
pub const IDLE_IN_FLIGHT: usize = 256;
/// Opening the idle connections stops when none has completed for this long.
pub const IDLE_STALL: Duration = Duration::from_secs(3);
/// The memory guard kills a server when the machine's available memory falls under the
/// larger of this and a twentieth of its total.
pub const MEMORY_FLOOR_KB: u64 = 512 * 1024;

/// How the first note of a row that did not hold its level begins.
pub const NOT_HELD: &str = "could not hold this level: ";

/// One of the four sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sweep {
    /// Closed loop on kept-alive connections.
    KeepAlive,
    /// The same, [`PIPELINE_DEPTH`] requests written at a time on each connection.
    Pipelined,
    /// Closed loop, a new connection per request.
    PerRequest,
    /// Idle keep-alive connections beside a light load.
    Idle,
}

impl Sweep {
    /// The four, in the order they run.
    pub const ALL: [Sweep; 4] = [
        Sweep::KeepAlive,
        Sweep::Pipelined,
        Sweep::PerRequest,
        Sweep::Idle,
    ];

    /// Short name: the table ids are `scale-<id>-<level>`.
    pub fn id(self) -> &'static str {
        match self {
            Sweep::KeepAlive => "keep-alive",
            Sweep::Pipelined => "pipelined",
            Sweep::PerRequest => "per-request",
            Sweep::Idle => "idle",
        }
    }

    /// Heading in the report.
    pub fn title(self) -> &'static str {
        match self {
            Sweep::KeepAlive => "Concurrency sweep, keep-alive",
            Sweep::Pipelined => "Concurrency sweep, keep-alive, 16 requests pipelined",
            Sweep::PerRequest => "Concurrency sweep, a new connection per request",
            Sweep::Idle => "Idle connections beside a light load",
        }
    }

    /// The sweep a row belongs to (scale rows only).
    pub fn of_row(row: &ResultRow) -> Option<Sweep> {
        let rest = row.table.strip_prefix("scale-")?;
        Sweep::ALL.into_iter().find(|s| {
            rest.strip_prefix(s.id())
                .is_some_and(|l| l.starts_with('-'))
        })
    }
}

/// A cell's place in the preset: its sweep and level (connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Which sweep.
    pub sweep: Sweep,
    /// Concurrency (keep-alive, pipelined, per-request) or idle connections (idle).
    pub level: usize,
}

impl Step {
    /// The connections the cell holds open at once: the level, plus the light load's.
    pub fn connections(self) -> usize {
        match self.sweep {
            Sweep::Idle => self.level + LIGHT_CONNS,
            _ => self.level,
        }
    }

    /// The servers' limits for this cell: a cap above it, an idle timeout longer than it.
    pub fn limits(self) -> ConnLimits {
        ConnLimits {
            max_conns: Some(self.connections() + CAP_MARGIN),
            idle_timeout: Some(IDLE_TIMEOUT),
        }
    }

    /// The level of a row (scale rows only): its idle connections or its concurrency.
    pub fn level_of_row(row: &ResultRow) -> Option<usize> {
        match Sweep::of_row(row)? {
            Sweep::Idle => row.idle_conns.0.map(|n| n as usize),
            _ => Some(row.concurrency),
        }
    }
}

/// The preset's cells: the concurrency sweeps at `load_levels` (the pipelined one from
/// [`PIPELINE_FROM`] connections), the idle sweep at `idle_levels`.
pub fn cells(load_levels: &[usize], idle_levels: &[usize]) -> Vec<CellSpec> {
    let mut cells = Vec::new();
    for sweep in Sweep::ALL {
        let levels = match sweep {
            Sweep::Idle => idle_levels,
            _ => load_levels,
        };
        let levels = levels
            .iter()
            .filter(|&&l| sweep != Sweep::Pipelined || l >= PIPELINE_FROM);
        for &level in levels {
            let step = Step { sweep, level };
            let (keep_alive, concurrency, rate, source_addrs, title) = match sweep {
                Sweep::KeepAlive => (
                    true,
                    level,
                    None,
                    0,
                    format!("keep-alive, {} connections", thousands(level)),
                ),
                Sweep::Pipelined => (
                    true,
                    level,
                    None,
                    0,
                    format!(
                        "keep-alive, {} connections, {PIPELINE_DEPTH} requests pipelined",
                        thousands(level)
                    ),
                ),
                Sweep::PerRequest => (
                    false,
                    level,
                    None,
                    SOURCE_ADDRS,
                    format!(
                        "a new connection per request, {} at a time",
                        thousands(level)
                    ),
                ),
                Sweep::Idle => (
                    true,
                    LIGHT_CONNS,
                    Some(LIGHT_RATE),
                    0,
                    format!(
                        "{} idle connections beside {LIGHT_CONNS} at {LIGHT_RATE:.0} req/s",
                        thousands(level)
                    ),
                ),
            };
            cells.push(CellSpec {
                table: format!("scale-{}-{level}", sweep.id()),
                title,
                workload: Workload::Hello,
                protocol: Protocol::Http,
                keep_alive,
                requests: 0,
                concurrency,
                duration: Some(if level >= LONG_FROM {
                    LONG_WINDOW
                } else {
                    WINDOW
                }),
                adversary: Adversary::None,
                rate,
                source_addrs,
                scale: Some(step),
                pipeline: if sweep == Sweep::Pipelined {
                    PIPELINE_DEPTH
                } else {
                    1
                },
            });
        }
    }
    cells
}

/// The default cells: [`LOAD_LEVELS`], [`IDLE_LEVELS`], and [`MORE_IDLE`] where the
/// descriptor limit allows it.
pub fn default_cells() -> Vec<CellSpec> {
    let mut idle = IDLE_LEVELS.to_vec();
    let more = Step {
        sweep: Sweep::Idle,
        level: MORE_IDLE,
    };
    if fd_shortfall(more, fd_hard_limit()).is_none() {
        idle.push(MORE_IDLE);
    }
    cells(&LOAD_LEVELS, &idle)
}

/// The cells of a finished run, from its rows (the levels it was run with).
pub fn cells_of_rows(rows: &[ResultRow]) -> Vec<CellSpec> {
    let mut load = Vec::new();
    let mut idle = Vec::new();
    for row in rows {
        let (Some(sweep), Some(level)) = (Sweep::of_row(row), Step::level_of_row(row)) else {
            continue;
        };
        let levels = if sweep == Sweep::Idle {
            &mut idle
        } else {
            &mut load
        };
        if !levels.contains(&level) {
            levels.push(level);
        }
    }
    load.sort_unstable();
    idle.sort_unstable();
    cells(&load, &idle)
}

/// `10,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The hard `RLIMIT_NOFILE` of this process (what the client and the servers it starts may
/// raise their soft limit to).
pub fn fd_hard_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard)
}

/// Why a step cannot run with `hard` descriptors: the client holds every connection of the
/// cell, and so does the server.
pub fn fd_shortfall(step: Step, hard: u64) -> Option<String> {
    let need = step.connections() as u64 + FD_MARGIN;
    (hard < need).then(|| {
        format!(
            "the descriptor limit (hard {hard}) is below the {need} this level needs; \
             raise it (ulimit -Hn, or nofile in /etc/security/limits.conf) and run again"
        )
    })
}

/// Connections a client can have open or in TIME_WAIT at once towards one server port: the
/// ephemeral range of each source address, less the TIME_WAIT sockets the kernel may keep
/// (`tcp_max_tw_buckets`, machine-wide).
pub fn port_capacity(range: (u64, u64), source_addrs: u8, tw_buckets: u64) -> u64 {
    let per_address = range.1.saturating_sub(range.0) + 1;
    (per_address * u64::from(source_addrs.max(1))).saturating_sub(tw_buckets)
}

fn read_sysctl(path: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().map(|v| v.parse().ok()).collect()
}

/// Why a step cannot run on this machine (descriptors; ports for the per-request sweep), or
/// `None` when it can.
pub fn preflight(step: Step) -> Option<String> {
    if let Some(why) = fd_shortfall(step, fd_hard_limit()) {
        return Some(why);
    }
    if step.sweep == Sweep::PerRequest {
        let range = read_sysctl("/proc/sys/net/ipv4/ip_local_port_range")
            .filter(|v| v.len() == 2)
            .map_or((32768, 60999), |v| (v[0], v[1]));
        let tw = read_sysctl("/proc/sys/net/ipv4/tcp_max_tw_buckets")
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        let capacity = port_capacity(range, SOURCE_ADDRS, tw);
        if (step.level as u64) > capacity {
            return Some(format!(
                "the machine's ports allow {capacity} connections per request at once \
                 ({} source addresses x ports {}-{}, less {tw} in TIME_WAIT)",
                SOURCE_ADDRS, range.0, range.1
            ));
        }
    }
    None
}

/// The memory guard's floor for this machine, KiB.
pub fn memory_floor_kb() -> u64 {
    crate::meta::meminfo_kb("MemTotal")
        .map_or(MEMORY_FLOOR_KB, |total| (total / 20).max(MEMORY_FLOOR_KB))
}

/// Whether a server held a step, from what the cell saw; `Err` says why not. Tolerance: a
/// hundredth of the level's connections may fail (a SYN lost and not retried in time), and
/// one at any level (one stall of a busy machine should not end a sweep; a starved connection
/// fails every half window, so starving even two of them is seen), no more; a connection
/// failing fails a whole batch in the pipelined sweep. A hundredth of the idle connections
/// may go unheld. A cell with nothing answered, or a server that died, did not hold.
pub fn verdict(
    step: Step,
    row: &ResultRow,
    idle_held: Option<usize>,
    died: Option<&str>,
) -> Result<(), String> {
    if let Some(how) = died {
        return Err(how.to_string());
    }
    let tolerance = (step.level / 100) as u64;
    if let Some(held) = idle_held {
        let missing = step.level.saturating_sub(held) as u64;
        if missing > tolerance {
            return Err(format!(
                "held {} of {} idle connections",
                thousands(held),
                thousands(step.level)
            ));
        }
    }
    let errors = super::errors(row);
    if row.ok == 0 {
        return Err(format!("no request answered ({})", error_kinds(row)));
    }
    let batch = if step.sweep == Sweep::Pipelined {
        PIPELINE_DEPTH as u64
    } else {
        1
    };
    let tolerance = tolerance.max(1) * batch;
    if errors > tolerance {
        return Err(format!(
            "{errors} requests failed ({}), more than the {tolerance} tolerated at this level",
            error_kinds(row)
        ));
    }
    Ok(())
}

fn error_kinds(row: &ResultRow) -> String {
    let kinds = [
        ("refused or unreachable", row.err_connect),
        ("reset", row.err_reset),
        ("timed out", row.err_timeout),
        ("closed", row.err_closed),
        ("bad status", row.err_status),
        ("malformed", row.err_malformed),
    ];
    let parts: Vec<String> = kinds
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        "no errors".into()
    } else {
        parts.join(", ")
    }
}

/// Idle connections held open: each got one answer and stays connected, idle.
#[derive(Default)]
pub struct Held {
    /// The connections (closing them is dropping them).
    pub streams: Vec<TcpStream>,
    /// Connections refused or that could not be made.
    pub refused: usize,
    /// Connections closed or reset by the server, or answered with something else than a
    /// kept-alive 200.
    pub closed: usize,
    /// Connections still waiting for their answer when opening stopped (dropped).
    pub unanswered: usize,
    /// Opening stopped because nothing completed for [`IDLE_STALL`] (rather than because all
    /// were done or the deadline passed).
    pub stalled: bool,
}

impl Held {
    /// What happened to those not held, in words.
    pub fn describe(&self, asked: usize) -> String {
        let mut parts = vec![format!(
            "{} of {} idle connections held",
            thousands(self.streams.len()),
            thousands(asked)
        )];
        if self.refused > 0 {
            parts.push(format!("{} refused", self.refused));
        }
        if self.closed > 0 {
            parts.push(format!("{} closed by the server", self.closed));
        }
        if self.unanswered > 0 {
            parts.push(format!(
                "{} unanswered {}",
                self.unanswered,
                if self.stalled {
                    format!("after {} s without progress", IDLE_STALL.as_secs())
                } else {
                    "at the deadline".into()
                }
            ));
        }
        parts.join(", ")
    }
}

struct Opening {
    stream: TcpStream,
    reader: ResponseReader,
    connected: bool,
}

/// Opens `n` keep-alive connections to `addr`, [`IDLE_IN_FLIGHT`] at a time, each sending one
/// request and reading its answer, and keeps those answered. Stops at `deadline`, when
/// nothing has completed for `stall` (a server serving one connection at a time, or a pool
/// whose workers are all held, never answers the rest), or at SIGINT.
///
/// # Errors
/// Only if epoll cannot be set up; connection failures are counted.
pub fn hold_idle(
    addr: SocketAddr,
    n: usize,
    deadline: Duration,
    stall: Duration,
) -> io::Result<Held> {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n";
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mut held = Held::default();
    let mut opening: HashMap<u64, Opening> = HashMap::new();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut scratch = [0u8; 4096];
    let start = Instant::now();
    let mut last_progress = start;
    let mut started = 0;
    loop {
        while opening.len() < IDLE_IN_FLIGHT && started < n {
            match connect_from(addr, started) {
                Ok(stream) => {
                    let interest = EpollFlags::EPOLLOUT | EpollFlags::EPOLLIN;
                    epoll.add(&stream, EpollEvent::new(interest, started as u64))?;
                    opening.insert(
                        started as u64,
                        Opening {
                            stream,
                            reader: ResponseReader::expecting(
                                false,
                                crate::request::RequestSpec::hello().expect,
                                false,
                            ),
                            connected: false,
                        },
                    );
                }
                Err(_) => held.refused += 1,
            }
            started += 1;
        }
        let now = Instant::now();
        if opening.is_empty() && started >= n {
            break;
        }
        if now - start >= deadline || now - last_progress >= stall || crate::load::interrupted() {
            held.stalled = now - last_progress >= stall;
            break;
        }
        let ready = match epoll.wait(&mut events, EpollTimeout::from(50u16)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for event in &events[..ready] {
            let key = event.data();
            let Some(conn) = opening.get_mut(&key) else {
                continue;
            };
            let was_connected = conn.connected;
            let Some(outcome) = advance(conn, event.events(), REQUEST, &mut scratch) else {
                if conn.connected && !was_connected {
                    // The request is out: only its answer is awaited now.
                    epoll.modify(&conn.stream, &mut EpollEvent::new(EpollFlags::EPOLLIN, key))?;
                }
                continue;
            };
            let conn = opening.remove(&key).expect("present");
            let _ = epoll.delete(&conn.stream);
            last_progress = Instant::now();
            match outcome {
                Outcome::Held => held.streams.push(conn.stream),
                Outcome::Refused => held.refused += 1,
                Outcome::Closed => held.closed += 1,
            }
        }
    }
    held.unanswered = opening.len();
    Ok(held)
}

enum Outcome {
    Held,
    Refused,
    Closed,
}

/// One event on a connection being opened: `None` while it is still on its way.
fn advance(
    conn: &mut Opening,
    flags: EpollFlags,
    request: &[u8],
    scratch: &mut [u8],
) -> Option<Outcome> {
    let broken = flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
    if !conn.connected {
        if broken {
            return Some(Outcome::Refused);
        }
        if !flags.contains(EpollFlags::EPOLLOUT) {
            return None;
        }
        conn.connected = true;
        // The request is smaller than any socket buffer: one write sends it.
        return match conn.stream.write(request) {
            Ok(n) if n == request.len() => None,
            _ => Some(Outcome::Closed),
        };
    }
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return Some(Outcome::Closed),
            Ok(n) => match conn.reader.feed(&scratch[..n]) {
                Progress::More => {}
                Progress::Done {
                    keep_alive: true, ..
                } => return Some(Outcome::Held),
                _ => return Some(Outcome::Closed),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return broken.then_some(Outcome::Closed);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(Outcome::Closed),
        }
    }
}

/// A non-blocking connect from source address 127.0.0.(k mod [`SOURCE_ADDRS`] + 1), so that
/// 100,000 connections do not run out of one address's ports.
fn connect_from(addr: SocketAddr, k: usize) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    if addr.ip().is_loopback() && addr.is_ipv4() {
        let last = (k % usize::from(SOURCE_ADDRS)) as u8 + 1;
        let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0);
        socket.bind(&source.into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_default_cells_sweep_every_level_in_order() {
        let cells = cells(&LOAD_LEVELS, &IDLE_LEVELS);
        let tables: Vec<&str> = cells.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(
            tables,
            [
                "scale-keep-alive-1",
                "scale-keep-alive-10",
                "scale-keep-alive-100",
                "scale-keep-alive-1000",
                "scale-keep-alive-10000",
                "scale-pipelined-100",
                "scale-pipelined-1000",
                "scale-pipelined-10000",
                "scale-per-request-1",
                "scale-per-request-10",
                "scale-per-request-100",
                "scale-per-request-1000",
                "scale-per-request-10000",
                "scale-idle-1000",
                "scale-idle-10000",
            ]
        );
        let idle = &cells[14];
        assert_eq!(
            (cells[6].pipeline, cells[6].keep_alive),
            (PIPELINE_DEPTH, true)
        );
        assert!(cells
            .iter()
            .filter(|c| c.pipeline > 1)
            .all(|c| c.table.contains("pipelined")));
        assert_eq!(
            (idle.concurrency, idle.rate, idle.keep_alive),
            (LIGHT_CONNS, Some(LIGHT_RATE), true)
        );
        assert_eq!(idle.duration, Some(LONG_WINDOW));
        assert_eq!(cells[8].source_addrs, SOURCE_ADDRS);
        assert_eq!(
            idle.title,
            "10,000 idle connections beside 10 at 1000 req/s"
        );
    }

    #[test]
    fn rows_give_back_their_sweep_and_level() {
        let row = |table: &str, concurrency, idle| ResultRow {
            table: table.into(),
            concurrency,
            idle_conns: crate::output::Na(idle),
            ..ResultRow::example()
        };
        let ka = row("scale-keep-alive-50", 50, None);
        let idle = row("scale-idle-1000", 10, Some(1000));
        assert_eq!(Sweep::of_row(&ka), Some(Sweep::KeepAlive));
        assert_eq!(Step::level_of_row(&idle), Some(1000));
        assert_eq!(Sweep::of_row(&row("paper-1", 10, None)), None);
        let cells = cells_of_rows(&[idle, ka.clone(), ka]);
        let tables: Vec<&str> = cells.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(
            tables,
            [
                "scale-keep-alive-50",
                "scale-per-request-50",
                "scale-idle-1000"
            ]
        );
    }

    #[test]
    fn limits_sit_above_the_level() {
        let step = Step {
            sweep: Sweep::Idle,
            level: 10_000,
        };
        assert_eq!(
            step.limits().max_conns,
            Some(10_000 + LIGHT_CONNS + CAP_MARGIN)
        );
        assert!(fd_shortfall(step, 20_000).is_none());
        let why = fd_shortfall(
            Step {
                sweep: Sweep::Idle,
                level: MORE_IDLE,
            },
            20_000,
        )
        .unwrap();
        assert!(
            why.contains("hard 20000") && why.contains("100074"),
            "{why}"
        );
    }

    #[test]
    fn ports_are_the_range_per_address_less_time_wait() {
        assert_eq!(port_capacity((32768, 60999), 1, 0), 28232);
        assert_eq!(
            port_capacity((32768, 60999), 16, 131_072),
            16 * 28232 - 131_072
        );
        assert_eq!(port_capacity((32768, 60999), 1, 131_072), 0);
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(1), "1");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_level_is_held_within_a_hundredth_of_its_connections() {
        let step = Step {
            sweep: Sweep::KeepAlive,
            level: 1000,
        };
        let row = |ok, timeouts| ResultRow {
            ok,
            err_timeout: timeouts,
            ..ResultRow::example()
        };
        assert_eq!(verdict(step, &row(5000, 10), None, None), Ok(()));
        let why = verdict(step, &row(5000, 11), None, None).unwrap_err();
        assert!(why.contains("11 requests failed (11 timed out)"), "{why}");
        assert!(verdict(step, &row(0, 0), None, None)
            .unwrap_err()
            .starts_with("no request answered"));
        assert_eq!(
            verdict(step, &row(5000, 0), None, Some("the server died")),
            Err("the server died".into())
        );
        // Under 100 connections one failure passes, two do not (a starved connection).
        let few = Step {
            sweep: Sweep::PerRequest,
            level: 10,
        };
        assert_eq!(verdict(few, &row(900, 1), None, None), Ok(()));
        assert!(verdict(few, &row(900, 2), None, None).is_err());
        // Pipelined: one connection's batch may fail, not two.
        let deep = Step {
            sweep: Sweep::Pipelined,
            level: 100,
        };
        assert_eq!(verdict(deep, &row(9000, 16), None, None), Ok(()));
        assert!(verdict(deep, &row(9000, 17), None, None).is_err());
        let idle = Step {
            sweep: Sweep::Idle,
            level: 10_000,
        };
        assert_eq!(verdict(idle, &row(1500, 0), Some(9_900), None), Ok(()));
        assert_eq!(
            verdict(idle, &row(1500, 0), Some(1_019), None),
            Err("held 1,019 of 10,000 idle connections".into())
        );
    }

    /// A server that answers each connection's first request and keeps it, up to `cap`
    /// connections; those past the cap are closed at once (as select past FD_SETSIZE).
    fn answering(cap: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            for stream in listener.incoming().flatten() {
                if kept.len() >= cap {
                    continue; // dropped: closed
                }
                let mut stream = stream;
                let mut buf = [0u8; 256];
                let mut got = Vec::new();
                while !got.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHelloWorld\n");
                kept.push(stream);
            }
        });
        addr
    }

    #[test]
    fn idle_connections_are_held_and_the_rest_counted() {
        let addr = answering(30);
        let held = hold_idle(addr, 40, Duration::from_secs(10), Duration::from_secs(2)).unwrap();
        assert_eq!(held.streams.len(), 30, "{}", held.describe(40));
        assert_eq!(held.closed, 10, "{}", held.describe(40));
        assert_eq!((held.refused, held.unanswered), (0, 0));
        assert_eq!(
            held.describe(40),
            "30 of 40 idle connections held, 10 closed by the server"
        );
    }

    #[test]
    fn a_server_that_stops_answering_stalls_the_opening_not_the_run() {
        // Accepts (the backlog does) but never answers anything.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let began = Instant::now();
        let held = hold_idle(
            addr,
            20,
            Duration::from_secs(30),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        assert!(held.stalled);
        assert_eq!((held.streams.len(), held.unanswered), (0, 20));
        drop(listener);
        // Nobody listening: every connection is refused.
        let held = hold_idle(addr, 5, Duration::from_secs(5), Duration::from_secs(1)).unwrap();
        assert_eq!(held.refused, 5, "{}", held.describe(5));
    }
}
