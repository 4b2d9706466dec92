//! Poll loop: one thread, non-blocking sockets, and a state machine per connection, driven by
//! `poll(2)` (System V): `select` without the descriptor limit.
//!
//! The paper's 2.1.3 (I/O multiplexing with `poll`). **Cost:** like the epoll loop, no process
//! or thread per client; but the kernel keeps no interest list, so every wake-up costs O(n) in
//! the open connections: the whole array of `pollfd`s is copied into the kernel and back, every
//! socket in it is polled, and the loop looks at every entry's answer, since `poll` says how
//! many entries have one, not which. **Where it breaks:** nowhere at a fixed number, unlike
//! `select`: a `pollfd` names its descriptor, so any descriptor the process may open can be
//! watched. It degrades instead: a thousand idle connections cost every wake-up a thousand
//! entries copied and checked, where epoll would hand back only the ready ones. And, as in
//! every single-threaded loop, a `cpu:D` request stalls every other connection for D.
//! **Watch in the benchmark:** close to epoll with a few busy connections; behind it once many
//! idle keep-alive connections are held open beside the load.
//!
//! The array is kept between calls, not rebuilt. `poll` reads what to watch from `events` and
//! answers in `revents`, two fields, where `select` writes its answer over the sets it was
//! given; so an entry changes only when its connection's interest does (on a kept-alive
//! connection: never), which is the one saving `poll` offers over `select`. The kernel's copy
//! and the loop's look at every entry remain. A connection knows its entry's index; a closed
//! one's entry is replaced by the last entry (`swap_remove`), so the array stays dense.
//!
//! How it reads: [`EventLoop::run`] calls `poll`, then looks at every connection's entry
//! (`on_ready`), then the timerfd's (`on_timer`) and the listener's (`on_listener`). The rest
//! is the epoll loop's: serverkit's [`Connection`](serverkit::connection::Connection) is the
//! protocol, [`Conns::advance`] does what it asks until a step would block, [`Conns`] keeps
//! the connections by descriptor, each known by a token that is never reused, and serverkit's
//! [`Timers`] (a heap, and a timerfd in the array: `poll`'s own timeout counts whole
//! milliseconds) wake the loop for delays and for the sweep of deadlines every 250 ms.
//!
//! ```text
//! server-poll --workload delay:100ms
//! ```

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use nix::errno::Errno;
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::nonblocking::{self, Conns, Step, Waiting};
use serverkit::timers::Timers;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// Entries of the `pollfd` array that are not connections; connections follow them.
const LISTENER: usize = 0;
const TIMER: usize = 1;
const FIRST_CONN: usize = 2;

/// Connections accepted per wake-up, so a flood of connects cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// Poll event-loop server: one thread, many connections.
#[derive(Parser)]
#[command(name = "server-poll", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-poll", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    let event_loop = EventLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce(&event_loop.listener)?;
    event_loop.run()
}

struct EventLoop {
    listener: TcpListener,
    max_conns: usize,
    /// What `poll` watches: the listener, the timerfd, then one entry per connection, in no
    /// order. An entry with a negative descriptor is skipped by `poll` (the listener, when it
    /// is not watched).
    pollfds: Vec<libc::pollfd>,
    /// Open connections by descriptor, each with the index of its entry in `pollfds`.
    conns: Conns<usize>,
    /// `delay` deadlines by token, and the timerfd armed for the earliest or the sweep.
    timers: Timers,
    next_sweep: Instant,
    /// `accept` failed (out of descriptors): the listener is not watched until the next sweep,
    /// or a level-triggered `poll` would report it again at once and spin.
    accept_failed: bool,
    stopping: bool,
    date: DateCache,
}

