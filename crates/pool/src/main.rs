//! Prethreaded pool: `--workers` threads made at start-up, each accepting on the shared
//! listener and serving its connection to the end.
//!
//! The paper's 3.3 (prethreading). **Cost:** the threads are paid once, at start-up, so a
//! request costs no `clone`; each thread serves one connection at a time. **Where it breaks:**
//! at most `--workers` connections are served at once; the next one waits in the listen backlog
//! until a thread is free, so 100 keep-alive clients on a pool of 32 leave 68 waiting (a slow
//! or idle client holds its thread until the idle timeout). **Watch in the benchmark:** close
//! to the thread-per-connection model on `delay`, ahead of it on `hello` with a new connection
//! per request.
//!
//! Why every thread calls `accept` instead of one acceptor handing connections over a
//! (crossbeam) channel: the kernel's accept queue already is the queue. A thread blocked in
//! `accept` is woken alone when a connection arrives (Linux wakes one exclusive waiter, no
//! thundering herd), so the hand-over would only add a second wake-up, a channel operation and
//! a context switch per connection, and an acceptor that can run ahead of the workers and
//! accept connections nobody serves yet. With `accept` in every thread, a connection waits in
//! the backlog, visible to the client's `connect` timing, until a thread is free.
//!
//! ```text
//! server-pool --workers 16 --workload delay:100ms
//! ```

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use clap::Parser;
use serverkit::blocking::{self, Accepted};
use serverkit::connection::Connection;
use serverkit::date::SharedDate;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// The cached `Date` header, shared by every pool thread: whichever finds it stale reformats it
/// for all (a read lock per connection and once a second, never per request).
static DATE: SharedDate = SharedDate::new();

/// Prethreaded pool server: a fixed set of threads, each accepting and serving.
#[derive(Parser)]
#[command(name = "server-pool", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Threads made at start-up: the most connections served at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    workers: u32,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-pool", start(&cli))
}

fn start(cli: &Cli) -> io::Result<()> {
    let listener = listener::bind(&cli.server)?;
    shutdown::install(&listener)?;
    let config = cli.server.config();
    thread::scope(|scope| -> io::Result<()> {
        for i in 0..cli.workers {
            let listener = &listener;
            let spawned = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn_scoped(scope, move || worker(listener, &config));
            if let Err(e) = spawned {
                // Stop the threads already made, or the scope would wait for them forever.
                shutdown::request();
                return Err(e);
            }
        }
        if let Err(e) = listener::announce(&listener) {
            // Nobody will learn the port: stop the threads, or the scope would wait for ever.
            shutdown::request();
            return Err(e);
        }
        Ok(())
    })
}

/// One pool thread: accept, serve to the end, accept again, until shutdown.
fn worker(listener: &TcpListener, config: &ServerConfig) {
    // The thread's connection state, made once and reused: a connection costs no set-up.
    let mut conn = Connection::new(*config, Instant::now());
    loop {
        match blocking::accept(listener) {
            Accepted::Conn(stream) => blocking::serve_connection(stream, &mut conn, &DATE),
            Accepted::Tick => {}
            Accepted::Shutdown => return,
        }
    }
}
