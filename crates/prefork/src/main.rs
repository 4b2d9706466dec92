//! Preforked pool: `--workers` processes made at start-up, each accepting on the shared
//! listener and serving its connection to the end (Apache's prefork MPM).
//!
//! The paper's 3.3 (preforking). **Cost:** the processes are paid once, at start-up; a request
//! then costs what it costs the iterative server, in whichever process the kernel woke. Each
//! process has its own memory, so a crash takes one worker, which the parent replaces.
//! **Where it breaks:** at most `--workers` connections are served at once; the next one waits
//! in the listen backlog; every worker costs a whole process's memory. **Watch in the
//! benchmark:** Table 1 shows what fork-per-connection pays for `fork` itself: same isolation,
//! without a fork per request.
//!
//! The workers are forked before any thread exists (the parent never starts one), so each
//! child starts with no lock held. They share one listening socket: the kernel wakes one
//! blocked `accept` per connection. The parent only supervises: it waits for a worker to exit
//! and replaces it (a worker sent SIGTERM on its own finishes its connection and exits, and
//! service goes on); on SIGTERM to the parent it passes the signal on, and waits for every
//! worker to finish what it holds (`serverkit::supervisor`, shared with `server-reuseport`).
//!
//! ```text
//! server-prefork --workers 8 --workload delay:100ms
//! ```

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use nix::unistd::{fork, ForkResult, Pid};
use serverkit::blocking::{self, Accepted};
use serverkit::connection::Connection;
use serverkit::date::SharedDate;
use serverkit::supervisor::Workers;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// The cached `Date` header. Every worker has its own copy of this `static` (a forked process
/// shares no memory with its siblings), so each formats the date once a second for itself.
static DATE: SharedDate = SharedDate::new();

/// Preforked pool server: a fixed set of processes, each accepting and serving.
#[derive(Parser)]
#[command(name = "server-prefork", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Processes made at start-up: the most connections served at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    workers: u32,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-prefork", start(&cli))
}

fn start(cli: &Cli) -> io::Result<()> {
    let listener = listener::bind(&cli.server)?;
    shutdown::install(&listener)?;
    let config = cli.server.config();
    let mut workers = Workers::new("server-prefork");
    for _ in 0..cli.workers {
        match spawn_worker(&listener, &config) {
            Ok(pid) => workers.add(pid),
            Err(e) => {
                workers.stop();
                return Err(e);
            }
        }
    }
    if let Err(e) = listener::announce(&listener) {
        // Nobody will learn the port: take the workers down too, leaving no orphans.
        workers.stop();
        return Err(e);
    }
    // The parent's loop: replace workers that die until SIGTERM, then pass it on and wait.
    workers.supervise(|| spawn_worker(&listener, &config));
    Ok(())
}

/// Forks one worker. Returns its pid in the parent; never returns in the worker.
fn spawn_worker(listener: &TcpListener, config: &ServerConfig) -> io::Result<Pid> {
    // SAFETY: the parent has a single thread, so the child inherits no lock held elsewhere.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            worker(listener, config);
            // SAFETY: _exit ends the worker without running the parent's clean-up.
            unsafe { libc::_exit(0) }
        }
    }
}

/// One worker process: accept, serve to the end, accept again, until shutdown.
///
/// The listener is shared with every sibling, so a worker's signal handler must not shut it
/// down (that would stop them all): a SIGTERM sent to one worker only sets its flag, seen
/// within a tick, and that worker alone finishes its connection and exits; the parent
/// replaces it.
fn worker(listener: &TcpListener, config: &ServerConfig) {
    shutdown::forget_listener();
    // The worker's connection state, made once and reused: a connection costs no set-up.
    let mut conn = Connection::new(*config, Instant::now());
    loop {
        match blocking::accept(listener) {
            Accepted::Conn(stream) => blocking::serve_connection(stream, &mut conn, &DATE),
            Accepted::Tick => {}
            Accepted::Shutdown => return,
        }
    }
}