/// A `pollfd` asking about `fd`.
fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl EventLoop {
    fn new(listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let timers = Timers::new()?;
        let pollfds = vec![
            pollfd(listener.as_raw_fd(), libc::POLLIN),
            pollfd(timers.as_fd().as_raw_fd(), libc::POLLIN),
        ];
        let now = Instant::now();
        Ok(EventLoop {
            listener,
            max_conns,
            pollfds,
            conns: Conns::new(config),
            timers,
            next_sweep: now + TICK,
            accept_failed: false,
            stopping: false,
            date: DateCache::at(now),
        })
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown(Instant::now());
            }
            if self.stopping && self.conns.open() == 0 {
                return Ok(());
            }
            let ticking = self.conns.open() > 0 || self.accept_failed;
            self.timers.arm(ticking.then_some(self.next_sweep))?;
            let watch_listener =
                !self.stopping && !self.accept_failed && self.conns.open() < self.max_conns;
            let listener_fd = self.listener.as_raw_fd();
            self.pollfds[LISTENER].fd = if watch_listener { listener_fd } else { -1 };
            // O(n): the kernel copies in every entry, polls every socket, and copies every
            // entry back.
            // SAFETY: `pollfds` is a valid array of that many entries, alive across the call;
            // no timeout (-1: wait until something is ready or a signal comes).
            let ready = unsafe {
                libc::poll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    -1,
                )
            };
            match Errno::result(ready) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue, // a signal: look at the shutdown flag
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            self.date.refresh(now);
            // O(n) again: the answer is a count; which entries have news, only a look at every
            // one tells.
            let mut at = FIRST_CONN;
            while at < self.pollfds.len() {
                let pollfd = self.pollfds[at];
                if pollfd.revents != 0 {
                    self.on_ready(pollfd.fd as usize, pollfd.revents, now);
                }
                // A close moves the last entry, not looked at yet, into this one: look again.
                if self.pollfds.get(at).is_some_and(|p| p.fd == pollfd.fd) {
                    at += 1;
                }
            }
            if self.pollfds[TIMER].revents != 0 {
                self.on_timer(now);
            }
            if self.pollfds[LISTENER].revents != 0 {
                self.on_listener(now);
            }
        }
    }

    fn on_listener(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            if self.stopping || self.conns.open() >= self.max_conns {
                return; // the others wait in the backlog; the listener is not watched
            }
            match nonblocking::accept(&self.listener) {
                Ok(Some(stream)) => self.on_accepted(stream, now),
                Ok(None) => return,
                Err(_) if shutdown::requested() => return, // EINVAL: the handler shut it
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued; stop watching the listener
                    // until the next tick, and serve the others meanwhile.
                    serverkit::blocking::report_accept_error(&e);
                    self.accept_failed = true;
                    return;
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: TcpStream, now: Instant) {
        // Its entry asks for nothing until `drive` says what it waits for.
        self.pollfds.push(pollfd(stream.as_raw_fd(), 0));
        let token = self.conns.add(stream, self.pollfds.len() - 1, now);
        self.drive(token, now); // raw protocol: the answer is due at once
    }

    /// `poll` answered `revents` for the connection on descriptor `fd`.
    fn on_ready(&mut self, fd: usize, revents: i16, now: Instant) {
        let Some(conn) = self.conns.by_fd(fd) else {
            return;
        };
        let token = conn.token;
        if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            // Reset, or both directions shut: no answer can reach the client any more.
            return self.close(token);
        }
        if conn.waiting == Waiting::Readable
            && revents & libc::POLLIN != 0
            && self.conns.read(token, now).is_err()
        {
            return self.close(token); // reset: costs nothing more
        }
        self.drive(token, now);
    }

    /// Does what the connection asks for until something would block; then writes what it
    /// waits for into its entry, or closes it.
    fn drive(&mut self, token: u64, now: Instant) {
        // A `cpu` cost is paid in there: every other connection waits meanwhile.
        match self.conns.advance(token, now, &self.date) {
            None => return,
            Some(Step::Delay(d)) => self.timers.add(Instant::now() + d, token),
            Some(Step::Close) => return self.close(token),
            Some(Step::Readable | Step::Writable) => {}
        }
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        self.pollfds[conn.watch].events = match conn.waiting {
            Waiting::Readable => libc::POLLIN,
            Waiting::Writable => libc::POLLOUT,
            Waiting::Timer => 0, // a hang-up or an error is still reported
        };
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
    /// passed); watch the listener again after a failed accept.
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

    /// Closes the connection and takes its entry out of the array: the last entry moves into
    /// its place.
    fn close(&mut self, token: u64) {
        let Some(entry) = self.conns.close(token) else {
            return;
        };
        self.pollfds.swap_remove(entry);
        if let Some(moved) = self.pollfds.get(entry) {
            if let Some(conn) = self.conns.by_fd(moved.fd as usize) {
                conn.watch = entry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Accepts `n` connections queued on the listener (connects may take a moment to land);
    /// their tokens, in the order accepted.
    fn accept(event_loop: &mut EventLoop, n: usize) -> Vec<u64> {
        let start = Instant::now();
        while event_loop.conns.open() < n {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "nothing to accept"
            );
            event_loop.on_listener(Instant::now());
        }
        let mut tokens: Vec<u64> = event_loop.conns.iter().map(|c| c.token).collect();
        tokens.sort_by_key(|token| token >> 32);
        tokens
    }

    /// Every connection's entry is where it says, and names its descriptor.
    fn assert_entries_match(event_loop: &EventLoop) {
        assert_eq!(
            event_loop.pollfds.len() - FIRST_CONN,
            event_loop.conns.open()
        );
        for conn in event_loop.conns.iter() {
            assert_eq!(
                event_loop.pollfds[conn.watch].fd,
                conn.stream.as_raw_fd(),
                "connection {:x}",
                conn.token
            );
        }
    }

    #[test]
    fn closing_a_connection_moves_the_last_entry_into_its_place() {
        let cli = Cli::parse_from(["server-poll"]);
        let listener = listener::bind(&cli.server).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut event_loop = EventLoop::new(listener, cli.server.config(), 16).unwrap();
        let _clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let tokens = accept(&mut event_loop, 4);
        assert_entries_match(&event_loop);
        event_loop.close(tokens[1]); // from the middle
        assert_entries_match(&event_loop);
        event_loop.close(tokens[3]); // the last, now in the middle
        assert_entries_match(&event_loop);
        event_loop.close(tokens[3]); // again: a stale token changes nothing
        assert_entries_match(&event_loop);
        assert_eq!(event_loop.conns.open(), 2);
    }
}
