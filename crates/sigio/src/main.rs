//! Signal-driven I/O: one thread, non-blocking sockets that raise a real-time signal whenever
//! something happens on them, and a loop that takes those signals one at a time with
//! `sigtimedwait`.
//!
//! The paper's 2.1.4. Each socket (the listener, and each connection as it is accepted) gets
//! three `fcntl` calls: `F_SETOWN` (send the signals to this process), `F_SETSIG` (send
//! `SIGRTMIN`, a real-time signal, instead of plain `SIGIO`) and `O_ASYNC` (start). The
//! signals stay blocked, so no handler ever runs: the loop consumes them synchronously, and
//! a real-time signal's `siginfo` says which descriptor (`si_fd`) and what happened
//! (`si_band`: input, output, error). Real-time signals queue, one per event, where plain
//! signals merge. **Cost:** like epoll, a connection is a slot in a table; unlike epoll, a
//! wake-up brings one event, never a batch (one `sigtimedwait` per event), accepted sockets
//! inherit none of the three `fcntl` calls (three syscalls more per connection than epoll's
//! one `epoll_ctl`), and the kernel raises a signal for every segment that arrives, not once
//! per readiness. **Where it breaks:** the queue of pending real-time signals is bounded
//! (`RLIMIT_SIGPENDING`, per user). When it is full, the kernel drops the event and raises
//! plain `SIGIO` instead, which says only that something was lost. The model's answer is to
//! look at every connection (`on_overflow`): under the load that fills the queue, each
//! wake-up becomes an O(n) scan, `select`'s cost. And everything runs on one thread, so
//! `cpu:D` stalls every connection, as in epoll. **Watch in the benchmark:** server CPU per
//! request against `server-epoll`'s, with keep-alive (the wait per event) and with a
//! connection per request (the `fcntl` calls); `--signal-queue 0` makes every event
//! overflow, so every wake-up scans everything (the fallback, measured on its own).
//!
//! How it reads: `SignalLoop::run` takes one signal and dispatches it to `on_signal` (a
//! descriptor's event), `on_overflow` (`SIGIO`) or `begin_shutdown` (SIGTERM), then serves
//! the deadlines that passed. The protocol is serverkit's
//! [`Connection`](serverkit::connection::Connection), the state machine every model drives,
//! and the connections live in serverkit's [`Conns`], the table by descriptor the other
//! single-threaded loops use (with the pool their buffers are lent from while bytes are in
//! them); this file only decides how a connection waits.
//!
//! **Edge semantics.** A signal says that something happened, once: it does not come again
//! for data that sits unread. So after a signal the loop drives the connection until it
//! would block, and remembers (`readable`, `writable`) what is known. Once every event raises
//! a signal the loop will take, a read that returns less than it asked for has emptied the
//! socket (whatever arrives later raises a new signal), so a kept-alive connection spends no
//! extra read to find `EAGAIN`; a write that the socket took only part of waits for the
//! signal that comes when there is room again. A signal carries a descriptor, not a
//! connection (epoll carries a 64-bit cookie): one queued for a connection that has since
//! closed, its descriptor reused, reaches the new one, so a signal is only ever a hint to
//! try, and a closed socket is learnt from `read` or `write`, never from `si_band`.
//!
//! **Why nobody builds servers this way today.** Around 2000 this was Linux's answer to
//! C10K (phhttpd; the C10K page's "use F_SETSIG"): the first readiness notification that did
//! not cost O(n) per wake-up. epoll (Linux 2.5.44, 2002) kept the good part and dropped the
//! rest: the kernel keeps the interest set, one `epoll_wait` returns a batch, nothing can
//! overflow and be lost, each descriptor carries the cookie the program chose, and the
//! `fcntl` calls per connection become one `epoll_ctl`. Signals are also process-wide state
//! that libraries and threads must share (a signal number, the mask of every thread, and
//! `SIGIO`, whose default action ends the process), and `F_SETSIG`, on which all of this
//! rests, is Linux's alone.
//!
//! Deadlines (`delay:D`, and the 250 ms sweep of read, idle and write deadlines) are
//! serverkit's [`Deadlines`]; the earliest is `sigtimedwait`'s timeout (nanoseconds; a timerfd
//! cannot raise a signal: it refuses `O_ASYNC`). SIGTERM and SIGINT are blocked too, and come
//! out of the same `sigtimedwait`: the loop then drains like the epoll loop, and no handler
//! can race with it. The cached `Date` is the loop's own, refreshed after every wake-up.
//!
//! ```text
//! server-sigio --workload delay:100ms
//! server-sigio --signal-queue 0      # every event overflows: the fallback scan alone
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::sys::socket::{accept4, SockFlag};
use serverkit::connection::Action;
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::nonblocking::{Conns, Waiting};
use serverkit::timers::Deadlines;
use serverkit::workload::burn_cpu;
use serverkit::{listener, ServerArgs, ServerConfig, Workload};

