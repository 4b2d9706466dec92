//! Select loop: one thread, non-blocking sockets, and a state machine per connection, driven by
//! `select(2)`, the oldest readiness call (4.2BSD, 1983).
//!
//! The paper's 2.1.3 (I/O multiplexing with `select`). **Cost:** like the epoll loop, no process
//! or thread per client; but the kernel keeps no interest list, so every wake-up costs O(n) in
//! the open connections, three times over: the loop rebuilds the descriptor sets (`select`
//! overwrites them with its answer), the kernel walks every bit up to the highest descriptor and
//! polls each socket marked, and the loop tests every connection's bit, since `select` says how
//! many descriptors are ready, not which. **Where it breaks:** at `FD_SETSIZE`, the lesson of
//! this file. An `fd_set` is a bitmap of a fixed 1024 bits, so a descriptor of 1024 or more
//! cannot be asked about at all (in C, `FD_SET` on it writes past the set: undefined
//! behaviour, which glibc's `_FORTIFY_SOURCE` turns into an abort). This server raises its
//! descriptor limit like every other (serverkit's listener), so the kernel does hand out such
//! descriptors; a connection that gets one is refused: closed at once, counted, and reported on
//! stderr once a second at most (the count again at exit). With the listener and the timerfd,
//! about 1019 connections fit. And, as in every single-threaded loop, a `cpu:D` request stalls
//! every other connection for D. **Watch in the benchmark:** close to epoll with a few busy
//! connections; with a thousand idle keep-alive connections held open beside the load, every
//! wake-up pays for all of them, and connections past the limit are refused.
//!
//! How it reads: [`EventLoop::run`] builds the two sets from what every connection waits for,
//! calls `select`, then tests every connection's bits (`on_ready`), then the timerfd's
//! (`on_timer`) and the listener's (`on_listener`). The rest is the epoll loop's, line for
//! line: serverkit's [`Connection`](serverkit::connection::Connection) is the protocol,
//! [`Conns::advance`] does what it asks until a step would block, [`Conns`] keeps the
//! connections by descriptor, each known by a token that is never reused, and serverkit's
//! [`Timers`] (a heap, and a timerfd in the read set for nanosecond `delay`s; `select`'s own
//! timeout counts microseconds) wake the loop for delays and for the sweep of deadlines
//! every 250 ms.
//!
//! ```text
//! server-select --workload delay:100ms
//! ```

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::nonblocking::{self, Conns, Step, Waiting};
use serverkit::timers::Timers;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// Bits in an `fd_set`: descriptors from 0 to 1023 can be asked about, no others.
const FD_SETSIZE: usize = libc::FD_SETSIZE;

/// Connections accepted per wake-up, so a flood of connects cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// Select event-loop server: one thread, at most `FD_SETSIZE` descriptors.
#[derive(Parser)]
#[command(name = "server-select", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-select", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    let event_loop = EventLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce(&event_loop.listener)?;
    event_loop.run()
}

/// A `select` descriptor set: a bitmap of [`FD_SETSIZE`] bits.
struct FdSet(libc::fd_set);

impl FdSet {
    fn new() -> FdSet {
        // SAFETY: an fd_set is an array of integers; all zeros is the empty set (FD_ZERO's).
        FdSet(unsafe { std::mem::zeroed() })
    }

    /// Adds `fd`, which must fit: checked here, because a bit past the set is memory that is
    /// not the set's.
    fn insert(&mut self, fd: RawFd) {
        assert!(fits(fd), "descriptor {fd} is past FD_SETSIZE");
        // SAFETY: 0 <= fd < FD_SETSIZE, so the bit is inside the set.
        unsafe { libc::FD_SET(fd, &mut self.0) }
    }

    fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: as in `insert`; a descriptor that does not fit is in no set.
        fits(fd) && unsafe { libc::FD_ISSET(fd, &self.0) }
    }
}

