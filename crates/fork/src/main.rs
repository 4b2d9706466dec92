//! Fork per connection: the parent accepts, and each connection is served by a new child
//! process, which exits when the connection ends.
//!
//! The paper's A.3 (Python's `ForkingMixIn`), and the classic inetd/CGI model. **Cost:** a
//! `fork` (copying page tables, a new process to schedule), an `exit` and a `waitpid` per
//! connection: the most expensive way to start serving a client. In exchange a crash or a leak
//! dies with its child. **Where it breaks:** `hello` with a new connection per request is
//! dominated by process creation; memory and the process table grow with concurrent clients,
//! so live children are capped by `--max-conns` (past it the parent waits for one to exit
//! before it accepts again). **Watch in the benchmark:** the slowest row of Table 1, in the
//! paper and here; on `delay` it overlaps the waits as well as threads do.
//!
//! Why `fork` is sound here: the parent never starts a thread, so at the moment of `fork` no
//! other thread can hold a lock (the allocator's, stdout's) that the child would inherit
//! locked forever. That is also why shutdown is a signal handler and not a watcher thread.
//! The child closes its copy of the listener and leaves with `_exit`, so it neither accepts nor
//! runs the parent's exit-time clean-up.
//!
//! The parent reaps its children after every accept and every tick of the listener's timeout
//! (250 ms), so an exited child is a zombie for a quarter of a second at most. At the cap it
//! does not accept: it waits for SIGCHLD (kept blocked, so none is lost) for a tick at most,
//! then looks at the shutdown flag and reaps.
//!
//! ```text
//! server-fork --workload delay:100ms --max-conns 256
//! ```

use std::collections::HashSet;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serverkit::blocking::{self, Accepted};
use serverkit::connection::Connection;
use serverkit::date::SharedDate;
use serverkit::listener::TICK;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// The cached `Date` header. The parent never answers; each child starts with a copy of this
/// `static` as it was at its `fork` (processes share no memory) and refreshes its copy if the
/// second has changed since.
static DATE: SharedDate = SharedDate::new();

/// Fork-per-connection server: a new process for each accepted connection.
#[derive(Parser)]
#[command(name = "server-fork", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-fork", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    listener::announce(&listener)?;
    run(&listener, &args.config(), args.max_conns as usize)
}

fn run(listener: &TcpListener, config: &ServerConfig, max_children: usize) -> io::Result<()> {
    // SIGCHLD is blocked, so a child's exit waits as a pending signal: at the cap the parent
    // can wait for it with `sigtimedwait` and never miss one that came just before.
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    sigchld.thread_block()?;
    let mut children: HashSet<Pid> = HashSet::new();
    loop {
        reap(&mut children, WaitPidFlag::WNOHANG);
        if children.len() >= max_children {
            if shutdown::requested() {
                break;
            }
            // At the cap: wait for a child to exit, a tick at most, so a SIGTERM is seen too.
            wait_for_a_child(&sigchld);
            continue;
        }
        match blocking::accept(listener) {
            Accepted::Conn(stream) => {
                if let Some(child) = fork_child(listener, stream, config)? {
                    children.insert(child);
                }
            }
            Accepted::Tick => {}
            Accepted::Shutdown => break,
        }
    }
    // Children finish the request they hold; SIGTERM makes keep-alive ones close after it.
    for child in &children {
        let _ = kill(*child, Signal::SIGTERM);
    }
    while !children.is_empty() {
        reap(&mut children, WaitPidFlag::empty());
    }
    Ok(())
}

/// Forks a child to serve `stream`. Returns its pid in the parent; never returns in the child.
fn fork_child(
    listener: &TcpListener,
    stream: TcpStream,
    config: &ServerConfig,
) -> io::Result<Option<Pid>> {
    // SAFETY: this process has one thread (see the top comment), so the child starts with no
    // lock held by a thread that does not exist in it.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Some(child)), // `stream` drops: parent's copy closed
        Ok(ForkResult::Child) => {
            shutdown::forget_listener();
            let _ = nix::unistd::close(listener.as_raw_fd());
            let mut conn = Connection::new(*config, Instant::now());
            blocking::serve_connection(stream, &mut conn, &DATE);
            // SAFETY: _exit ends the child without unwinding or running the parent's clean-up.
            unsafe { libc::_exit(0) }
        }
        Err(e @ (Errno::EAGAIN | Errno::ENOMEM)) => {
            // Out of processes or memory: drop this one connection, keep serving.
            eprintln!("server-fork: fork failed: {e}; connection dropped");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits until a child has exited (its SIGCHLD is pending), a signal handler ran, or a tick
/// passed, whichever comes first.
fn wait_for_a_child(sigchld: &SigSet) {
    let tick = libc::timespec {
        tv_sec: 0,
        tv_nsec: TICK.as_nanos() as libc::c_long,
    };
    // SAFETY: a valid signal set and timeout; the siginfo pointer may be null.
    unsafe { libc::sigtimedwait(sigchld.as_ref(), std::ptr::null_mut(), &tick) };
}

/// Collects exited children: all that have exited (`WNOHANG`), or waits for one.
fn reap(children: &mut HashSet<Pid>, flags: WaitPidFlag) {
    loop {
        match waitpid(None, Some(flags)) {
            Ok(WaitStatus::StillAlive) => return,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    children.remove(&pid);
                }
                if !flags.contains(WaitPidFlag::WNOHANG) {
                    return;
                }
            }
            Err(Errno::ECHILD) => {
                children.clear();
                return;
            }
            Err(_) => return, // EINTR: a signal came; the caller looks at the shutdown flag
        }
    }
}
