//! A server under test: started, checked, watched, stopped, and its resource use read back.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serverkit::{Protocol, Workload};

use super::cost::{self, CounterValues, Counters, Handover};
use super::placement::Placement;
use crate::meta;

/// How long a server may take to accept connections after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the tree is sampled during a measurement (at most).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(25);

/// How a server is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// An archbench server binary (found in the bin directory), with these flags.
    Binary(&'static str, &'static [&'static str]),
    /// The Node.js reference server (`scripts/node/server.js`) with this many processes
    /// (more than 1: the `cluster` module, a worker per process).
    Node(usize),
    /// nginx with this many workers (more than 1: each with its own `reuseport` listener).
    Nginx(usize),
}

/// Where to find what the servers need.
#[derive(Debug, Clone)]
pub struct Locations {
    /// Directory holding the `server-*` binaries (by default, bench-client's own).
    pub bin_dir: PathBuf,
    /// The repository root (for `scripts/node/server.js`), if found.
    pub repo_root: Option<PathBuf>,
}

impl Locations {
    /// Binaries next to this executable; the repository found by walking up from there.
    pub fn beside_executable() -> Locations {
        let exe = std::env::current_exe().ok();
        let bin_dir = exe
            .as_ref()
            .and_then(|e| e.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let repo_root = bin_dir
            .ancestors()
            .find(|d| d.join("scripts/node/server.js").is_file())
            .map(Path::to_path_buf)
            .or_else(|| {
                std::env::current_dir()
                    .ok()
                    .filter(|d| d.join("scripts/node/server.js").is_file())
            });
        Locations { bin_dir, repo_root }
    }
}

/// Connection limits a cell asks of every server (the scale preset: a cap above the level,
/// and an idle timeout longer than the cell); `None` leaves the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections at once (`--max-conns`; nginx: `worker_connections`; Node:
    /// `server.maxConnections`).
    pub max_conns: Option<usize>,
    /// How long a kept-alive connection may idle (`--idle-timeout`; nginx:
    /// `keepalive_timeout`; Node: `keepAliveTimeout`).
    pub idle_timeout: Option<Duration>,
}

impl ConnLimits {
    /// The flags for an archbench server or the Node server, leaving out any the user's
    /// `--server-args` already give (a flag given twice is a usage error).
    fn flags(&self, given: &[String]) -> Vec<String> {
        let mut flags = Vec::new();
        let absent = |flag: &str| {
            !given
                .iter()
                .any(|g| g == flag || g.starts_with(&format!("{flag}=")))
        };
        if let Some(n) = self.max_conns.filter(|_| absent("--max-conns")) {
            flags.extend(["--max-conns".to_string(), n.to_string()]);
        }
        if let Some(d) = self.idle_timeout.filter(|_| absent("--idle-timeout")) {
            flags.extend([
                "--idle-timeout".to_string(),
                format!("{}s", d.as_secs().max(1)),
            ]);
        }
        flags
    }
}

/// Why a server was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStarted {
    /// In words.
    pub message: String,
    /// Nothing is wrong with the suite or the server: a peer is not installed, cannot serve the
    /// workload, or the machine refuses what the server needs (it said "not available here").
    pub unavailable: bool,
}

impl NotStarted {
    fn failed(message: impl Into<String>) -> NotStarted {
        NotStarted {
            message: message.into(),
            unavailable: false,
        }
    }

    fn unavailable(message: impl Into<String>) -> NotStarted {
        NotStarted {
            message: message.into(),
            unavailable: true,
        }
    }
}

/// What the row says of the server measured: a hash of its binary, or a peer's version.
pub fn build_of(launch: &Launch, places: &Locations) -> String {
    match launch {
        Launch::Binary(bin, _) => meta::file_hash(&places.bin_dir.join(bin)),
        Launch::Node(_) => meta::version_of("node", "--version"),
        Launch::Nginx(_) => which("nginx").map_or("NA".into(), |nginx| {
            meta::version_of(nginx.to_str().unwrap_or("nginx"), "-v")
                .trim_start_matches("nginx version: ")
                .to_string()
        }),
    }
}