/// `fcntl`'s command that picks the signal a descriptor raises (`<fcntl.h>`, Linux's own,
/// 10 on every architecture), which the libc crate does not define for glibc targets.
const F_SETSIG: libc::c_int = 10;

/// Signal-driven I/O server: O_ASYNC sockets, real-time signals, one thread.
#[derive(Parser)]
#[command(name = "server-sigio", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Lower this process's RLIMIT_SIGPENDING, the bound on queued signals (counted for the
    /// whole user), to N: 0 makes every readiness signal overflow into SIGIO, so every
    /// wake-up takes the fallback scan of every connection.
    #[arg(long, value_name = "N")]
    signal_queue: Option<u64>,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-sigio", start(&cli))
}

fn start(cli: &Cli) -> io::Result<()> {
    // Before anything can raise them: blocked signals wait in the queue for `sigtimedwait`.
    let signals = Signals::block()?;
    if let Some(limit) = cli.signal_queue {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (_, hard) = getrlimit(Resource::RLIMIT_SIGPENDING)?;
        setrlimit(Resource::RLIMIT_SIGPENDING, limit.min(hard), hard)?;
    }
    let args = &cli.server;
    let listener = listener::bind(args)?;
    let addr = listener.local_addr()?;
    let event_loop = SignalLoop::new(listener, signals, args.config(), args.max_conns as usize)?;
    listener::announce_addr(addr)?;
    event_loop.run()
}

/// The signals this loop takes, all blocked: the readiness signal, its overflow (`SIGIO`),
/// and the two that ask for a shutdown.
struct Signals {
    set: libc::sigset_t,
    /// The real-time signal every socket raises (`F_SETSIG`).
    ready: libc::c_int,
    pid: libc::pid_t,
}

/// What a wake-up brought.
enum Woken {
    /// A readiness signal: something happened on descriptor `fd` (`band`: `POLLIN`,
    /// `POLLOUT`, `POLLERR`, `POLLHUP` bits).
    Ready { fd: RawFd, band: libc::c_long },
    /// `SIGIO`: the real-time queue was full and events were lost.
    Overflow,
    /// SIGTERM or SIGINT.
    Stop,
    /// The timeout passed.
    Timeout,
}

/// The part of `siginfo_t` a readiness signal fills (`si_band`, `si_fd`, the `_sigpoll`
/// member of its union), which the libc crate does not name.
#[repr(C)]
struct SigPoll {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    band: libc::c_long,
    fd: libc::c_int,
}

impl Signals {
    /// Blocks the readiness signal, SIGIO, SIGTERM and SIGINT in this thread (the only one).
    fn block() -> io::Result<Signals> {
        let ready = libc::SIGRTMIN();
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to a local set; valid signal numbers.
        unsafe {
            libc::sigemptyset(&mut set);
            for signal in [ready, libc::SIGIO, libc::SIGTERM, libc::SIGINT] {
                libc::sigaddset(&mut set, signal);
            }
        }
        // SAFETY: a valid set; the old mask is not wanted.
        let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        Errno::result(result)?;
        Ok(Signals {
            set,
            ready,
            pid: std::process::id() as libc::pid_t,
        })
    }

    /// Makes `fd` raise the readiness signal, to this process, at every event: the three
    /// `fcntl` calls of signal-driven I/O (owner and signal first, then `O_ASYNC` starts it).
    fn raise_on(&self, fd: RawFd) -> io::Result<()> {
        for (command, arg) in [
            (libc::F_SETOWN, self.pid),
            (F_SETSIG, self.ready),
            (libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC),
        ] {
            // SAFETY: fcntl with an integer argument on a descriptor we own.
            Errno::result(unsafe { libc::fcntl(fd, command, arg) })?;
        }
        Ok(())
    }

    /// Takes the next signal, waiting until `until` at most (for ever if `None`).
    fn wait(&self, until: Option<Instant>) -> io::Result<Woken> {
        let timeout = until.map(|until| {
            let wait = until.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            }
        });
        let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: siginfo_t is plain data that sigtimedwait fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to the set, the info and the timeout (or null: no timeout).
        let signal = unsafe { libc::sigtimedwait(&self.set, &mut info, timeout_ptr) };
        match signal {
            -1 => match Errno::last() {
                Errno::EAGAIN | Errno::EINTR => Ok(Woken::Timeout),
                e => Err(e.into()),
            },
            libc::SIGIO => Ok(Woken::Overflow),
            libc::SIGTERM | libc::SIGINT => Ok(Woken::Stop),
            _ => {
                // SAFETY: a readiness signal's siginfo holds the `_sigpoll` member, laid out
                // as `SigPoll` (repr(C), smaller than siginfo_t).
                let poll = unsafe { &*(&info as *const libc::siginfo_t).cast::<SigPoll>() };
                Ok(Woken::Ready {
                    fd: poll.fd,
                    band: poll.band,
                })
            }
        }
    }
}