/// Whether `select` can be asked about `fd` at all.
fn fits(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < FD_SETSIZE)
}

struct EventLoop {
    listener: TcpListener,
    max_conns: usize,
    /// Open connections by descriptor (all below `FD_SETSIZE`). Nothing kept beside each: the
    /// sets are built anew from what each waits for.
    conns: Conns<()>,
    /// `delay` deadlines by token, and the timerfd armed for the earliest or the sweep.
    timers: Timers,
    next_sweep: Instant,
    /// `accept` failed (out of descriptors): the listener is left out of the set until the
    /// next sweep, or a level-triggered `select` would report it again at once and spin.
    accept_failed: bool,
    /// Connections refused because their descriptor was past `FD_SETSIZE`.
    refused: u64,
    /// When a refusal was last reported on stderr.
    reported: Option<Instant>,
    stopping: bool,
    date: DateCache,
}

impl EventLoop {
    fn new(listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let timers = Timers::new()?;
        for fd in [listener.as_raw_fd(), timers.as_fd().as_raw_fd()] {
            if !fits(fd) {
                return Err(io::Error::other(format!(
                    "descriptor {fd} is past select's FD_SETSIZE ({FD_SETSIZE})"
                )));
            }
        }
        let now = Instant::now();
        Ok(EventLoop {
            listener,
            max_conns,
            conns: Conns::new(config),
            timers,
            next_sweep: now + TICK,
            accept_failed: false,
            refused: 0,
            reported: None,
            stopping: false,
            date: DateCache::at(now),
        })
    }

