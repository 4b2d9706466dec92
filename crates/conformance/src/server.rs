//! A server binary started as a subprocess, known by the address on its ready line.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Flags every server of this test binary gets ([`set_extra_args`]).
static EXTRA_ARGS: OnceLock<&'static [&'static str]> = OnceLock::new();

/// Gives every server this test binary starts `args` too (pairs of `--flag value`), before the
/// flags of the check, which win: a check that sets the same flag drops the pair. Set by
/// [`crate::suite!`]'s third argument; the same for the whole test binary.
///
/// # Panics
/// If called with different flags in the same test binary.
pub fn set_extra_args(args: &'static [&'static str]) {
    assert_eq!(
        *EXTRA_ARGS.get_or_init(|| args),
        args,
        "one set of flags per test binary"
    );
}

/// A command for `bin` with `args`, after the flags of [`set_extra_args`] that `args` does not
/// set itself.
pub fn command(bin: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    for pair in EXTRA_ARGS.get().copied().unwrap_or_default().chunks(2) {
        if !args.contains(&pair[0]) {
            command.args(pair);
        }
    }
    command.args(args);
    command
}

/// How long a server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    /// The address from the ready line.
    pub addr: SocketAddr,
    /// Where its stderr goes, when captured.
    stderr: Option<std::path::PathBuf>,
}

impl Server {
    /// Starts `bin` with `args` (plus `--addr 127.0.0.1:0`) and waits for `listening on ADDR`.
    ///
    /// # Panics
    /// If the binary does not start or prints no ready line within 10 s.
    pub fn start(bin: &str, args: &[&str]) -> Server {
        Self::start_with_fd_limit(bin, args, None)
    }

    /// Like [`start`](Self::start), with `RLIMIT_NOFILE` (soft and hard) set to `limit` in the
    /// server process.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_with_fd_limit(bin: &str, args: &[&str], limit: Option<u64>) -> Server {
        Self::start_full(bin, args, limit, false)
    }

    /// Like [`start_with_fd_limit`](Self::start_with_fd_limit), with stderr written to a file
    /// that [`stderr`](Self::stderr) reads (instead of the test's own stderr).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_capturing_stderr(bin: &str, args: &[&str], limit: Option<u64>) -> Server {
        Self::start_full(bin, args, limit, true)
    }

    fn start_full(bin: &str, args: &[&str], limit: Option<u64>, capture: bool) -> Server {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let stderr_path = capture.then(|| {
            std::env::temp_dir().join(format!(
                "conformance-{}-{}.err",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ))
        });
        let stderr = match &stderr_path {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("stderr file")),
            None => Stdio::inherit(),
        };
        let mut command = command(bin, &[&["--addr", "127.0.0.1:0"], args].concat());
        if let Some(limit) = limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let addr =
            serverkit::listener::wait_for_ready_line(stdout, READY_TIMEOUT).unwrap_or_else(|e| {
                let _ = child.kill();
                panic!("{bin}: {e}")
            });
        Server {
            child,
            addr,
            stderr: stderr_path,
        }
    }

    /// What the server wrote on stderr so far (started with
    /// [`start_capturing_stderr`](Self::start_capturing_stderr); empty otherwise).
    pub fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Descriptors the server process holds open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// CPU time (user + system, in clock ticks of 1/100 s) of the whole server: the process,
    /// the children it has reaped, and the children alive now (a prefork worker, a fork child).
    pub fn tree_cpu_ticks(&self) -> u64 {
        fn stat_fields(pid: u32) -> Vec<u64> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            // Field 3 (state) is not a number; keep positions by mapping it to 0.
            rest.split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect()
        }
        fn own_and_reaped(pid: u32) -> u64 {
            // utime, stime, cutime, cstime are fields 14 to 17 (index 11 to 14 after the name).
            stat_fields(pid).get(11..15).map_or(0, |f| f.iter().sum())
        }
        let mut total = own_and_reaped(self.pid());
        let mut stack = children_of(self.pid());
        while let Some(pid) = stack.pop() {
            total += own_and_reaped(pid);
            stack.extend(children_of(pid));
        }
        total
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the server process has used, in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(14) + field(15)
    }

    /// Threads of the server process, and its live child processes.
    pub fn threads_and_children(&self) -> (usize, usize) {
        let pid = self.pid();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        let children = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .map(|c| c.split_whitespace().count())
            .sum();
        (threads, children)
    }

    /// Pids of the server's live child processes.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Zombie children of the server (exited, not reaped).
    pub fn zombie_children(&self) -> usize {
        let me = self.pid().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                let mut f = rest.split_whitespace();
                let state = f.next();
                let ppid = f.next();
                state == Some("Z") && ppid == Some(me.as_str())
            })
            .count()
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(path) = &self.stderr {
            let _ = std::fs::remove_file(path);
        }
        if let Ok(None) = self.child.try_wait() {
            // A process server's children follow the parent's SIGTERM; SIGKILL leaves them.
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Pids of the live child processes of `pid` (of every one of its threads).
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a server started afterwards
/// inherits it), for tests that hold many connections.
///
/// # Errors
/// The reason the test would mean nothing: the hard limit is below `needed`, or the calls fail.
pub fn raise_fd_limit(needed: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_max < needed {
        return Err(format!(
            "the hard RLIMIT_NOFILE is {}, and the test holds {needed} descriptors",
            limit.rlim_max
        ));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A stdout for a server that fails to write: a pipe whose reading end is already closed, so
/// the ready line fails with EPIPE. (A descriptor opened read-only would not do: Rust's stdout
/// quietly ignores EBADF.)
///
/// # Panics
/// If the pipe cannot be made.
pub fn failing_stdout() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut ends = [0; 2];
    // SAFETY: pipe2 fills the two descriptors.
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: both descriptors were just made by pipe2 and nothing else owns them.
    let (reading, writing) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    drop(reading);
    Stdio::from(writing)
}

/// Why `bin` cannot run on this machine, if it says so: started once, it exits before its
/// ready line with a stderr containing `marker` (e.g. "io_uring is not available"); the
/// reason is that line. `None` when it starts (or fails otherwise: the checks then fail).
///
/// # Panics
/// If the binary cannot be spawned.
pub fn refusal(bin: &str, marker: &str) -> Option<String> {
    use std::io::Read;
    let mut child = Command::new(bin)
        .args(["--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    if serverkit::listener::wait_for_ready_line(stdout, READY_TIMEOUT).is_ok() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let _ = child.kill(); // no ready line: exited, or hung
    let _ = child.wait();
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    stderr
        .lines()
        .find(|line| line.contains(marker))
        .map(|line| line.trim().to_string())
}

/// Says on stderr, past the test harness's capture, that `check` was skipped and why.
pub fn say_skipped(check: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{check}: skipped: {reason}");
}
