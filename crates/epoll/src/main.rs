//! Epoll event loop: one thread, non-blocking sockets, and a state machine per connection,
//! driven by readiness events from `epoll_wait`.
//!
//! The paper's 2.1.3 and 4.3 (Node's model). **Cost:** no process or thread per client; a
//! connection is a slot in a table and an entry in the kernel's interest list, so ten thousand
//! idle clients cost memory, not scheduling. **Where it breaks:** everything runs on one
//! thread, so a handler that computes (`cpu:D`) stalls every other connection for D: the
//! lesson of this file. It uses one core, however many the machine has. **Watch in the
//! benchmark:** `delay` overlaps perfectly (a timer, never a sleep); `cpu` serializes like the
//! iterative server.
//!
//! How it reads: [`EventLoop::run`] waits for events and dispatches them to
//! `on_listener_ready`, `on_timer` and `on_peer_ready`; `drive` moves one connection as far as
//! it can go without blocking (answer buffered requests, write), then asks epoll for what the
//! connection needs next (`wanted`: readable, writable or nothing). Level-triggered epoll and
//! an interest that only changes when a write is left half done keep it to one `epoll_wait`,
//! one `read` and one `write` per request on a kept-alive connection. A partial read simply
//! leaves bytes in the connection's [`RequestBuffer`]; a partial write leaves them in its
//! [`Outbox`] until the socket is writable again.
//!
//! `delay:D` arms a timer: deadlines wait in a heap, and one timerfd in the epoll set is armed
//! for the earliest (nanosecond precision, unlike `epoll_wait`'s millisecond timeout). The
//! same timerfd ticks every 250 ms to enforce the read and idle timeouts.
//!
//! ```text
//! server-epoll --workload delay:100ms
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{accept4, SockFlag};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use serverkit::blocking::{expired, Expired};
use serverkit::http::{HttpError, Outbox, Request, RequestBuffer, HELLO_BODY};
use serverkit::listener::TICK;
use serverkit::workload::burn_cpu;
use serverkit::{listener, shutdown, Protocol, ServerArgs, ServerConfig, Workload};

/// Event tokens: a connection's token is its descriptor; these two are not descriptors.
const LISTENER: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;

/// Connections accepted per listener event, so a flood of connects cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// Room an answer needs in the outbox (the longest response is under 128 bytes).
const MAX_RESPONSE: usize = 128;

/// Epoll event-loop server: one thread, many connections.
#[derive(Parser)]
#[command(name = "server-epoll", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-epoll", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    let event_loop = EventLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce(&event_loop.listener)?;
    event_loop.run()
}

/// One client connection: its bytes in both directions and where its request stands.
struct Conn {
    stream: TcpStream,
    /// Unique for the life of the server: a timer set for an earlier connection that had the
    /// same descriptor is recognised as stale.
    serial: u64,
    requests: RequestBuffer,
    out: Outbox,
    /// A request waiting for its `delay` timer (`None` inside: the raw protocol's one answer).
    delayed: Option<Option<Request>>,
    close_after_write: bool,
    /// The client closed its side (read returned 0); answer what is pending, then close.
    peer_closed: bool,
    /// Raw protocol: the one answer has been produced.
    raw_answered: bool,
    /// Start of the current wait (idle, request head, or a stalled write), for the timeouts.
    waiting_since: Instant,
    /// What epoll watches for this connection now (`None`: not in the epoll set yet).
    registered: Option<EpollFlags>,
}

impl Conn {
    /// What the connection needs next: to write, to read, or nothing (waiting on a timer with
    /// a full buffer, or on a client that closed).
    fn wanted(&self, protocol: Protocol) -> EpollFlags {
        if !self.out.is_empty() {
            EpollFlags::EPOLLOUT
        } else if protocol == Protocol::Raw || self.peer_closed || self.requests.is_full() {
            EpollFlags::empty()
        } else {
            EpollFlags::EPOLLIN
        }
    }
}

struct EventLoop {
    listener: TcpListener,
    epoll: Epoll,
    timer: TimerFd,
    config: ServerConfig,
    max_conns: usize,
    /// Connections indexed by descriptor: the kernel hands out the lowest free number, so
    /// the table stays as small as the number of open connections.
    conns: Vec<Option<Conn>>,
    open: usize,
    next_serial: u64,
    /// `delay` deadlines: (when, descriptor, serial), earliest first.
    timers: BinaryHeap<Reverse<(Instant, RawFd, u64)>>,
    /// When the timerfd will fire next, if armed.
    armed: Option<Instant>,
    next_sweep: Instant,
    listener_paused: bool,
    stopping: bool,
}