    fn run(mut self) -> io::Result<()> {
        let listener_fd = self.listener.as_raw_fd();
        let timer_fd = self.timers.as_fd().as_raw_fd();
        loop {
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown(Instant::now());
            }
            if self.stopping && self.conns.open() == 0 {
                if self.refused > 0 {
                    eprintln!(
                        "server-select: refused {} connections past FD_SETSIZE",
                        self.refused
                    );
                }
                return Ok(());
            }
            let ticking = self.conns.open() > 0 || self.accept_failed;
            self.timers.arm(ticking.then_some(self.next_sweep))?;

            // O(n), first time: `select` writes its answer over the sets it was given, so they
            // are built anew, from every connection, before every call.
            let mut readable = FdSet::new();
            let mut writable = FdSet::new();
            readable.insert(timer_fd);
            if !self.stopping && !self.accept_failed && self.conns.open() < self.max_conns {
                readable.insert(listener_fd);
            }
            for conn in self.conns.iter() {
                match conn.waiting {
                    Waiting::Readable => readable.insert(conn.stream.as_raw_fd()),
                    Waiting::Writable => writable.insert(conn.stream.as_raw_fd()),
                    Waiting::Timer => {}
                }
            }
            // O(n), second time: the kernel looks at every descriptor below `nfds`.
            let nfds = self
                .conns
                .fd_bound()
                .max(listener_fd.max(timer_fd) as usize + 1);
            // SAFETY: both sets are valid fd_sets that live across the call; no exceptional
            // set and no timeout (null: wait until something is ready or a signal comes).
            let ready = unsafe {
                libc::select(
                    nfds as libc::c_int,
                    &mut readable.0,
                    &mut writable.0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            match Errno::result(ready) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue, // a signal: look at the shutdown flag
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            self.date.refresh(now);
            // O(n), third time: the answer is a count; which ones are ready, only a look at
            // every connection's bits tells. Connections first: until the listener accepts,
            // every descriptor in the answer is still the connection it was asked about.
            for fd in 0..self.conns.fd_bound() {
                let (r, w) = (
                    readable.contains(fd as RawFd),
                    writable.contains(fd as RawFd),
                );
                if r || w {
                    self.on_ready(fd, r, now);
                }
            }
            if readable.contains(timer_fd) {
                self.on_timer(now);
            }
            if readable.contains(listener_fd) {
                self.on_listener(now);
            }
        }
    }

    fn on_listener(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            if self.stopping || self.conns.open() >= self.max_conns {
                return; // the others wait in the backlog; the listener is left out of the set
            }
            match nonblocking::accept(&self.listener) {
                Ok(Some(stream)) => self.on_accepted(stream, now),
                Ok(None) => return,
                Err(_) if shutdown::requested() => return, // EINVAL: the handler shut it
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued; leave the listener out of
                    // the set until the next tick, and serve the others meanwhile.
                    serverkit::blocking::report_accept_error(&e);
                    self.accept_failed = true;
                    return;
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: TcpStream, now: Instant) {
        let fd = stream.as_raw_fd();
        if !fits(fd) {
            return self.refuse(stream, now);
        }
        let token = self.conns.add(stream, (), now);
        self.drive(token, now); // raw protocol: the answer is due at once
    }

    /// A connection whose descriptor `select` cannot watch: closed at once (the client reads
    /// an end of file), counted, and reported once a second at most.
    fn refuse(&mut self, stream: TcpStream, now: Instant) {
        let fd = stream.as_raw_fd();
        drop(stream);
        self.refused += 1;
        if self
            .reported
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.reported = Some(now);
            eprintln!(
                "refused a connection: its descriptor {fd} is past select's FD_SETSIZE \
                 ({FD_SETSIZE}); {} refused so far",
                self.refused
            );
        }
    }

    /// `select` marked descriptor `fd` readable (`readable`) or writable.
    fn on_ready(&mut self, fd: usize, readable: bool, now: Instant) {
        let Some(conn) = self.conns.by_fd(fd) else {
            return;
        };
        let token = conn.token;
        // A reset socket is reported readable; the read then fails.
        if conn.waiting == Waiting::Readable && readable && self.conns.read(token, now).is_err() {
            return self.close(token);
        }
        self.drive(token, now);
    }

    /// Does what the connection asks for until something would block; then notes what it
    /// waits for (the next set building reads it), or closes it.
    fn drive(&mut self, token: u64, now: Instant) {
        // A `cpu` cost is paid in there: every other connection waits meanwhile.
        match self.conns.advance(token, now, &self.date) {
            Some(Step::Delay(d)) => self.timers.add(Instant::now() + d, token),
            Some(Step::Close) => self.close(token),
            _ => {}
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.timers.fired();
        while let Some(token) = self.timers.pop_due(now) {
            if self.conns.delay_ended(token) {
                self.drive(token, now);
            }
        }
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    /// Every tick: let each connection see its deadlines (it answers 408 or closes when one
    /// passed); let the listener back in after a failed accept.
    fn sweep(&mut self, now: Instant) {
        self.next_sweep = now + TICK;
        self.accept_failed = false;
        for fd in 0..self.conns.fd_bound() {
            if let Some(token) = self.conns.waiting_on_socket(fd) {
                self.drive(token, now);
            }
        }
    }

    /// Shutdown: stop accepting; every connection finishes what it holds (an idle one closes
    /// at once) and none waits past the read timeout from now.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stopping = true;
        self.conns.shutdown(now);
        self.sweep(now);
    }

    /// Closes the connection (its socket dropped, its state kept for the next one).
    fn close(&mut self, token: u64) {
        self.conns.close(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_descriptors_below_fd_setsize_and_refuses_the_others() {
        let mut set = FdSet::new();
        set.insert(0);
        set.insert(FD_SETSIZE as RawFd - 1);
        assert!(set.contains(0) && set.contains(FD_SETSIZE as RawFd - 1));
        assert!(!set.contains(1));
        assert!(
            !set.contains(FD_SETSIZE as RawFd),
            "past the set: in no set"
        );
        assert!(!set.contains(-1));
        let past = std::panic::catch_unwind(|| FdSet::new().insert(FD_SETSIZE as RawFd));
        assert!(
            past.is_err(),
            "inserting past the set must not write past it"
        );
    }
}