/// What the loop knows of a connection's socket, kept beside it in serverkit's [`Conns`] (the
/// table by descriptor every single-threaded loop uses; what the connection waits for, a
/// signal for input or room, or its `delay` deadline, is its [`Waiting`]).
struct Hints {
    /// Input may be waiting: a signal said so, and no read has emptied the socket since.
    readable: bool,
    /// Every event since the last read has raised a signal that the loop will take: true once
    /// a read found the socket empty (`EAGAIN`). False for a new connection (what came
    /// before `O_ASYNC` raised nothing) and after an overflow (events were lost); until then a
    /// short read does not prove the socket empty (an EOF may wait behind the data).
    every_event_signalled: bool,
    /// There may be room to write: no write has been refused since the last signal.
    writable: bool,
}

struct SignalLoop {
    listener: TcpListener,
    signals: Signals,
    max_conns: usize,
    /// Connections indexed by descriptor (what `si_fd` names), each known by a token that is
    /// never reused (its key in the deadlines, so that a deadline of a closed connection
    /// never reaches the next one on its descriptor).
    conns: Conns<Hints>,
    deadlines: Deadlines,
    next_sweep: Instant,
    /// Connections may wait in the backlog whose signals were spent (taken at the cap, lost
    /// in an overflow): accept until `EAGAIN` when there is room.
    backlog: bool,
    /// Out of descriptors: no accept until the next tick.
    listener_paused: bool,
    stopping: bool,
    overflows: u64,
    last_report: Option<Instant>,
    date: DateCache,
}

