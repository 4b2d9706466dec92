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

/// How long a server may take to accept connections after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A running server.
pub struct Running {
    child: Child,
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
    /// User CPU seconds (its own and its reaped children's).
    pub cpu_user_s: f64,
    /// System CPU seconds (its own and its reaped children's).
    pub cpu_sys_s: f64,
    /// Voluntary context switches.
    pub ctx_voluntary: u64,
    /// Involuntary context switches.
    pub ctx_involuntary: u64,
    /// Largest resident set (KiB) of the server or any one reaped child.
    pub peak_rss_kb: u64,
    /// Last lines it wrote on stderr.
    pub stderr_tail: String,
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
    workload: Workload,
    protocol: Protocol,
    places: &Locations,
) -> Result<Running, String> {
    let stderr_path = std::env::temp_dir().join(format!(
        "archbench-server-{}-{}.err",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    ));
    let stderr = fs::File::create(&stderr_path).map_err(|e| format!("temp file: {e}"))?;
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
                return Err(format!(
                    "{} not found (build the workspace: cargo build --release --workspace)",
                    path.display()
                ));
            }
            let mut c = Command::new(path);
            c.args(&contract_args).args(*args).args(extra_args);
            (c, None)
        }
        Launch::Node(workers) => {
            let script = places
                .repo_root
                .as_ref()
                .map(|r| r.join("scripts/node/server.js"))
                .filter(|p| p.is_file())
                .ok_or("scripts/node/server.js not found (run from the repository)")?;
            if which("node").is_none() {
                return Err("node is not installed".into());
            }
            let mut c = Command::new("node");
            c.arg(script).args(&contract_args);
            if *workers > 1 {
                c.args(["--workers", &workers.to_string()]);
            }
            (c, None)
        }
        Launch::Nginx(workers) => {
            let (c, dir, addr) = nginx_command(workload, protocol, *workers)?;
            (c, Some((dir, addr)))
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = command.spawn().map_err(|e| format!("cannot start: {e}"))?;
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
            addr,
            nginx_dir,
            stderr_path,
            graceful,
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let tail = tail_of(&stderr_path);
            let _ = fs::remove_file(&stderr_path);
            if let Some(dir) = nginx_dir {
                let _ = fs::remove_dir_all(dir);
            }
            Err(if tail.is_empty() {
                e
            } else {
                format!("{e}; stderr: {tail}")
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
) -> Result<(Command, PathBuf, SocketAddr), String> {
    let nginx = which("nginx").ok_or("nginx is not installed (apt-get install nginx-light)")?;
    let port = free_port().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("archbench-nginx-{}-{port}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = dir.display();
    // Several workers: a listener each (SO_REUSEPORT), as server-reuseport.
    let reuseport = if workers > 1 { " reuseport" } else { "" };
    let common = format!(
        "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 16384; }}\n"
    );
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
            "{common}http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {d}; \
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

    /// Samples the server's threads and processes (its whole process tree) every 25 ms until
    /// the returned sampler is stopped; keeps the largest counts seen.
    pub fn sample_tree(&self) -> Sampler {
        let pid = self.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (mut threads, mut processes) = (0u64, 0u64);
            loop {
                let (t, p) = count_tree(pid);
                threads = threads.max(t);
                processes = processes.max(p);
                if flag.load(Ordering::Relaxed) {
                    return (threads, processes);
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Sampler { stop, handle }
    }

    /// Stops the server (SIGTERM; nginx: SIGQUIT, its graceful stop), waits for it, and reads
    /// its resource use. A server that is already gone is reported as having died early.
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
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reaped = wait4(pid, 0);
            }
        }
        if let Some((status, usage)) = reaped {
            if libc::WIFEXITED(status) {
                exit.code = Some(libc::WEXITSTATUS(status));
            } else if libc::WIFSIGNALED(status) {
                exit.signal = Some(libc::WTERMSIG(status));
            }
            exit.cpu_user_s = usage.ru_utime.tv_sec as f64 + usage.ru_utime.tv_usec as f64 / 1e6;
            exit.cpu_sys_s = usage.ru_stime.tv_sec as f64 + usage.ru_stime.tv_usec as f64 / 1e6;
            exit.ctx_voluntary = usage.ru_nvcsw as u64;
            exit.ctx_involuntary = usage.ru_nivcsw as u64;
            exit.peak_rss_kb = usage.ru_maxrss as u64;
        }
        exit.stderr_tail = tail_of(&self.stderr_path);
        let _ = fs::remove_file(&self.stderr_path);
        if let Some(dir) = &self.nginx_dir {
            let _ = fs::remove_dir_all(dir);
        }
        exit
    }
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

/// Threads and processes in the tree rooted at `pid`, from /proc.
fn count_tree(pid: u32) -> (u64, u64) {
    let mut threads = 0;
    let mut processes = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        processes += 1;
        for task in tasks.flatten() {
            threads += 1;
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    (threads, processes)
}

/// Watches a server's process tree during a measurement.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64)>,
}

impl Sampler {
    /// Stops sampling; returns the most threads and processes seen at once.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}
