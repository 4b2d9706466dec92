//! Mio event loop: the epoll server's model (one thread, non-blocking sockets, serverkit's
//! connection state machine driven by readiness) written over the `mio` crate instead of the
//! raw syscalls: one rung up the abstraction ladder.
//!
//! The ladder, from the lecture's slides (raw `epoll` in C, then "Abstraction! libevent,
//! libev", then Node) to this repository:
//!
//! | rung | here | what it adds for the programmer | what it adds to a request |
//! |---|---|---|---|
//! | raw epoll | `server-epoll` | nothing: `epoll_ctl`, `epoll_wait`, Linux only | - |
//! | mio (libev's place) | `server-mio`, this file | one API over epoll, kqueue, IOCP (`Poll`, `Registry`, `Token`, `Interest`); owned non-blocking socket types; a `Waker` for other threads | a little bookkeeping per event; the same syscalls |
//! | tokio | `server-tokio` | timers, tasks written as straight-line `async` code, a work-stealing scheduler over all cores, wakers, channels | a task per connection, its wake-ups and scheduling |
//! | Node's libuv | `node` (reference row) | libev's place plus a thread pool and timers, under a JavaScript engine | the interpreter |
//!
//! **What mio does not give:** timers (libevent and libev have them; mio's only clock is
//! `Poll::poll`'s timeout, in whole milliseconds), so `delay` and the deadlines use serverkit's
//! heap and timerfd exactly as the epoll server does, the timerfd registered through mio's
//! `SourceFd` (Linux only: where mio stops being portable, this file does too). No scheduler,
//! no tasks: the loop, the connection table and the state machine are ours, as in C.
//!
//! **Where it differs from raw epoll:** mio registers every source **edge-triggered**
//! (`EPOLLET`: an event when readiness *changes*, once), so that its API is the same on kqueue
//! and IOCP. The rule that follows: read until the socket is drained, or an edge is lost and
//! the connection stalls. A read that fills the buffer (`Got::Full`) is followed by another;
//! a short read means the socket held no more, and the next bytes bring a new edge (tokio
//! relies on the same). The listener the same way: a batch of accepts cut short re-arms it
//! (`reregister`). A kept-alive request thus costs what it costs the epoll server: one
//! `epoll_wait`, one `read`, one `write`. **Watch in the benchmark:** server CPU per request
//! within a few per cent of `server-epoll`'s (the ladder's figures: the lecture page); `cpu`
//! serializes, `delay` overlaps, as in every one-thread loop.
//!
//! ```text
//! server-mio --workload delay:100ms
//! ```

use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::nonblocking::{Conns, DeadlineEntry, Got, Step, Waiting};
use serverkit::timers::{Deadlines, Timers};
use serverkit::{listener, shutdown, ServerArgs, ServerConfig};

/// Mio event-loop server: one thread, many connections, through a portable readiness API.
#[derive(Parser)]
#[command(name = "server-mio", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

/// Tokens of the two sources that are not connections. A connection's token is serverkit's
/// (`serial << 32 | descriptor`, never reused), as a mio `Token`.
const LISTENER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);

/// Connections accepted per listener event, so a flood of connects cannot starve the others.
const ACCEPT_BATCH: usize = 64;

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-mio", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    listener.set_nonblocking(true)?; // mio's `from_std` leaves that to us
    shutdown::install(&listener)?;
    let addr = listener.local_addr()?;
    let listener = TcpListener::from_std(listener);
    let event_loop = EventLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce_addr(addr)?;
    event_loop.run()
}

/// The event loop: one listener, its connections, one thread.
struct EventLoop {
    listener: TcpListener,
    poll: Poll,
    max_conns: usize,
    /// Open connections (mio's sockets) by descriptor, each with the interest registered for
    /// it and its deadline entry: [`Watch`].
    conns: Conns<Watch, TcpStream>,
    /// `delay` deadlines, and the timerfd armed for the earliest of them and of `deadlines`.
    timers: Timers,
    /// The connections' read, idle and write deadlines: one live entry per connection.
    deadlines: Deadlines,
    /// When a paused listener (out of descriptors) is tried again.
    retry_listener: Option<Instant>,
    listener_paused: bool,
    stopping: bool,
    date: DateCache,
}

/// What the loop keeps beside a connection.
#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    /// The interest registered with mio (`None`: not registered; mio has no empty interest,
    /// so a connection waiting for its `delay` is deregistered instead).
    interest: Option<Interest>,
    /// When its entry in `deadlines` comes due (`None`: it has none).
    due: Option<Instant>,
}

impl DeadlineEntry for Watch {
    fn due(&mut self) -> &mut Option<Instant> {
        &mut self.due
    }
}

