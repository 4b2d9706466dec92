//! Epoll workers with `SO_REUSEPORT`: a master process and `--workers` worker processes, each
//! with a listener of its own on the same port and an epoll loop of its own (nginx's model
//! with `listen ... reuseport`; Node's `cluster` module aims at the same, one process per
//! core).
//!
//! The paper's section 3 (nginx's master and workers), on the 2.1.3 event loop. **Cost:** each
//! worker is `server-epoll` (the very same loop: `server_epoll::EventLoop`), so a request costs
//! what it costs there; the workers share nothing, no lock and no memory, and `--workers N`
//! runs N loops on N cores. **Where it breaks:** see below: the kernel, not the workers,
//! decides which worker gets a connection, and it does not look at how busy they are.
//! **Watch in the benchmark:** `hello` should scale with the cores the server may use (on a
//! machine where the load generator does not take them); CPU per request should stay
//! `server-epoll`'s; `cpu:D` no longer stalls everyone, only the connections of the worker
//! that computes.
//!
//! **How the kernel spreads the connections.** Sockets bound to the same address and port,
//! each with `SO_REUSEPORT` (and the same user), form a group. For each incoming connection
//! (its SYN) the kernel hashes the 4-tuple (source and destination address and port) and
//! picks a listener from that hash (`reuseport_select_sock`): with the client's port in the
//! hash, connections spread evenly over many of them, and the choice is made once, when the
//! connection arrives, blind to load. So a worker that blocks (a `cpu:D` handler, a page
//! fault, a stop in a debugger) stalls its own connections, as in `server-epoll`, *and its
//! share of the new ones*: the kernel keeps putting 1/N of them in that worker's accept
//! queue, where they wait, while the other workers may sit idle. (A shared listener, as in
//! `server-prefork`, or one epoll set woken with `EPOLLEXCLUSIVE`, lets an idle worker take
//! them; a BPF program attached with `SO_ATTACH_REUSEPORT_EBPF` can choose another way.)
//! The test `a_stopped_worker_s_share_of_connections_waits` shows it. And a worker that dies
//! takes its listener with it: the connections queued there are reset, the next ones go to
//! the others, and the replacement joins the group when it listens.
//!
//! How it reads: [`start`] makes the master: it reserves the address (bound with
//! `SO_REUSEPORT`, never listening, so no connection is ever hashed to it; port 0 becomes the
//! port every worker joins), forks the workers, waits until each says it listens, and only
//! then prints the ready line, once. [`worker`] is one worker: a listener of its own, the
//! epoll loop, until SIGTERM. The master then replaces a worker that dies
//! (`serverkit::supervisor`, shared with `server-prefork`); SIGTERM to the master is passed
//! on to every worker, each drains its connections like `server-epoll`, and the master exits
//! once all have. SIGTERM to one worker stops that worker alone (it shuts down its own
//! listener, not a shared one), and the master replaces it. `--max-conns` is per worker, as
//! nginx's `worker_connections`.
//!
//! ```text
//! server-reuseport --workers 4 --workload delay:100ms
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use clap::Parser;
use nix::fcntl::OFlag;
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use server_epoll::EventLoop;
use serverkit::supervisor::Workers;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// Epoll workers with SO_REUSEPORT: a master and a process per core, each with its own
/// listener on the same port.
#[derive(Parser)]
#[command(name = "server-reuseport", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Worker processes, each with its own listener and epoll loop [default: the cores this
    /// process may run on]. `--max-conns` is per worker.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
}

/// What a worker needs to know, the same for every worker and every replacement.
#[derive(Clone, Copy)]
struct Plan {
    /// The address the master reserved: every worker's listener joins it.
    addr: SocketAddr,
    config: ServerConfig,
    max_conns: usize,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-reuseport", start(&cli))
}

