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
//! a context switch per connection. With `accept` in every thread, a connection waits in
//! the backlog, visible to the client's `connect` timing, until a thread is free.
//!
//! That argument is measured, not just made: `--accept handoff` runs the alternative, one
//! acceptor thread that hands each connection to a worker over a crossbeam channel of
//! capacity 0 (a rendezvous: the acceptor waits until a worker takes the connection, so it
//! never runs ahead of the workers and, as with `shared`, the connections nobody serves yet
//! wait in the kernel's backlog, but for the one in the acceptor's hand). The two differ
//! only by the hand-off; compare their context switches and CPU per connection with a new
//! connection per request (`bench-client suite`, rows `pool` and `pool-handoff`).
//!
//! ```text
//! server-pool --workers 16 --workload delay:100ms
//! server-pool --accept handoff
//! ```

use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use clap::Parser;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use serverkit::blocking::{self, Accepted};
use serverkit::connection::Connection;
use serverkit::date::SharedDate;
use serverkit::listener::TICK;
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

    /// How connections reach the threads: each calls `accept` on the shared listener
    /// (`shared`), or one acceptor thread hands them over a channel (`handoff`).
    #[arg(long, value_enum, default_value_t = Accept::Shared)]
    accept: Accept,
}

/// How connections reach the pool's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Accept {
    /// Every thread calls `accept`; the kernel wakes one per connection.
    Shared,
    /// One acceptor thread calls `accept` and hands each connection to a waiting thread.
    Handoff,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-pool", start(&cli))
}

fn start(cli: &Cli) -> io::Result<()> {
    let listener = listener::bind(&cli.server)?;
    shutdown::install(&listener)?;
    let config = cli.server.config();
    // Handoff: capacity 0, a rendezvous (see the top comment). The workers' loop ends when
    // the acceptor is gone and drops its end.
    let (handoff, handed) = crossbeam_channel::bounded::<TcpStream>(0);
    thread::scope(|scope| -> io::Result<()> {
        let listener = &listener;
        for i in 0..cli.workers {
            let handed = handed.clone();
            let spawned = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn_scoped(scope, move || match cli.accept {
                    Accept::Shared => worker(listener, &config),
                    Accept::Handoff => handed_worker(&handed, &config),
                });
            if let Err(e) = spawned {
                // Stop the threads already made, or the scope would wait for them forever.
                shutdown::request();
                return Err(e);
            }
        }
        if cli.accept == Accept::Handoff {
            let spawned = thread::Builder::new()
                .name("acceptor".into())
                .spawn_scoped(scope, move || acceptor(listener, handoff));
            if let Err(e) = spawned {
                shutdown::request();
                return Err(e);
            }
        }
        if let Err(e) = listener::announce(listener) {
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

/// `--accept handoff`: one pool thread, served its connections by the acceptor.
fn handed_worker(handed: &Receiver<TcpStream>, config: &ServerConfig) {
    let mut conn = Connection::new(*config, Instant::now());
    // Ends once the acceptor has stopped (shutdown) and dropped its end of the channel.
    for stream in handed {
        blocking::serve_connection(stream, &mut conn, &DATE);
    }
}

/// `--accept handoff`: the acceptor thread. Each connection waits in its hand until a worker
/// takes it (a worker blocked in `recv` is woken: the hand-off's second wake-up).
fn acceptor(listener: &TcpListener, handoff: Sender<TcpStream>) {
    loop {
        let mut stream = match blocking::accept(listener) {
            Accepted::Conn(stream) => stream,
            Accepted::Tick => continue,
            Accepted::Shutdown => return,
        };
        // Every worker busy: wait, a tick at a time, to see a shutdown.
        loop {
            match handoff.send_timeout(stream, TICK) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) if !shutdown::requested() => stream = back,
                // Shutdown: close it unserved, as the backlog's connections are.
                Err(_) => return,
            }
        }
    }
}