impl EventLoop {
    fn new(listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        epoll.add(&timer, EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
        Ok(EventLoop {
            listener,
            epoll,
            timer,
            config,
            max_conns,
            conns: Vec::new(),
            open: 0,
            next_serial: 0,
            timers: BinaryHeap::new(),
            armed: None,
            next_sweep: Instant::now() + TICK,
            listener_paused: false,
            stopping: false,
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown();
            }
            if self.stopping && self.open == 0 {
                return Ok(());
            }
            self.arm_timer()?;
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue, // a signal: look at the shutdown flag
                Err(e) => return Err(e.into()),
            };
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => self.on_listener_ready(),
                    TIMER => self.on_timer(),
                    fd => self.on_peer_ready(fd as RawFd, event.events()),
                }
            }
        }
    }

    fn on_listener_ready(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            if self.stopping {
                return;
            }
            if self.open >= self.max_conns {
                return self.pause_listener();
            }
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            match accept4(self.listener.as_raw_fd(), flags) {
                Ok(fd) => {
                    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
                    let stream = unsafe { TcpStream::from_raw_fd(fd) };
                    self.on_accepted(stream);
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR | Errno::ECONNABORTED) => {}
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued and level-triggered epoll
                    // would report it again at once; stop watching the listener until the
                    // next tick so the loop does not spin, and serve the others meanwhile.
                    serverkit::blocking::report_accept_error(&io::Error::from(e));
                    return self.pause_listener();
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: TcpStream) {
        let fd = stream.as_raw_fd() as usize;
        if self.conns.len() <= fd {
            self.conns.resize_with(fd + 1, || None);
        }
        self.next_serial += 1;
        self.conns[fd] = Some(Conn {
            stream,
            serial: self.next_serial,
            requests: RequestBuffer::new(),
            out: Outbox::new(),
            delayed: None,
            close_after_write: false,
            peer_closed: false,
            raw_answered: false,
            waiting_since: Instant::now(),
            registered: None,
        });
        self.open += 1;
        // Raw protocol: the answer is due at once. HTTP: wait for the request.
        self.drive(fd as RawFd);
    }

    fn on_peer_ready(&mut self, fd: RawFd, events: EpollFlags) {
        let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
            return;
        };
        if events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            // Reset, or both directions shut: no answer can reach the client any more.
            return self.close(fd);
        }
        if events.contains(EpollFlags::EPOLLIN) && !conn.peer_closed && !conn.requests.is_full() {
            let had_partial = conn.requests.has_partial();
            match conn.stream.read(conn.requests.spare()) {
                Ok(0) => conn.peer_closed = true,
                Ok(n) => {
                    conn.requests.filled(n);
                    if !had_partial {
                        conn.waiting_since = Instant::now();
                    }
                }
                Err(e) if would_block(&e) || interrupted(&e) => {}
                Err(_) => return self.close(fd), // reset: costs nothing more
            }
        }
        self.drive(fd);
    }

    /// Moves a connection as far as it goes without blocking: answer what is buffered, write,
    /// then close it or tell epoll what it waits for.
    fn drive(&mut self, fd: RawFd) {
        let closing = self.stopping;
        let config = self.config;
        let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
            return;
        };
        loop {
            let outbox_full = answer_buffered(conn, &config, closing, fd, &mut self.timers);
            if !conn.out.is_empty() {
                let was_stalled = conn.out.pending().len();
                match conn.stream.write(conn.out.pending()) {
                    Ok(n) => conn.out.sent(n),
                    Err(e) if would_block(&e) || interrupted(&e) => {}
                    Err(_) => return self.close(fd), // EPIPE, reset: the client is gone
                }
                if conn.out.is_empty() || conn.out.pending().len() < was_stalled {
                    conn.waiting_since = Instant::now();
                }
            }
            if !conn.out.is_empty() || !outbox_full {
                break;
            }
        }
        let finished = conn.out.is_empty()
            && conn.delayed.is_none()
            && (conn.close_after_write || conn.peer_closed);
        if finished {
            return self.close(fd);
        }
        let wanted = conn.wanted(config.protocol);
        if conn.registered != Some(wanted) && !(conn.registered.is_none() && wanted.is_empty()) {
            let mut event = EpollEvent::new(wanted, fd as u64);
            let result = match conn.registered {
                None => self.epoll.add(&conn.stream, event),
                Some(_) => self.epoll.modify(&conn.stream, &mut event),
            };
            match result {
                Ok(()) => conn.registered = Some(wanted),
                Err(_) => self.close(fd),
            }
        }
    }

    fn on_timer(&mut self) {
        let _ = self.timer.wait(); // consume the expiry (non-blocking)
        self.armed = None;
        let now = Instant::now();
        while let Some(&Reverse((deadline, fd, serial))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
                continue;
            };
            if conn.serial != serial {
                continue; // the connection this timer was for is gone
            }
            if let Some(request) = conn.delayed.take() {
                let (response, close) = answer(request, self.stopping);
                conn.out.push(response);
                conn.close_after_write |= close;
                self.drive(fd);
            }
        }
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    /// Every tick: close connections past their read or idle timeout; retry a paused listener.
    fn sweep(&mut self, now: Instant) {
        self.next_sweep = now + TICK;
        if self.listener_paused && !self.stopping && self.open < self.max_conns {
            self.listener_paused = false;
            let mut event = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER);
            let _ = self.epoll.modify(&self.listener, &mut event);
        }
        for fd in 0..self.conns.len() {
            let Some(conn) = self.conns[fd].as_mut() else {
                continue;
            };
            if conn.delayed.is_some() {
                continue;
            }
            let stalled_write = !conn.out.is_empty()
                && now.saturating_duration_since(conn.waiting_since) >= self.config.read_timeout;
            match expired(&conn.requests, conn.waiting_since, now, &self.config) {
                _ if stalled_write => self.close(fd as RawFd),
                Some(Expired::Read) if conn.out.is_empty() => {
                    let _ = conn.stream.write(HttpError::Timeout.response());
                    self.close(fd as RawFd);
                }
                Some(Expired::Idle) if conn.out.is_empty() => self.close(fd as RawFd),
                _ => {}
            }
        }
    }

    /// Arms the timerfd for the earliest of the next `delay` deadline and the next sweep.
    fn arm_timer(&mut self) -> io::Result<()> {
        let mut next = self.timers.peek().map(|Reverse((when, _, _))| *when);
        if self.open > 0 || self.listener_paused {
            next = Some(next.map_or(self.next_sweep, |n| n.min(self.next_sweep)));
        }
        let Some(next) = next else { return Ok(()) };
        if self.armed.is_some_and(|armed| armed <= next) {
            return Ok(());
        }
        // A zero interval would disarm the timer: a deadline already past fires in 1 ns.
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        self.timer.set(
            Expiration::OneShot(TimeSpec::from_duration(wait)),
            TimerSetTimeFlags::empty(),
        )?;
        self.armed = Some(next);
        Ok(())
    }

    fn pause_listener(&mut self) {
        if !self.listener_paused {
            self.listener_paused = true;
            let mut event = EpollEvent::new(EpollFlags::empty(), LISTENER);
            let _ = self.epoll.modify(&self.listener, &mut event);
        }
    }

    /// Shutdown: stop accepting; close idle connections; the others close after their answer.
    fn begin_shutdown(&mut self) {
        self.stopping = true;
        let _ = self.epoll.delete(&self.listener);
        for fd in 0..self.conns.len() {
            if let Some(conn) = &self.conns[fd] {
                let busy =
                    conn.delayed.is_some() || !conn.out.is_empty() || conn.requests.has_partial();
                if !busy {
                    self.close(fd as RawFd);
                }
            }
        }
    }

    fn close(&mut self, fd: RawFd) {
        // Dropping the stream closes the descriptor, which also removes it from the epoll set.
        if self.conns[fd as usize].take().is_some() {
            self.open -= 1;
        }
        if self.listener_paused && !self.stopping && self.open < self.max_conns {
            self.listener_paused = false;
            let mut event = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER);
            let _ = self.epoll.modify(&self.listener, &mut event);
        }
    }
}

