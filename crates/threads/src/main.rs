//! Thread per connection: the main thread accepts, and each connection gets a new OS thread.
//!
//! The paper's A.2 (Python's `ThreadingMixIn`). **Cost:** a `clone` and a stack per
//! connection, paid on every request when each request is a new connection; the threads share
//! one address space, so starting one is far cheaper than a `fork`. **Where it breaks:** one
//! thread per client means memory and scheduler load grow with the number of clients (C10K),
//! so the number of threads alive at once is capped by `--max-conns`; past the cap the main
//! thread stops accepting and new clients wait in the listen backlog. A failed spawn (out of
//! memory or of the process's thread limit) drops that one connection and the server goes on.
//! **Watch in the benchmark:** `hello` with a connection per request pays the spawn every
//! time; compare with the prethreaded pool, which pays it once.
//!
//! ```text
//! server-threads --workload delay:100ms --max-conns 512
//! ```

use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use clap::Parser;
use serverkit::blocking::{self, Accepted};
use serverkit::connection::Connection;
use serverkit::date::SharedDate;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// The cached `Date` header, shared by every connection thread: a thread lives for one
/// connection, so a cache of its own would be formatted anew for nearly every request.
static DATE: SharedDate = SharedDate::new();

/// Stack for each connection thread: 64 KiB, not Rust's default 2 MiB. A stack costs memory
/// only for the pages touched (two, measured: the deepest frames of the connection loop, whose
/// buffers are on the heap, and glibc's thread block with its TLS at the top). What is
/// reserved is address space and commit charge (the memory the kernel has promised to
/// processes, whether touched or not): ten thousand default stacks would be 20 GB of it, which a
/// strict overcommit policy (`vm.overcommit_memory=2`: promise no more than RAM and swap allow)
/// refuses. 64 KiB leaves a debug build's deeper frames
/// room (docs/memory.md).
const STACK_SIZE: usize = 64 * 1024;

/// Thread-per-connection server: a new thread for each accepted connection.
#[derive(Parser)]
#[command(name = "server-threads", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-threads", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    listener::announce(&listener)?;
    run(&listener, args.config(), args.max_conns as usize);
    Ok(())
}

/// Counts the connection threads alive, so the acceptor can wait for a free slot and, at
/// shutdown, for the last one to finish.
struct Live {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Live {
    fn wait_until_below(&self, limit: usize) {
        // A lock is "poisoned" when a thread panicked holding it; the count is still right
        // (a panic cannot stop halfway through `+= 1`), so `into_inner` takes it anyway.
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count >= limit {
            count = self
                .changed
                .wait(count)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Counts one more thread; the count goes down when the returned guard is dropped, even by
    /// a thread that panics, so a broken connection can never hold up the cap or shutdown.
    /// (`self: &Arc<Self>`: called on the `Arc`, so the guard can keep a clone of it.)
    fn enter(self: &Arc<Self>) -> LiveGuard {
        self.add(1);
        LiveGuard(Arc::clone(self))
    }

    fn add(&self, delta: isize) {
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        // usize + isize, panicking below zero (a guard dropped twice would be a bug).
        *count = count
            .checked_add_signed(delta)
            .expect("thread count underflow");
        self.changed.notify_all();
    }
}

/// One live connection thread (see [`Live::enter`]).
struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

fn run(listener: &TcpListener, config: ServerConfig, max_threads: usize) {
    let live = Arc::new(Live {
        count: Mutex::new(0),
        changed: Condvar::new(),
    });
    loop {
        live.wait_until_below(max_threads);
        match blocking::accept(listener) {
            Accepted::Conn(stream) => spawn_connection(stream, config, &live),
            Accepted::Tick => {}
            Accepted::Shutdown => break,
        }
    }
    // Threads in flight finish their request and see the shutdown flag at their next read.
    live.wait_until_below(1);
}

fn spawn_connection(stream: TcpStream, config: ServerConfig, live: &Arc<Live>) {
    let guard = live.enter();
    let spawned = thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || {
            // Moved in, and dropped when the thread ends (its slot given back); `_guard`, not
            // `_`, which would drop it at once.
            let _guard = guard;
            let mut conn = Connection::new(config, Instant::now());
            blocking::serve_connection(stream, &mut conn, &DATE);
        });
    if let Err(e) = spawned {
        // The closure (the stream and the guard in it) was dropped: the client sees its
        // connection close, and the count is back down.
        eprintln!("server-threads: cannot spawn a thread: {e}; connection dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_panicking_connection_thread_still_leaves_the_count() {
        let live = Arc::new(Live {
            count: Mutex::new(0),
            changed: Condvar::new(),
        });
        let guard = live.enter();
        let panicked = thread::spawn(move || {
            let _guard = guard;
            panic!("a connection that panics");
        })
        .join();
        assert!(panicked.is_err());
        let waiter = {
            let live = Arc::clone(&live);
            thread::spawn(move || live.wait_until_below(1))
        };
        let start = std::time::Instant::now();
        while !waiter.is_finished() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "shutdown would hang"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}