/// A running server.
pub struct Running {
    child: Child,
    counters: Option<Counters>,
    /// Where it accepts.
    pub addr: SocketAddr,
    nginx_dir: Option<PathBuf>,
    stderr_path: PathBuf,
    graceful: libc::c_int,
}

/// What the server's process left behind when it exited.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// It was already gone before we asked it to stop.
    pub died_early: bool,
    /// It did not stop within [`STOP_TIMEOUT`] and was killed.
    pub killed: bool,
    /// CPU seconds of its whole life, user and system (its own and its reaped children's),
    /// from `wait4`.
    pub life_cpu_s: f64,
    /// Last lines it wrote on stderr.
    pub stderr_tail: String,
    /// Processes of its group were still there after it exited, and were killed.
    pub left_behind: bool,
}

impl Exit {
    /// True for exit code 0 after SIGTERM.
    pub fn clean(&self) -> bool {
        !self.died_early && !self.killed && self.code == Some(0)
    }

    /// How it ended, in words.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "unknown status".into(),
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `launch` with the workload and protocol, and waits until it accepts.
///
/// # Errors
/// A message saying what is missing or what went wrong.
pub fn start(
    launch: &Launch,
    extra_args: &[String],
    limits: ConnLimits,
    workload: Workload,
    protocol: Protocol,
    places: &Locations,
    placement: &Placement,
) -> Result<Running, NotStarted> {
    let stderr_path = std::env::temp_dir().join(format!(
        "archbench-server-{}-{}.err",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    ));
    let stderr = fs::File::create(&stderr_path)
        .map_err(|e| NotStarted::failed(format!("temp file: {e}")))?;
    let protocol_name = match protocol {
        Protocol::Http => "http",
        Protocol::Raw => "raw",
    };
    let contract_args = [
        "--addr",
        "127.0.0.1:0",
        "--workload",
        &workload.to_string(),
        "--protocol",
        protocol_name,
    ]
    .map(String::from);
    let (mut command, nginx) = match launch {
        Launch::Binary(bin, args) => {
            let path = places.bin_dir.join(bin);
            if !path.is_file() {
                return Err(NotStarted::failed(format!(
                    "{} not found (build the workspace: cargo build --release --workspace)",
                    path.display()
                )));
            }
            let mut c = Command::new(path);
            c.args(&contract_args)
                .args(*args)
                .args(limits.flags(extra_args))
                .args(extra_args);
            (c, None)
        }
        Launch::Node(workers) => {
            let script = places
                .repo_root
                .as_ref()
                .map(|r| r.join("scripts/node/server.js"))
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    NotStarted::failed("scripts/node/server.js not found (run from the repository)")
                })?;
            if which("node").is_none() {
                return Err(NotStarted::unavailable("node is not installed"));
            }
            let mut c = Command::new("node");
            c.arg(script).args(&contract_args).args(limits.flags(&[]));
            if *workers > 1 {
                c.args(["--workers", &workers.to_string()]);
            }
            (c, None)
        }
        Launch::Nginx(workers) => {
            let (c, dir, addr) = nginx_command(workload, protocol, *workers, limits)
                .map_err(NotStarted::unavailable)?;
            (c, Some((dir, addr)))
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    // Between fork and exec: the server's cores, and perf counters on its tree-to-be.
    // ARCHBENCH_NO_PERF=1 forces the /proc fallback (for tests, and for comparing the two).
    let handover = if std::env::var_os("ARCHBENCH_NO_PERF").is_some() {
        None
    } else {
        Handover::new().ok()
    };
    let child_end = handover.as_ref().map(Handover::child_fd);
    let server_set = placement.server_set();
    // Its own process group: the whole tree can be killed at once if it will not stop (a
    // fork server's 10,000 children), and a ^C at the terminal reaches the suite, which stops
    // the server, not the server directly.
    // SAFETY: the hook only makes async-signal-safe system calls (sched_setaffinity,
    // perf_event_open, sendmsg, close) on values prepared before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        command.pre_exec(move || {
            if let Some(set) = &server_set {
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                    .map_err(std::io::Error::from)?;
            }
            if let Some(fd) = child_end {
                cost::open_and_send(fd);
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| NotStarted::failed(format!("cannot start: {e}")))?;
    let counters = handover.and_then(Handover::receive);
    let graceful = if nginx.is_some() {
        libc::SIGQUIT
    } else {
        libc::SIGTERM
    };
    let ready = match &nginx {
        Some((_, addr)) => wait_connectable(*addr, &mut child),
        None => read_ready_line(&mut child),
    };
    let nginx_dir = nginx.map(|(dir, _)| dir);
    match ready {
        Ok(addr) => Ok(Running {
            child,
            counters,
            addr,
            nginx_dir,
            stderr_path,
            graceful,
        }),
        Err(e) => {
            let _ = child.kill();
            // A server that exited by itself (io_uring refused, say) is named so, before its
            // own words from stderr: the row then reads "not measured: exited at start ...".
            let e = match child.wait() {
                Ok(status) if status.code().is_some() => format!("exited at start ({status})"),
                _ => e,
            };
            let tail = tail_of(&stderr_path);
            let _ = fs::remove_file(&stderr_path);
            if let Some(dir) = nginx_dir {
                let _ = fs::remove_dir_all(dir);
            }
            // The convention for a machine that refuses what a model needs: "... is not available here".
            let unavailable = tail.contains("not available here");
            let message = if tail.is_empty() {
                e
            } else {
                format!("{e}; stderr: {tail}")
            };
            Err(NotStarted {
                message,
                unavailable,
            })
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn nginx_command(
    workload: Workload,
    protocol: Protocol,
    workers: usize,
    limits: ConnLimits,
) -> Result<(Command, PathBuf, SocketAddr), String> {
    let nginx = which("nginx").ok_or("nginx is not installed (apt-get install nginx-light)")?;
    let port = free_port().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("archbench-nginx-{}-{port}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = dir.display();
    // Several workers: a listener each (SO_REUSEPORT), as server-reuseport.
    let reuseport = if workers > 1 { " reuseport" } else { "" };
    // worker_connections counts every descriptor a worker holds (the listener too).
    let worker_connections = limits.max_conns.map_or(16384, |n| (n + 64).max(16384));
    let common = format!(
        "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections {worker_connections}; }}\n"
    );
    let keepalive = limits.idle_timeout.map_or(String::new(), |t| {
        format!(" keepalive_timeout {}s;", t.as_secs().max(1))
    });
    let conf = match (protocol, workload) {
        (Protocol::Raw, Workload::Hello) => {
            let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
            if !module.is_file() {
                return Err("nginx has no stream module for the raw protocol (apt-get install libnginx-mod-stream)".into());
            }
            format!(
                "load_module {};\n{common}stream {{ server {{ listen 127.0.0.1:{port} backlog=4096{reuseport}; return \"HelloWorld\\n\"; }} }}\n",
                module.display()
            )
        }
        (Protocol::Http, Workload::Hello) => format!(
            "{common}http {{ access_log off; keepalive_requests 100000000;{keepalive} client_body_temp_path {d}; \
             proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen 127.0.0.1:{port} backlog=4096{reuseport}; default_type text/plain; \
             location / {{ return 200 \"HelloWorld\\n\"; }} }} }}\n"
        ),
        (_, other) => {
            return Err(format!(
                "nginx cannot answer '{other}' without third-party modules (it has no delay or CPU workload)"
            ))
        }
    };
    fs::write(dir.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let mut c = Command::new(nginx);
    c.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf"));
    Ok((c, dir, SocketAddr::from(([127, 0, 0, 1], port))))
}

fn read_ready_line(child: &mut Child) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    serverkit::listener::wait_for_ready_line(stdout, READY_TIMEOUT)
}

fn wait_connectable(addr: SocketAddr, child: &mut Child) -> Result<SocketAddr, String> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("not accepting on {addr} within {READY_TIMEOUT:?}"))
}

fn tail_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server's whole process tree (SIGSTOP to every process): while the other side
    /// of a comparison is measured, nothing this one does (a busy-poll loop, a timer) lands on
    /// it.
    pub fn pause(&self) {
        self.signal_tree(libc::SIGSTOP);
    }

    /// Lets a paused tree run again (SIGCONT).
    pub fn resume(&self) {
        self.signal_tree(libc::SIGCONT);
    }

    fn signal_tree(&self, signal: libc::c_int) {
        for pid in cost::tree_pids(self.pid()) {
            // SAFETY: kill(2) on a process of our own child's tree.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    /// True once the server's main process has exited (it is not reaped: [`Running::stop`]
    /// reports how it ended).
    pub fn exited(&mut self) -> bool {
        // SAFETY: waitid(2) with WNOWAIT leaves the child to be reaped later; `info` is plain data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set by waitid when a child changed state, zero otherwise.
        r == 0 && unsafe { info.si_pid() } != 0
    }

    /// The perf counters on the server's tree, read now (`None` where perf was refused).
    pub fn counters(&self) -> Option<CounterValues> {
        self.counters.as_ref()?.read()
    }

    /// Stops the server (SIGTERM; nginx: SIGQUIT, its graceful stop), waits for it, and reads
    /// its resource use. A server that is already gone is reported as having died early; one
    /// that does not stop within [`STOP_TIMEOUT`] is killed with its whole process group, and
    /// so is anything of its group left behind after it exited.
    pub fn stop(self) -> Exit {
        let pid = self.child.id() as libc::pid_t;
        let mut exit = Exit::default();
        let mut reaped = wait4(pid, libc::WNOHANG);
        if reaped.is_some() {
            exit.died_early = true;
        } else {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, self.graceful) };
            let start = Instant::now();
            while reaped.is_none() && start.elapsed() < STOP_TIMEOUT {
                std::thread::sleep(Duration::from_millis(5));
                reaped = wait4(pid, libc::WNOHANG);
            }
            if reaped.is_none() {
                exit.killed = true;
                kill_group(pid);
                reaped = wait4(pid, 0);
            }
        }
        // The group outlives its leader while any member lives, so its id is not reused.
        exit.left_behind = kill_group(pid) && !exit.killed;
        if let Some((status, usage)) = reaped {
            if libc::WIFEXITED(status) {
                exit.code = Some(libc::WEXITSTATUS(status));
            } else if libc::WIFSIGNALED(status) {
                exit.signal = Some(libc::WTERMSIG(status));
            }
            exit.life_cpu_s = usage.ru_utime.tv_sec as f64
                + usage.ru_utime.tv_usec as f64 / 1e6
                + usage.ru_stime.tv_sec as f64
                + usage.ru_stime.tv_usec as f64 / 1e6;
        }
        exit.stderr_tail = tail_of(&self.stderr_path);
        let _ = fs::remove_file(&self.stderr_path);
        if let Some(dir) = &self.nginx_dir {
            let _ = fs::remove_dir_all(dir);
        }
        exit
    }

    /// Watches the machine's available memory until the returned guard is finished; should
    /// it fall below `floor_kb`, kills the server's whole process group, so that a model that
    /// spends memory per connection (a process or a thread each) cannot take the machine down.
    pub fn guard_memory(&self, floor_kb: u64) -> MemoryGuard {
        let group = self.pid() as libc::pid_t;
        let stop = Arc::new(AtomicBool::new(false));
        let tripped = Arc::new(AtomicBool::new(false));
        let (flag, killed) = (Arc::clone(&stop), Arc::clone(&tripped));
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if meta::mem_available_kb().is_some_and(|kb| kb < floor_kb) {
                    kill_group(group);
                    killed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        MemoryGuard {
            stop,
            tripped,
            handle,
        }
    }
}

/// A running [`Running::guard_memory`].
pub struct MemoryGuard {
    stop: Arc<AtomicBool>,
    tripped: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl MemoryGuard {
    /// True once the guard has killed the server.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// Stops watching; true when the guard killed the server.
    pub fn finish(self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.tripped.load(Ordering::SeqCst)
    }
}

/// SIGKILL to every process of the group led by `leader`; true when there was one.
fn kill_group(leader: libc::pid_t) -> bool {
    // SAFETY: kill(2) with a negative pid signals the group the server was started in.
    unsafe { libc::kill(-leader, libc::SIGKILL) == 0 }
}

/// Reaps `pid` with `wait4`, returning its status and resource use (its own, plus that of the
/// children it reaped).
fn wait4(pid: libc::pid_t, flags: libc::c_int) -> Option<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; `pid` is our child.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r == pid {
            return Some((status, usage));
        }
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// The most a sampler saw at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peak {
    /// Threads of the tree.
    pub threads: u64,
    /// Processes of the tree.
    pub processes: u64,
    /// Resident set summed over the tree's processes, KiB.
    pub rss_kb: u64,
}

/// Watches a server's process tree during a measurement.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Peak>,
}

impl Sampler {
    /// Samples the tree rooted at `pid` every 25 ms until [`Sampler::finish`]; keeps the most
    /// threads and processes seen at once, and the largest resident set summed over the tree.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut peak = Peak::default();
            loop {
                let began = Instant::now();
                let s = cost::sample_tree(pid, false);
                peak.threads = peak.threads.max(s.threads);
                peak.processes = peak.processes.max(s.processes);
                peak.rss_kb = peak.rss_kb.max(s.rss_kb);
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                // Every 25 ms, or less often when a look takes long (10,000 threads or
                // processes): the sampler stays under a fifth of the client's core.
                std::thread::sleep(SAMPLE_EVERY.max(began.elapsed() * 4));
            }
        });
        Sampler { stop, handle }
    }

    /// Stops sampling; returns the most seen at once.
    pub fn finish(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// The measured window on a server's tree, one implementation for the suite and for
/// `bench-client measure`: opened just before the first measured request, closed just after
/// the last answer. It samples the tree meanwhile ([`Sampler`]) and reads /proc and the perf
/// counters (when there are any) at both ends; [`cost::window`] makes the row's figures.
pub struct Window {
    pid: u32,
    sampler: Sampler,
    tree_before: cost::TreeSample,
    counters_before: Option<CounterValues>,
}

impl Window {
    /// Opens the window; `counters` is the perf counters read now (`None`: the /proc source).
    pub fn open(pid: u32, counters: impl FnOnce() -> Option<CounterValues>) -> Window {
        let sampler = Sampler::start(pid);
        let tree_before = cost::sample_tree(pid, true);
        Window {
            pid,
            sampler,
            tree_before,
            counters_before: counters(),
        }
    }

    /// Closes it: what the tree spent inside, and the most it held at once.
    pub fn close(
        self,
        counters: impl FnOnce() -> Option<CounterValues>,
    ) -> (cost::WindowCost, Peak) {
        let counters_after = counters();
        let tree_after = cost::sample_tree(self.pid, true);
        let peak = self.sampler.finish();
        let cost = cost::window(
            &self.tree_before,
            &tree_after,
            self.counters_before.zip(counters_after),
            cost::ticks_per_second(),
        );
        (cost, peak)
    }
}