/// Answers the requests already buffered on `conn`, in order, into its outbox: `hello` at
/// once, `cpu` after burning (stalling the loop), `delay` by arming a timer and stopping there.
/// Returns true when it stopped only because the outbox is full (write, then call again).
fn answer_buffered(
    conn: &mut Conn,
    config: &ServerConfig,
    closing: bool,
    fd: RawFd,
    timers: &mut BinaryHeap<Reverse<(Instant, RawFd, u64)>>,
) -> bool {
    while conn.delayed.is_none() && !conn.close_after_write {
        if conn.out.room() < MAX_RESPONSE {
            return true;
        }
        let request = match config.protocol {
            Protocol::Raw if conn.raw_answered => return false,
            Protocol::Raw => {
                conn.raw_answered = true;
                None
            }
            Protocol::Http => match conn.requests.next_request() {
                Ok(Some(request)) => Some(request),
                Ok(None) => return false,
                Err(e) => {
                    conn.out.push(e.response());
                    conn.close_after_write = true;
                    return false;
                }
            },
        };
        match config.workload {
            Workload::Hello => {}
            Workload::Cpu(d) => burn_cpu(d),
            Workload::Delay(d) => {
                conn.delayed = Some(request);
                timers.push(Reverse((Instant::now() + d, fd, conn.serial)));
                return false;
            }
        }
        let (response, close) = answer(request, closing);
        conn.out.push(response);
        conn.close_after_write = close;
    }
    false
}

/// The bytes that answer `request` (`None`: the raw protocol) and whether to close after them.
/// Decided when the answer is due, so a shutdown during a `delay` still says `close`.
fn answer(request: Option<Request>, closing: bool) -> (&'static [u8], bool) {
    match request {
        Some(request) => request.response(closing),
        None => (HELLO_BODY, true),
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == ErrorKind::Interrupted
}
