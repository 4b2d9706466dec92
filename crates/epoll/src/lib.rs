//! Epoll event loop: one thread, non-blocking sockets, and a state machine per connection,
//! driven by readiness events from `epoll_wait`.
//!
//! The paper's 2.1.3 and 4.3 (Node's model). **Cost:** no process or thread per client; a
//! connection is a slot in a table and an entry in the kernel's interest list, so ten thousand
//! idle clients cost memory, not scheduling: a slot of under 200 bytes each in this process
//! (its 10 KiB of buffers are lent from the loop's pool only while bytes are in them), a
//! socket and an epoll item in the kernel. **Where it breaks:** everything runs on one
//! thread, so a handler that computes (`cpu:D`) stalls every other connection for D: the
//! lesson of this file. It uses one core, however many the machine has (`server-reuseport`
//! runs one per core). **Watch in the benchmark:** `delay` overlaps perfectly (a timer, never a
//! sleep); `cpu` serializes like the iterative server.
//!
//! How it reads: [`EventLoop::run`] waits for events and dispatches them to `on_listener`,
//! `on_timer` and `on_ready`. The protocol (what to answer, when to close, every deadline) is
//! serverkit's [`Connection`](serverkit::connection::Connection), the same state machine every model drives; this file only
//! decides how a connection *waits*. `drive` lets serverkit's [`Conns::advance`] do
//! what the connection asks until a step would block (the same rule in every single-threaded
//! loop: write, shut down, pay a `cpu` cost on the spot); then the connection's [`Waiting`]
//! state says what for: readable or writable (an interest in the epoll set) or a timer
//! (`delay`). Connections live in serverkit's [`Conns`], a table indexed by descriptor, each
//! known by a token that is never reused (its epoll data and its timer key).
//! Level-triggered epoll (the default: `epoll_wait` reports a descriptor for as long as it is
//! ready, e.g. while unread bytes are in its buffer, not only when it becomes ready, which is
//! edge-triggered `EPOLLET`) and an interest that changes only when a write is left half done
//! keep it to one `epoll_wait`, one `read` and one `write` per request on a kept-alive
//! connection.
//!
//! `delay:D` adds a deadline to serverkit's [`Timers`]: a heap, and one timerfd in the epoll set
//! armed for the earliest (nanosecond precision, unlike `epoll_wait`'s millisecond timeout).
//! The connections' read, idle and write deadlines are in a second heap ([`Deadlines`]), one
//! entry per connection at its current deadline; the same timerfd fires for the earliest of
//! both heaps. A connection is visited when its entry comes due (it closes, answers 408, or
//! its deadline has moved on and it goes back in the heap): the work of a timer wake-up is
//! O(expired), not O(open), as the rest of the loop is O(ready).
//! The cached `Date` header is the loop's own, refreshed after every `epoll_wait`.
//!
//! The loop is this crate's library, so that one loop serves two models: `server-epoll`
//! (`src/main.rs`) runs it on one listener in one process; `server-reuseport` runs one in each
//! of its worker processes, each on a listener of its own.
//!
//! `--transport udp` runs [`udp::DatagramLoop`] instead: one socket, and `recvmmsg`/`sendmmsg` batches.
//!
//! ```text
//! server-epoll --workload delay:100ms
//! ```

pub mod udp;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::nonblocking::{self, Conns, DeadlineEntry, Step, Waiting};
use serverkit::timers::{Deadlines, Timers};
use serverkit::{shutdown, ServerConfig};

/// Event tokens of the two descriptors that are not connections. A connection's token is
/// serverkit's: `serial << 32 | descriptor`,
///
/// ```text
///   bits 63..32: serial (1, 2, 3, ... never reused)   bits 31..0: the socket's descriptor
/// ```
///
/// so the descriptor finds its slot, and the serial tells a closed connection's late event from
/// the next connection on the same descriptor.
const LISTENER: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;

/// Connections accepted per listener event, so a flood of connects cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// The event loop: one listener, its connections, one thread.
pub struct EventLoop {
    listener: TcpListener,
    epoll: Epoll,
    max_conns: usize,
    /// Open connections by descriptor, each with what the loop keeps for it: [`Watch`].
    conns: Conns<Watch>,
    /// `delay` deadlines by token, and the timerfd armed for the earliest of them and of
    /// `deadlines` (and, while the listener is paused, a retry).
    timers: Timers,
    /// The connections' read, idle and write deadlines, by token: at most one live entry per
    /// connection, at the deadline in its [`Watch::due`].
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
    /// The events it is registered for in the epoll set (`None`: not in the set yet).
    interest: Option<EpollFlags>,
    /// When its entry in `deadlines` comes due (`None`: it has none).
    due: Option<Instant>,
}

impl DeadlineEntry for Watch {
    fn due(&mut self) -> &mut Option<Instant> {
        &mut self.due
    }
}