impl EventLoop {
    fn new(mut listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let timers = Timers::new()?;
        let timer_fd = timers.as_fd().as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&timer_fd), TIMER, Interest::READABLE)?;
        Ok(EventLoop {
            listener,
            poll,
            timers,
            max_conns,
            conns: Conns::new(config),
            deadlines: Deadlines::default(),
            retry_listener: None,
            listener_paused: false,
            stopping: false,
            date: DateCache::at(Instant::now()),
        })
    }

    /// Serves until a shutdown is requested and every connection is done.
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown(Instant::now());
            }
            if self.stopping && self.conns.open() == 0 {
                return Ok(());
            }
            self.timers.arm(self.deadlines.next(self.retry_listener))?;
            // No timeout: the timerfd is the clock.
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue, // the shutdown flag
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            self.date.refresh(now);
            for event in &events {
                match event.token() {
                    LISTENER => self.on_listener(now),
                    TIMER => self.on_timer(now),
                    Token(token) => self.on_ready(token as u64, event, now),
                }
            }
        }
    }

    fn on_listener(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            if self.stopping {
                return;
            }
            if self.conns.open() >= self.max_conns {
                return self.pause_listener(true);
            }
            match self.listener.accept() {
                Ok((stream, _)) => self.on_accepted(stream, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return, // drained: the edge re-arms
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE/ENFILE: stop watching the listener until the next tick.
                    serverkit::blocking::report_accept_error(&e);
                    return self.pause_listener(true);
                }
            }
        }
        // The batch ran out with connections perhaps still queued: edge-triggered, no event
        // would come for them until another connect. Re-registering re-arms the edge.
        let _ = self
            .poll
            .registry()
            .reregister(&mut self.listener, LISTENER, Interest::READABLE);
    }

    fn on_accepted(&mut self, stream: TcpStream, now: Instant) {
        let token = self.conns.add(stream, Watch::default(), now);
        self.drive(token, now); // raw protocol: the answer is due at once
    }

    fn on_ready(&mut self, token: u64, event: &Event, now: Instant) {
        if self.conns.get(token).is_none() {
            return; // a closed connection's late event
        }
        if event.is_error() || (event.is_read_closed() && event.is_write_closed()) {
            return self.close(token); // reset, or both directions shut (EPOLLHUP)
        }
        // Edge-triggered: read (and answer) until a read comes back short, or the connection
        // stops waiting to read (it then re-registers, which re-arms the edge). A FIN reported
        // in this event (EPOLLRDHUP) is behind the bytes: read on until the read of 0.
        let fin = event.is_read_closed();
        loop {
            let Some(conn) = self.conns.get(token) else {
                return;
            };
            let mut got = Got::Nothing;
            if conn.waiting == Waiting::Readable && event.is_readable() {
                match self.conns.read_edge(token, now) {
                    Ok(read) => got = read,
                    Err(_) => return self.close(token), // reset: costs nothing more
                }
            }
            self.drive(token, now);
            if !(got == Got::Full || (fin && got == Got::Short)) {
                return;
            }
        }
    }

    /// Does what the connection asks for until something would block; then tells mio what it
    /// waits for (and the deadline heap until when), or closes it.
    fn drive(&mut self, token: u64, now: Instant) {
        let Some((step, deadline)) = self.conns.advance_to_deadline(token, now, &self.date) else {
            return;
        };
        match step {
            Step::Delay(d) => self.timers.add(Instant::now() + d, token),
            Step::Close => return self.close(token),
            Step::Readable | Step::Writable => {}
        }
        self.conns
            .note_deadline(token, deadline, &mut self.deadlines);
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let wanted = match conn.waiting {
            Waiting::Readable => Some(Interest::READABLE),
            Waiting::Writable => Some(Interest::WRITABLE),
            Waiting::Timer => None,
        };
        if conn.watch.interest == wanted {
            return;
        }
        // register is EPOLL_CTL_ADD, reregister EPOLL_CTL_MOD, deregister EPOLL_CTL_DEL, each
        // with EPOLLET (and EPOLLRDHUP for reading) added by mio.
        let registry = self.poll.registry();
        let mio_token = Token(token as usize);
        let result = match (conn.watch.interest, wanted) {
            (None, Some(wanted)) => registry.register(&mut conn.stream, mio_token, wanted),
            (Some(_), Some(wanted)) => registry.reregister(&mut conn.stream, mio_token, wanted),
            (Some(_), None) => registry.deregister(&mut conn.stream),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => conn.watch.interest = wanted,
            Err(_) => self.close(token),
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.timers.fired();
        while let Some(token) = self.timers.pop_due(now) {
            if self.conns.delay_ended(token) {
                self.drive(token, now);
            }
        }
        while let Some(token) = self.conns.next_due(&mut self.deadlines, now) {
            self.drive(token, now);
        }
        if self.retry_listener.is_some_and(|at| now >= at) {
            self.retry_listener = None;
            self.pause_listener(false);
        }
    }

    /// Stops watching the listener (`pause`), or watches it again if it was paused and there
    /// is room for another connection. Registering again reports connections queued meanwhile.
    fn pause_listener(&mut self, pause: bool) {
        let resume = self.listener_paused && !self.stopping && self.conns.open() < self.max_conns;
        if pause != self.listener_paused && (pause || resume) {
            self.listener_paused = pause;
            self.retry_listener = pause.then(|| Instant::now() + TICK);
            let registry = self.poll.registry();
            let _ = if pause {
                registry.deregister(&mut self.listener)
            } else {
                registry.register(&mut self.listener, LISTENER, Interest::READABLE)
            };
        }
    }

    /// Shutdown: stop accepting; every connection finishes what it holds and none waits past
    /// the read timeout from now.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stopping = true;
        if !self.listener_paused {
            let _ = self.poll.registry().deregister(&mut self.listener);
        }
        self.conns.shutdown(now);
        for fd in 0..self.conns.fd_bound() {
            if let Some(token) = self.conns.waiting_on_socket(fd) {
                self.drive(token, now);
            }
        }
    }

    fn close(&mut self, token: u64) {
        // Dropping mio's socket closes the descriptor, which takes it out of the epoll set.
        self.conns.close(token);
        self.pause_listener(false);
        self.conns.prune_deadlines(&mut self.deadlines);
    }
}
