//! Busy-polling loop: one thread, non-blocking sockets, and a loop that never waits: it tries
//! the listener and every connection in turn, again and again, whether or not anything is
//! there.
//!
//! The paper's 2.1.2 (non-blocking I/O with busy polling). **Cost:** a full core, always. A
//! pass over n idle connections is n `read`s that answer `EAGAIN` and one `accept` that does
//! too, and the next pass starts at once: at zero load the server burns as much CPU as the
//! scheduler gives it, and the more connections it holds, the longer each pass and the later
//! it comes back to any one of them. **Where it breaks:** on the machine around it. The core it
//! spins on is taken from everything else, the load generator of a benchmark included, and its
//! latency is a pass over every connection. It does serve correctly: every deadline (read,
//! idle, write) is looked at on every pass, `delay` is a deadline in a heap looked at on every
//! pass (never a sleep), and SIGTERM sets a flag looked at on every pass. And, as in every
//! single-threaded loop, a `cpu:D` request stalls every other connection for D. **Watch in the
//! benchmark:** the CPU of the idle server (a core; its test measures it), and the CPU per
//! request: roughly the whole core divided by the requests it served.
//!
//! What a real server does instead: it blocks in the kernel until something is ready (the
//! epoll loop's `epoll_wait`), so an idle server costs nothing. Busy polling survives where a
//! core is worth less than a microsecond of latency, and then on a core of its own, fed by
//! readiness rather than by failed calls: the kernel's `SO_BUSY_POLL`, io_uring's `SQPOLL`
//! thread, DPDK's poll-mode drivers.
//!
//! One concession: a pass that found nothing to do ends with `sched_yield`. It saves no CPU
//! (the process stays runnable, and alone on its core the call returns at once), but on a
//! shared core it lets whatever else is runnable there go first, instead of waiting for the
//! scheduler to preempt the spin.
//!
//! How it reads: [`BusyLoop::run`] is the loop; each pass accepts what is queued
//! (`accept_queued`), ends the `delay`s that are due (`end_delays`) and tries every connection
//! (`try_every_connection`). As in the epoll loop, serverkit's
//! [`Connection`](serverkit::connection::Connection) is the protocol, [`Conns::advance`] does
//! what it asks until a step would block, and [`Conns`] keeps the connections by descriptor,
//! each known by a token that is never reused (the key of its `delay` in the heap).
//!
//! ```text
//! server-busypoll --workload delay:100ms
//! ```

use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serverkit::date::DateCache;
use serverkit::nonblocking::{self, Conns, Step, Waiting};
use serverkit::timers::Deadlines;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// Connections accepted per pass, so a flood of connects cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// Busy-polling server: one thread that never blocks.
#[derive(Parser)]
#[command(name = "server-busypoll", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-busypoll", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    let busy_loop = BusyLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce(&busy_loop.listener)?;
    busy_loop.run();
    Ok(())
}

struct BusyLoop {
    listener: TcpListener,
    max_conns: usize,
    /// Open connections by descriptor; what each waits for says what a pass tries on it.
    conns: Conns<()>,
    /// `delay` deadlines by token: a heap, looked at on every pass; no timerfd, since nothing
    /// here ever waits for one.
    delays: Deadlines,
    stopping: bool,
    date: DateCache,
}

impl BusyLoop {
    fn new(listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(BusyLoop {
            listener,
            max_conns,
            conns: Conns::new(config),
            delays: Deadlines::default(),
            stopping: false,
            date: DateCache::at(Instant::now()),
        })
    }

    /// The loop: a pass, then another, for ever; until a shutdown, nothing here blocks.
    fn run(mut self) {
        loop {
            let now = Instant::now();
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown(now);
            }
            if self.stopping && self.conns.open() == 0 {
                return;
            }
            self.date.refresh(now);
            let accepted = self.accept_queued(now);
            let delays_ended = self.end_delays(now);
            let bytes_came = self.try_every_connection(now);
            if !(accepted || delays_ended || bytes_came) {
                // Nothing this pass; the next starts at once. The yield only lets another
                // process on this core go first (see the top of the file).
                std::thread::yield_now();
            }
        }
    }

    /// Accepts what is queued, if there is room. True if a connection came.
    fn accept_queued(&mut self, now: Instant) -> bool {
        let mut accepted = false;
        for _ in 0..ACCEPT_BATCH {
            if self.stopping || self.conns.open() >= self.max_conns {
                break; // the others wait in the backlog
            }
            match nonblocking::accept(&self.listener) {
                Ok(Some(stream)) => {
                    self.on_accepted(stream, now);
                    accepted = true;
                }
                Ok(None) => break,
                Err(_) if shutdown::requested() => break, // EINVAL: the handler shut it
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued, and the next pass tries
                    // again (a loop that spins anyway loses nothing by it).
                    serverkit::blocking::report_accept_error(&e);
                    break;
                }
            }
        }
        accepted
    }

    fn on_accepted(&mut self, stream: TcpStream, now: Instant) {
        let token = self.conns.add(stream, (), now);
        self.drive(token, now); // raw protocol: the answer is due at once
    }

    /// Ends every `delay` whose deadline has passed. True if one did.
    fn end_delays(&mut self, now: Instant) -> bool {
        let mut ended = false;
        while let Some(token) = self.delays.pop_due(now) {
            if let Some(conn) = self.conns.get(token) {
                conn.http.worked();
                self.drive(token, now);
                ended = true;
            }
        }
        ended
    }

    /// The pass over every connection: a `read` on each that waits for a request (most answer
    /// `EAGAIN`), the `write` again on each left half written. Every connection but those in a
    /// `delay` then looks at its deadlines (`drive`): nothing else enforces them. True if any
    /// bytes came.
    fn try_every_connection(&mut self, now: Instant) -> bool {
        let mut bytes_came = false;
        for fd in 0..self.conns.fd_bound() {
            let Some(conn) = self.conns.by_fd(fd) else {
                continue;
            };
            let token = conn.token;
            match conn.waiting {
                // A request, or the rest of one: try a `read`.
                Waiting::Readable => {
                    match self.conns.read(token, now) {
                        Ok(came) => bytes_came |= came,
                        Err(_) => {
                            self.close(token); // reset: costs nothing more
                            continue;
                        }
                    }
                }
                Waiting::Writable => {} // a write left half done: `drive` tries it again
                Waiting::Timer => continue, // its deadline is in the heap
            }
            self.drive(token, now);
        }
        bytes_came
    }

    /// Does what the connection asks for until something would block; then notes what it
    /// waits for (which says what the next pass tries), or closes it.
    fn drive(&mut self, token: u64, now: Instant) {
        // A `cpu` cost is paid in there: every other connection waits meanwhile.
        match self.conns.advance(token, now, &self.date) {
            Some(Step::Delay(d)) => self.delays.add(Instant::now() + d, token),
            Some(Step::Close) => self.close(token),
            _ => {}
        }
    }

    /// Shutdown: stop accepting; every connection finishes what it holds (an idle one closes
    /// at once, on this pass) and none waits past the read timeout from now.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stopping = true;
        self.conns.shutdown(now);
    }

    /// Closes the connection (its socket dropped, its state kept for the next one).
    fn close(&mut self, token: u64) {
        self.conns.close(token);
    }
}