impl EventLoop {
    /// A loop that will accept on `listener` and hold at most `max_conns` connections at once.
    ///
    /// # Errors
    /// If the epoll set or the timerfd cannot be made.
    pub fn new(listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        let timers = Timers::new()?;
        epoll.add(&timers, EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
        let now = Instant::now();
        Ok(EventLoop {
            listener,
            epoll,
            timers,
            max_conns,
            conns: Conns::new(config),
            deadlines: Deadlines::default(),
            retry_listener: None,
            listener_paused: false,
            stopping: false,
            date: DateCache::at(now),
        })
    }

    /// Serves until a shutdown is requested ([`shutdown`]) and every connection is done.
    ///
    /// # Errors
    /// If `epoll_wait` or the timerfd fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown(Instant::now());
            }
            if self.stopping && self.conns.open() == 0 {
                return Ok(());
            }
            // The timerfd wakes us for the earliest deadline: a `delay`'s, a connection's, or
            // the paused listener's retry.
            self.timers.arm(self.deadlines.next(self.retry_listener))?;
            // EpollTimeout::NONE is no timeout: wait until an event comes, however long.
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue, // a signal: look at the shutdown flag
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            self.date.refresh(now);
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => self.on_listener(now),
                    TIMER => self.on_timer(now),
                    token => self.on_ready(token, event.events(), now),
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
            match nonblocking::accept(&self.listener) {
                Ok(Some(stream)) => self.on_accepted(stream, now),
                Ok(None) => return,
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued and level-triggered epoll
                    // would report it again at once; stop watching the listener until the
                    // next tick so the loop does not spin, and serve the others meanwhile.
                    serverkit::blocking::report_accept_error(&e);
                    return self.pause_listener(true);
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: TcpStream, now: Instant) {
        let token = self.conns.add(stream, Watch::default(), now);
        self.drive(token, now); // raw protocol: the answer is due at once
    }