impl SignalLoop {
    fn new(
        listener: TcpListener,
        signals: Signals,
        config: ServerConfig,
        max_conns: usize,
    ) -> io::Result<Self> {
        signals.raise_on(listener.as_raw_fd())?;
        let now = Instant::now();
        Ok(SignalLoop {
            listener,
            signals,
            max_conns,
            conns: Conns::new(config),
            deadlines: Deadlines::default(),
            next_sweep: now + TICK,
            // Connections that came before O_ASYNC was set raised no signal.
            backlog: true,
            listener_paused: false,
            stopping: false,
            overflows: 0,
            last_report: None,
            date: DateCache::at(now),
        })
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if self.backlog {
                self.accept(now, true);
            }
            if self.stopping && self.conns.open() == 0 {
                return Ok(());
            }
            let ticking = self.conns.open() > 0 || self.listener_paused;
            let woken = self
                .signals
                .wait(self.deadlines.next(ticking.then_some(self.next_sweep)))?;
            let now = Instant::now();
            self.date.refresh(now);
            match woken {
                Woken::Ready { fd, band } => self.on_signal(fd, band, now),
                Woken::Overflow => self.on_overflow(now),
                Woken::Stop => self.begin_shutdown(now),
                Woken::Timeout => {}
            }
            while let Some(token) = self.deadlines.pop_due(now) {
                if let Some(conn) = self.conns.get(token) {
                    conn.http.worked();
                    self.drive(token, now);
                }
            }
            if now >= self.next_sweep {
                self.sweep(now);
            }
        }
    }

    /// A readiness signal for `fd`: mark what it says, and drive the connection until it
    /// would block.
    fn on_signal(&mut self, fd: RawFd, band: libc::c_long, now: Instant) {
        if fd == self.listener.as_raw_fd() {
            return self.accept(now, false); // one signal per connection that arrived
        }
        let Some(conn) = self.conns.by_fd(fd as usize) else {
            return; // a connection closed since: its signals were still queued
        };
        let trouble = libc::c_long::from(libc::POLLERR | libc::POLLHUP);
        if band & (libc::c_long::from(libc::POLLIN) | trouble) != 0 {
            conn.watch.readable = true;
        }
        if band & (libc::c_long::from(libc::POLLOUT) | trouble) != 0 {
            conn.watch.writable = true;
        }
        if conn.waiting != Waiting::Timer {
            let token = conn.token;
            self.drive(token, now);
        }
    }

    /// `SIGIO`: the real-time queue overflowed, and which events were lost is unknown. The
    /// model's fallback: try every connection and the listener, as if each had signalled:
    /// O(n), the cost the signals were meant to save. (Signals still queued are kept: each is
    /// a hint, at worst a read that finds nothing.)
    fn on_overflow(&mut self, now: Instant) {
        self.overflows += 1;
        if self
            .last_report
            .is_none_or(|at| now >= at + Duration::from_secs(1))
        {
            self.last_report = Some(now);
            eprintln!(
                "server-sigio: the signal queue overflowed ({} times so far): scanning every connection",
                self.overflows
            );
        }
        for fd in 0..self.conns.fd_bound() {
            let Some(conn) = self.conns.by_fd(fd) else {
                continue;
            };
            conn.watch.readable = true;
            conn.watch.every_event_signalled = false;
            conn.watch.writable = true;
            if conn.waiting != Waiting::Timer {
                let token = conn.token;
                self.drive(token, now);
            }
        }
        self.backlog = true;
    }

    /// Accepts one connection, or (`until_empty`) every queued one, while there is room.
    fn accept(&mut self, now: Instant, until_empty: bool) {
        loop {
            if self.stopping || self.listener_paused {
                return;
            }
            if self.conns.open() >= self.max_conns {
                self.backlog = true; // its signal is spent: accept it when there is room
                return;
            }
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            match accept4(self.listener.as_raw_fd(), flags) {
                Ok(fd) => {
                    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
                    self.on_accepted(unsafe { TcpStream::from_raw_fd(fd) }, now);
                    if !until_empty {
                        return;
                    }
                }
                Err(Errno::EAGAIN) => {
                    self.backlog = false;
                    return;
                }
                Err(Errno::EINTR | Errno::ECONNABORTED) => {}
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued; try again at the next tick.
                    serverkit::blocking::report_accept_error(&io::Error::from(e));
                    self.listener_paused = true;
                    self.backlog = true;
                    return;
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: TcpStream, now: Instant) {
        // Accepted sockets inherit none of the listener's fcntl settings.
        if self.signals.raise_on(stream.as_raw_fd()).is_err() {
            return; // dropping the stream closes it
        }
        let hints = Hints {
            // The request may have come before O_ASYNC was set, raising no signal: try.
            readable: true,
            every_event_signalled: false,
            writable: true,
        };
        let token = self.conns.add(stream, hints, now);
        self.drive(token, now);
    }

    /// Does what the connection asks for until something would block (or, for a read, is
    /// known to: `readable` is false), then records what it waits for; or closes it. Its
    /// buffers are lent from the table's pool while bytes are in them.
    fn drive(&mut self, token: u64, now: Instant) {
        let date = self.date;
        let Some((conn, pool)) = self.conns.get_with_pool(token) else {
            return;
        };
        let hints = &mut conn.watch;
        conn.waiting = loop {
            match conn.http.next_lent(now, &date, pool) {
                Action::Read { .. } if !hints.readable => break Waiting::Readable,
                Action::Read { .. } => {
                    conn.http.lend(pool);
                    let buf = conn.http.read_buf();
                    let room = buf.len();
                    match conn.stream.read(buf) {
                        Ok(n) => {
                            // Less than asked for: the socket is empty, and what comes next
                            // raises a signal (if every event so far has).
                            let short = n < room && hints.every_event_signalled;
                            hints.readable = n > 0 && !short;
                            conn.http.read(n, now);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            hints.readable = false;
                            hints.every_event_signalled = true;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return self.close(token), // reset: costs nothing more
                    }
                }
                Action::Write { .. } if !hints.writable => break Waiting::Writable,
                Action::Write { .. } => match conn.stream.write(conn.http.to_write()) {
                    Ok(n) => {
                        conn.http.wrote(n, now);
                        if !conn.http.to_write().is_empty() {
                            hints.writable = false; // a signal comes when there is room
                            break Waiting::Writable;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        hints.writable = false;
                        break Waiting::Writable;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return self.close(token), // EPIPE, reset: the client is gone
                },
                Action::Work(Workload::Delay(d)) => {
                    self.deadlines.add(Instant::now() + d, conn.token);
                    break Waiting::Timer;
                }
                Action::Work(workload) => {
                    if let Workload::Cpu(d) = workload {
                        burn_cpu(d); // every other connection waits meanwhile
                    }
                    conn.http.worked();
                }
                Action::CloseWrite => {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                }
                Action::Close => return self.close(token),
            }
        };
    }

    /// Every tick: let each connection see its deadlines (no syscall for one that waits for a
    /// signal); end a pause for lack of descriptors.
    fn sweep(&mut self, now: Instant) {
        self.next_sweep = now + TICK;
        self.listener_paused = false;
        for fd in 0..self.conns.fd_bound() {
            if let Some(token) = self.conns.waiting_on_socket(fd) {
                self.drive(token, now);
            }
        }
    }

    /// Shutdown: stop accepting (new clients are refused, not queued); every connection
    /// finishes what it holds (an idle one closes at once) and none waits past the read
    /// timeout from now.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stopping = true;
        // SAFETY: shutdown(2) on the listener we own.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RD) };
        self.conns.shutdown(now);
        self.sweep(now);
    }

    fn close(&mut self, token: u64) {
        // Dropping the stream closes the descriptor; signals still queued for it are hints
        // that find nothing (or the next connection on this descriptor: a read, no harm).
        self.conns.close(token);
    }
}