/// The master: reserve the address, fork the workers, announce once they all listen, then
/// supervise them.
fn start(cli: &Cli) -> io::Result<()> {
    let workers = cli.workers.map_or_else(cores, |n| n as usize);
    let args = ServerArgs {
        reuseport: true,
        ..cli.server.clone()
    };
    // Bound, never listening: it holds the port (port 0 becomes a chosen one) for the workers
    // to join, and no connection is ever hashed to it.
    let reserved = listener::reserve(&args)?;
    let addr = reserved
        .local_addr()?
        .as_socket()
        .ok_or(io::ErrorKind::Unsupported)?;
    shutdown::install_without_listener()?;
    let plan = Plan {
        addr,
        config: args.config(),
        max_conns: args.max_conns as usize,
    };
    let mut running = Workers::new("server-reuseport");
    let (ready_read, ready_write) = pipe2(OFlag::O_CLOEXEC)?;
    for _ in 0..workers {
        match spawn_worker(plan, Some(&ready_write)) {
            Ok(pid) => running.add(pid),
            Err(e) => {
                running.stop();
                return Err(e);
            }
        }
    }
    // Each worker writes a byte once it listens, then closes its end; ours goes now, so the
    // read ends (EOF) when every worker has either said so or died.
    drop(ready_write);
    let mut ready = Vec::with_capacity(workers);
    let listening = File::from(ready_read)
        .read_to_end(&mut ready)
        .map(|_| ready.len());
    if listening.as_ref().ok() != Some(&workers) {
        running.stop();
        return Err(io::Error::other("a worker could not listen"));
    }
    if let Err(e) = listener::announce_addr(addr) {
        // Nobody will learn the port: take the workers down too, leaving no orphans.
        running.stop();
        return Err(e);
    }
    // Replace a worker that dies (it listens when it is ready: no line, no wait) until
    // SIGTERM; then pass it on, and wait until every worker has drained.
    running.supervise(|| spawn_worker(plan, None));
    drop(reserved);
    Ok(())
}

/// The cores this process may run on (`sched_getaffinity`, and a cgroup's CPU quota).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Forks one worker; `ready` is where it says that it listens (the first workers only).
/// Returns its pid in the master; never returns in the worker.
fn spawn_worker(plan: Plan, ready: Option<&OwnedFd>) -> io::Result<Pid> {
    let master = std::process::id();
    // SAFETY: the master has a single thread, so the child inherits no lock held elsewhere.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // SAFETY: the child's copy of the master's descriptor; the child never returns to
            // the frame that owns it (it ends in _exit), so this is the one owner that closes
            // it, and the master sees EOF once every worker has written and closed its copy.
            let ready = ready.map(|fd| unsafe { OwnedFd::from_raw_fd(fd.as_raw_fd()) });
            let code = match worker(plan, ready, master) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("server-reuseport: worker {}: {e}", std::process::id());
                    1
                }
            };
            // SAFETY: _exit ends the worker without running the master's clean-up.
            unsafe { libc::_exit(code) }
        }
    }
}

/// One worker process: a listener of its own on the reserved address, and the epoll loop of
/// `server-epoll` on it, until SIGTERM.
///
/// The listener is this worker's alone, so its SIGTERM handler may shut it down: a SIGTERM
/// sent to one worker stops that worker alone (the connections queued on its listener are
/// reset), and the master replaces it.
fn worker(plan: Plan, ready: Option<OwnedFd>, master: u32) -> io::Result<()> {
    // A master killed outright (SIGKILL) cannot pass SIGTERM on: the kernel does it for it.
    // SAFETY: prctl with integer arguments; affects only this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    if std::os::unix::process::parent_id() != master {
        return Ok(()); // the master died before the prctl
    }
    let listener = listener::join(plan.addr)?;
    shutdown::install(&listener)?;
    let event_loop = EventLoop::new(listener, plan.config, plan.max_conns)?;
    if let Some(ready) = ready {
        File::from(ready).write_all(b"+")?;
    }
    event_loop.run()
}