    fn on_ready(&mut self, token: u64, events: EpollFlags, now: Instant) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            // Reset, or both directions shut: no answer can reach the client any more.
            return self.close(token);
        }
        // Read once if it waits for bytes and bytes are there; a failed read is a reset.
        if conn.waiting == Waiting::Readable && events.contains(EpollFlags::EPOLLIN) {
            let read = self.conns.read(token, now);
            if read.is_err() {
                return self.close(token); // reset: costs nothing more
            }
        }
        self.drive(token, now);
    }

    /// Does what the connection asks for until something would block; then tells epoll what it
    /// waits for (and the deadline heap until when), or closes it.
    fn drive(&mut self, token: u64, now: Instant) {
        // A `cpu` cost is paid in there: every other connection waits meanwhile (the lesson).
        // `Step` is what this turn ended on; the connection's `waiting` keeps it for later
        // turns (a `delay` under way, a half-done write).
        let Some((step, deadline)) = self.conns.advance_to_deadline(token, now, &self.date) else {
            return;
        };
        match step {
            Step::Delay(d) => self.timers.add(Instant::now() + d, token),
            Step::Close => return self.close(token),
            Step::Readable | Step::Writable => {}
        }
        // One entry per connection in the deadline heap, at its earliest deadline.
        self.conns
            .note_deadline(token, deadline, &mut self.deadlines);
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let wanted = match conn.waiting {
            Waiting::Readable => EpollFlags::EPOLLIN,
            Waiting::Writable => EpollFlags::EPOLLOUT,
            Waiting::Timer => EpollFlags::empty(),
        };
        let interest = conn.watch.interest;
        if interest == Some(wanted) || (interest.is_none() && wanted.is_empty()) {
            return;
        }
        // epoll_ctl(2): `add` is EPOLL_CTL_ADD, `modify` EPOLL_CTL_MOD, `delete` EPOLL_CTL_DEL.
        let mut event = EpollEvent::new(wanted, token);
        let result = match interest {
            None => self.epoll.add(&conn.stream, event),
            Some(_) => self.epoll.modify(&conn.stream, &mut event),
        };
        match result {
            Ok(()) => conn.watch.interest = Some(wanted),
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
        // The connections whose deadline entry came due: each one closes, answers 408, or
        // (its deadline moved on since the entry was made) gets an entry at the new one.
        while let Some(token) = self.conns.next_due(&mut self.deadlines, now) {
            self.drive(token, now);
        }
        if self.retry_listener.is_some_and(|at| now >= at) {
            self.retry_listener = None;
            self.pause_listener(false);
        }
    }

    /// Lets every connection waiting on its socket see its deadline now: at shutdown, when
    /// every deadline moves to the read timeout from now at the latest. O(open), once.
    fn drive_all(&mut self, now: Instant) {
        for fd in 0..self.conns.fd_bound() {
            if let Some(token) = self.conns.waiting_on_socket(fd) {
                self.drive(token, now);
            }
        }
    }

    /// Stops watching the listener (`pause`), or watches it again if it was paused and there
    /// is room for another connection.
    fn pause_listener(&mut self, pause: bool) {
        let resume = self.listener_paused && !self.stopping && self.conns.open() < self.max_conns;
        if pause != self.listener_paused && (pause || resume) {
            self.listener_paused = pause;
            // Paused: try again in a tick, in case descriptors were what ran out.
            self.retry_listener = pause.then(|| Instant::now() + TICK);
            let flags = if pause {
                EpollFlags::empty()
            } else {
                EpollFlags::EPOLLIN
            };
            let _ = self
                .epoll
                .modify(&self.listener, &mut EpollEvent::new(flags, LISTENER));
        }
    }

    /// Shutdown: stop accepting; every connection finishes what it holds (an idle one closes
    /// at once) and none waits past the read timeout from now.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stopping = true;
        let _ = self.epoll.delete(&self.listener);
        self.conns.shutdown(now);
        self.drive_all(now);
    }

    fn close(&mut self, token: u64) {
        // Closing the descriptor also takes it out of the epoll set.
        self.conns.close(token);
        self.pause_listener(false);
        self.conns.prune_deadlines(&mut self.deadlines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serverkit::{listener, ServerArgs};
    use std::time::Duration;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    /// Held by every test here: they run in parallel threads of one process, which share its
    /// descriptor table, and one of them needs the descriptor it frees to be the next one given.
    static DESCRIPTORS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Accepts what is queued on the listener (the connect may take a moment to land).
    fn accept_one(event_loop: &mut EventLoop) -> u64 {
        let open = event_loop.conns.open();
        let start = Instant::now();
        while event_loop.conns.open() == open {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "nothing to accept"
            );
            event_loop.on_listener(Instant::now());
        }
        let conn = event_loop.conns.iter().max_by_key(|c| c.token >> 32);
        conn.unwrap().token
    }

    #[test]
    fn an_event_for_a_closed_connection_never_reaches_the_next_on_its_descriptor() {
        let _alone = DESCRIPTORS.lock().unwrap_or_else(|e| e.into_inner());
        let cli = Cli::parse_from(["server-epoll"]);
        let listener = listener::bind(&cli.server).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut event_loop = EventLoop::new(listener, cli.server.config(), 16).unwrap();
        let _first = TcpStream::connect(addr).unwrap();
        let old = accept_one(&mut event_loop);
        // The client's socket first, so that the descriptor freed next is the lowest.
        let _second = TcpStream::connect(addr).unwrap();
        event_loop.close(old);
        let new = accept_one(&mut event_loop);
        assert_eq!(
            new & 0xffff_ffff,
            old & 0xffff_ffff,
            "the descriptor is reused"
        );
        assert_ne!(new, old, "the token is not");
        // A HUP reported for the closed connection, late in the same batch of events.
        event_loop.on_ready(old, EpollFlags::EPOLLHUP, Instant::now());
        assert_eq!(
            event_loop.conns.open(),
            1,
            "the new connection was closed by a stale event"
        );
    }

    #[test]
    fn deadlines_are_one_heap_entry_per_connection_visited_when_due() {
        let _alone = DESCRIPTORS.lock().unwrap_or_else(|e| e.into_inner());
        use std::io::Write;
        let cli = Cli::parse_from([
            "server-epoll",
            "--read-timeout",
            "2s",
            "--idle-timeout",
            "5s",
        ]);
        let listener = listener::bind(&cli.server).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut event_loop = EventLoop::new(listener, cli.server.config(), 16).unwrap();
        let mut busy = TcpStream::connect(addr).unwrap();
        let busy_token = accept_one(&mut event_loop);
        let _silent = TcpStream::connect(addr).unwrap();
        accept_one(&mut event_loop);
        assert_eq!(
            event_loop.deadlines.len(),
            2,
            "one entry each, at the first byte's deadline"
        );
        // Requests served on a kept-alive connection move its deadline later: no new entry.
        for _ in 0..3 {
            busy.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            event_loop.on_ready(busy_token, EpollFlags::EPOLLIN, Instant::now());
        }
        assert_eq!(event_loop.deadlines.len(), 2);
        // Past the first-byte deadline: the silent one closes; the busy one's entry was its
        // first-byte deadline too, so it is visited, and goes back in at its idle deadline.
        event_loop.on_timer(Instant::now() + Duration::from_millis(2100));
        assert_eq!(
            event_loop.conns.open(),
            1,
            "the silent connection is closed"
        );
        assert!(event_loop.conns.get(busy_token).is_some());
        assert_eq!(event_loop.deadlines.len(), 1);
        event_loop.on_timer(Instant::now() + Duration::from_millis(5100));
        assert_eq!(event_loop.conns.open(), 0, "idle past its idle timeout");
    }
}
