//! io_uring event loop: one thread and a state machine per connection, like the epoll server,
//! but driven by *completions*: the loop asks the kernel to accept, receive and send, and the
//! kernel reports each operation done, with its result, through a ring shared with the process.
//!
//! The paper's 2.1.5 (asynchronous I/O), as Linux offers it since 5.1. **Cost:** a connection
//! is a slot in a table and an operation pending in the kernel; between requests it holds no
//! buffer at all. **Where it breaks:** like epoll, one thread: `cpu:D` stalls everyone for D.
//! **Watch in the benchmark:** server CPU and syscalls per request against epoll, most at
//! keep-alive `-c 100` (`scripts/syscalls.sh`); memory per idle keep-alive connection.
//!
//! What it saves against epoll:
//! - **Syscalls.** epoll pays `epoll_wait`, then a `read` and a `write` per request: about two
//!   syscalls a request however busy it is. Here one `io_uring_enter` submits every send the
//!   last batch produced and waits for the next batch of completions: two per request at `-c 1`
//!   (the send's completion wakes the loop too), a small fraction of one when many connections
//!   are busy. A multishot accept and a multishot receive stay armed across requests, so
//!   nothing is re-armed per request either.
//! - **Wake-ups.** With deferred task running (Linux 6.1) the kernel finishes the work of
//!   completions only when the loop waits, in one go: it is never interrupted mid-batch.
//! - **Memory.** A receive takes a buffer from a ring of buffers the loop provides, only when
//!   data has arrived; so an idle connection holds no receive buffer, and not even the
//!   10 KiB state of serverkit's [`Connection`]: it is given back between requests
//!   ([`Connection::is_idle`]) and taken again when bytes arrive. An idle connection costs
//!   its 64-byte slot here (epoll's is a 160-byte slot: its state stays, its buffers are lent
//!   the same way) plus, in the kernel, its socket and its pending receive. Fixed costs
//!   instead: the ring's buffers, 2 MiB touched as used, and the states kept for reuse, as
//!   many as were ever busy at once.
//!
//! What it costs:
//! - **Copies.** The same as epoll, plus one small `memcpy` per request: from the ring's
//!   buffer into the connection's request buffer, where the shared parser reads it.
//! - **Buffer ownership.** Memory handed to the kernel stays the kernel's until the operation
//!   completes: a connection's outbox during a send (so its state is never reused until the
//!   send's completion comes back, even after a close); a ring buffer until the loop gives it
//!   back (every completion that carries one returns it, even for a connection already
//!   closed). And the kernel receives whatever arrives: bytes the connection cannot take yet
//!   (pipelined behind a send) are copied aside and its receive is cancelled until it took
//!   them; backpressure, which epoll gets from leaving bytes in the socket, is the loop's job.
//! - **Complexity.** Every operation has a lifetime to track (armed, cancelled, done), and a
//!   close is a cancel and a close *operation*, not a `close(2)`: a socket with a receive still
//!   pending would never send its FIN. This file is twice the epoll one.
//! - **Kernel version and policy.** It needs Linux 6.0 (multishot receive; 6.1 for deferred
//!   task running), and many sandboxes refuse io_uring (the `kernel.io_uring_disabled` sysctl,
//!   Docker's default seccomp profile): it then says so in one line and exits 1.
//!
//! `delay:D` is a timeout operation on the ring, never a sleeping thread; a timeout every 250 ms
//! sweeps the read, idle and write deadlines (a send past its deadline is cancelled, then the
//! connection decides). Running out of descriptors ends the multishot accept with `EMFILE`:
//! it is armed again at the next sweep, never in a loop. Past `--max-conns`, connections the
//! multishot accept handed over before its cancel landed wait unread in a queue, as they would
//! in the backlog. SIGTERM: serverkit's handler sets the flag and shuts the listener down,
//! which interrupts the wait (`EINTR`) or ends the accept; the loop then looks at the flag.
//! The cached `Date` header is the loop's own, refreshed after every wait.
//!
//! ```text
//! server-uring --workload delay:100ms
//! ```

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use clap::Parser;
use io_uring::types::{BufRingEntry, Fd, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use serverkit::blocking::report_accept_error;
use serverkit::connection::{Action, Connection};
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::workload::burn_cpu;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig, Workload};

/// Submission and completion queue sizes. Completions are drained every turn; a burst larger
/// than the completion queue is kept by the kernel, not lost, only slower.
const SQ_ENTRIES: u32 = 2048;
const CQ_ENTRIES: u32 = 8192;

/// The provided buffers: `BUFFERS` of `BUF_SIZE` bytes (2 MiB in all, touched as used), shared
/// by every connection. A request is far smaller than a buffer; larger input takes several.
/// One batch of completions holds at most one receive per busy connection (more for large
/// input): if one empties the ring, the receives that found none end (`ENOBUFS`) and are armed
/// again once the batch gave its buffers back.
const BUFFERS: u16 = 2048;
const BUF_SIZE: usize = 1024;
const BUF_GROUP: u16 = 0;

/// What a completion is for, in the top byte of its user data; the token is below it.
const ACCEPT: u64 = 1 << 56;
const SWEEP: u64 = 2 << 56;
const RECV: u64 = 3 << 56;
const SEND: u64 = 4 << 56;
const DELAY: u64 = 5 << 56;
/// A cancel or a close: nothing to do when it completes (a success posts nothing at all).
const OTHER: u64 = 6 << 56;
const OP: u64 = 0xff << 56;

/// A token is the descriptor (24 bits) and a serial number (32 bits): unique, so that a
/// completion for a closed connection never reaches the next one on its descriptor.
const FD_BITS: u32 = 24;

/// io_uring event-loop server: one thread, many connections, completions.
#[derive(Parser)]
#[command(name = "server-uring", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-uring", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    let event_loop = EventLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce(&event_loop.listener)?;
    event_loop.run()
}

/// What a connection waits for between two turns of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Received bytes (its multishot receive is armed, or will be).
    Readable,
    /// Its send to complete.
    Sent,
    /// Its `delay` timeout.
    Timer,
}

/// The connection's multishot receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// Not armed: armed again when the connection wants to read.
    Off,
    /// Armed: each arrival of data completes it once more.
    Armed,
    /// Cancelled by the loop; its last completion is still to come.
    Cancelled,
}

/// One client connection.
struct Conn {
    /// Its descriptor and serial number (see [`FD_BITS`]).
    token: u64,
    /// Its protocol state; `None` while it is idle between requests.
    http: Option<Box<Connection>>,
    waiting: Waiting,
    /// When the current wait ends (for an idle connection: the idle timeout).
    deadline: Instant,
    recv: Recv,
    /// A send is in flight: the kernel reads the outbox, the state must stay put.
    sending: bool,
    /// Bytes received before the connection could take them (pipelined behind a send, or
    /// arriving during a `delay`): copied out of the ring buffer, which goes back at once.
    held: Vec<u8>,
    /// The client closed its side; told to the connection after the held bytes.
    eof: bool,
    /// Closed while a send was in flight: finished when the send's completion comes back.
    closing: bool,
}

struct EventLoop {
    /// Declared first, so dropped first: no operation outlives what it points at.
    ring: IoUring,
    listener: TcpListener,
    config: ServerConfig,
    max_conns: usize,
    /// Connections indexed by descriptor, as in the epoll server.
    conns: Vec<Option<Conn>>,
    open: usize,
    /// States given back by idle and closed connections, for the next ones. Boxed: a state
    /// moves between this list and a slot's `Option<Box<Connection>>` (8 bytes, so an idle
    /// slot stays small) without being copied or allocated again.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Connection>>,
    /// Accepted past `--max-conns`, not served yet.
    parked: VecDeque<OwnedFd>,
    next_serial: u64,
    buffers: Buffers,
    /// The kernel reads a timeout's duration when it takes the entry: kept at a fixed address.
    times: Box<[Timespec; 2]>,
    accepting: bool,
    listener_paused: bool,
    sweep_armed: bool,
    stopping: bool,
    date: DateCache,
}

impl EventLoop {
    fn new(listener: TcpListener, config: ServerConfig, max_conns: usize) -> io::Result<Self> {
        let (ring, mode) = setup_ring()?;
        let buffers = Buffers::new();
        // SAFETY: the ring memory is page-aligned, holds BUFFERS entries, and is never freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.ring as u64,
                BUFFERS,
                BUF_GROUP,
                0,
            )
        }
        .map_err(unavailable)?;
        eprintln!(
            "server-uring: io_uring with {mode}; multishot accept and receive, \
             {BUFFERS} provided buffers of {BUF_SIZE} B"
        );
        let delay = match config.workload {
            Workload::Delay(d) => d,
            _ => TICK, // never used
        };
        let now = Instant::now();
        Ok(EventLoop {
            ring,
            listener,
            config,
            max_conns,
            conns: Vec::new(),
            open: 0,
            spare: Vec::new(),
            parked: VecDeque::new(),
            next_serial: 0,
            buffers,
            times: Box::new([TICK.into(), delay.into()]),
            accepting: false,
            listener_paused: false,
            sweep_armed: false,
            stopping: false,
            date: DateCache::at(now),
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut completions = Vec::with_capacity(CQ_ENTRIES as usize);
        loop {
            if shutdown::requested() && !self.stopping {
                self.begin_shutdown(Instant::now());
            }
            if self.stopping && self.open == 0 {
                self.ring.submit()?; // the last closes
                return Ok(());
            }
            self.arm_accept_and_sweep();
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // A signal (look at the shutdown flag), or completions to drain first.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            self.date.refresh(now);
            completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for (user_data, result, flags) in completions.drain(..) {
                let token = user_data & !OP;
                match user_data & OP {
                    ACCEPT => self.on_accept(result, flags, now),
                    SWEEP => {
                        self.sweep_armed = false;
                        self.sweep(now);
                    }
                    RECV => self.on_recv(token, result, flags, now),
                    SEND => self.on_send(token, result, now),
                    DELAY => self.on_delay(token, now),
                    _ => {}
                }
            }
        }
    }

    /// Arms the multishot accept if it ended and may go on, and the sweep if it is needed.
    fn arm_accept_and_sweep(&mut self) {
        if !self.accepting && !self.listener_paused && !self.stopping {
            let fd = Fd(self.listener.as_raw_fd());
            let accept = opcode::AcceptMulti::new(fd).flags(libc::SOCK_CLOEXEC);
            push(&mut self.ring, accept.build().user_data(ACCEPT));
            self.accepting = true;
        }
        if (self.open > 0 || self.listener_paused) && !self.sweep_armed {
            let sweep = opcode::Timeout::new(&self.times[0]);
            push(&mut self.ring, sweep.build().user_data(SWEEP));
            self.sweep_armed = true;
        }
    }

    fn on_accept(&mut self, result: i32, flags: u32, now: Instant) {
        if !cqueue::more(flags) {
            self.accepting = false; // armed again next turn, unless paused
        }
        if result >= 0 {
            // SAFETY: the kernel just made this descriptor for us; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            if self.stopping {
                return; // closed: the server no longer accepts
            }
            if self.open >= self.max_conns {
                self.parked.push_back(fd);
                return self.pause_listener(true);
            }
            return self.on_accepted(fd, now);
        }
        match -result {
            libc::ECANCELED | libc::EINTR | libc::ECONNABORTED => {}
            libc::EINVAL if shutdown::requested() => {} // the handler shut the listener down
            errno => {
                // EMFILE/ENFILE: the connection stays queued, and an accept armed again would
                // fail at once; wait for the next sweep so the loop does not spin.
                report_accept_error(&io::Error::from_raw_os_error(errno));
                self.pause_listener(true);
            }
        }
    }

    fn on_accepted(&mut self, fd: OwnedFd, now: Instant) {
        let fd = fd.into_raw_fd(); // closed by a close operation in `finish`
        if fd as u64 >= 1 << FD_BITS {
            // SAFETY: ours, just accepted; a descriptor this large cannot be in a token.
            unsafe { libc::close(fd) };
            return;
        }
        let fd = fd as usize;
        if self.conns.len() <= fd {
            self.conns.resize_with(fd + 1, || None);
        }
        self.next_serial = (self.next_serial + 1) & 0xffff_ffff;
        let token = (self.next_serial << FD_BITS) | fd as u64;
        self.conns[fd] = Some(Conn {
            token,
            http: None,
            waiting: Waiting::Readable,
            deadline: now,
            recv: Recv::Off,
            sending: false,
            held: Vec::new(),
            eof: false,
            closing: false,
        });
        self.open += 1;
        self.drive(token, now); // arms its receive; raw protocol: the answer is due at once
    }

    fn on_recv(&mut self, token: u64, result: i32, flags: u32, now: Instant) {
        let buffer = cqueue::buffer_select(flags);
        let Some(conn) = find(&mut self.conns, token) else {
            if let Some(bid) = buffer {
                self.buffers.give_back(bid); // for a connection closed meanwhile
            }
            return;
        };
        if !cqueue::more(flags) {
            conn.recv = Recv::Off;
        }
        match result {
            n if n > 0 => {
                let bid = buffer.expect("a receive with data carries its buffer");
                let bytes = self.buffers.bytes(bid, n as usize);
                if conn.waiting == Waiting::Readable && conn.held.is_empty() && !conn.closing {
                    // The usual case: straight into the connection's request buffer.
                    let http = conn
                        .http
                        .get_or_insert_with(|| state(&mut self.spare, self.config, now));
                    let taken = take(http, bytes, now);
                    conn.held.extend_from_slice(&bytes[taken..]);
                } else if !conn.closing {
                    conn.held.extend_from_slice(bytes);
                }
                self.buffers.give_back(bid);
            }
            0 => conn.eof = true,
            // The ring ran dry, or our cancel: armed again when the connection reads.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => {}
            _ => return self.close(token, now), // reset: costs nothing more
        }
        if conn.closing {
            return;
        }
        if conn.waiting == Waiting::Readable {
            self.drive(token, now);
        }
        // Bytes the connection cannot take now are held; stop receiving more until it took them,
        // so a client that sends without reading costs at most a batch of bytes, not the ring.
        if let Some(conn) = find(&mut self.conns, token) {
            if !conn.held.is_empty() && conn.recv == Recv::Armed && !conn.closing {
                push(&mut self.ring, cancel(RECV | token));
                conn.recv = Recv::Cancelled;
            }
        }
    }

    fn on_send(&mut self, token: u64, result: i32, now: Instant) {
        let Some(conn) = find(&mut self.conns, token) else {
            return;
        };
        conn.sending = false;
        if conn.closing {
            return self.finish(token, now);
        }
        match result {
            n if n >= 0 => {
                let http = conn
                    .http
                    .as_mut()
                    .expect("a sending connection has its state");
                http.wrote(n as usize, now);
            }
            e if e == -libc::ECANCELED => {} // past its deadline: the connection decides
            _ => return self.close(token, now), // EPIPE, reset: the client is gone
        }
        self.drive(token, now);
    }

    fn on_delay(&mut self, token: u64, now: Instant) {
        let Some(conn) = find(&mut self.conns, token) else {
            return;
        };
        if let (Waiting::Timer, Some(http)) = (conn.waiting, conn.http.as_mut()) {
            http.worked();
            self.drive(token, now);
        }
    }

    /// Does what the connection asks for until it must wait: feeds it the bytes it holds, or
    /// arms its receive, submits its send or its `delay` timeout; or closes it.
    fn drive(&mut self, token: u64, now: Instant) {
        let Some(conn) = find(&mut self.conns, token) else {
            return;
        };
        if conn.closing || conn.sending {
            return; // a send is in flight: the kernel reads the outbox
        }
        let fd = Fd((token & ((1 << FD_BITS) - 1)) as i32);
        loop {
            let http = conn
                .http
                .get_or_insert_with(|| state(&mut self.spare, self.config, now));
            match http.next(now, &self.date) {
                Action::Read { deadline } => {
                    let taken = take(http, &conn.held, now);
                    if taken > 0 {
                        conn.held.drain(..taken);
                        if conn.held.is_empty() {
                            conn.held = Vec::new(); // an idle connection holds no memory
                        }
                        continue;
                    }
                    if conn.eof {
                        http.read(0, now);
                        continue;
                    }
                    if http.is_idle() {
                        self.spare.extend(conn.http.take()); // taken again when bytes arrive
                    }
                    if conn.recv == Recv::Off && conn.held.is_empty() {
                        let recv = opcode::RecvMulti::new(fd, BUF_GROUP);
                        push(&mut self.ring, recv.build().user_data(RECV | token));
                        conn.recv = Recv::Armed;
                    }
                    conn.waiting = Waiting::Readable;
                    conn.deadline = deadline;
                    return;
                }
                Action::Write { deadline } => {
                    let out = http.to_write();
                    let send = opcode::Send::new(fd, out.as_ptr(), out.len() as u32)
                        .flags(libc::MSG_NOSIGNAL);
                    push(&mut self.ring, send.build().user_data(SEND | token));
                    conn.sending = true;
                    conn.waiting = Waiting::Sent;
                    conn.deadline = deadline;
                    return;
                }
                Action::Work(Workload::Delay(_)) => {
                    let timeout = opcode::Timeout::new(&self.times[1]);
                    push(&mut self.ring, timeout.build().user_data(DELAY | token));
                    conn.waiting = Waiting::Timer;
                    return;
                }
                Action::Work(workload) => {
                    if let Workload::Cpu(d) = workload {
                        burn_cpu(d); // every other connection waits meanwhile: the lesson
                    }
                    http.worked();
                }
                Action::CloseWrite => {
                    // SAFETY: shutdown(2) on the connection's own open descriptor.
                    unsafe { libc::shutdown(fd.0, libc::SHUT_WR) };
                }
                Action::Close => return self.close(token, now),
            }
        }
    }

    /// Every tick: each connection sees its deadlines; a send past its own is cancelled (the
    /// connection then decides); an idle connection past the idle timeout is closed; a paused
    /// listener is retried.
    fn sweep(&mut self, now: Instant) {
        self.pause_listener(false);
        for fd in 0..self.conns.len() {
            let Some(conn) = &self.conns[fd] else {
                continue;
            };
            let (token, due) = (conn.token, now >= conn.deadline);
            match conn.waiting {
                Waiting::Timer => {}
                Waiting::Sent if due => push(&mut self.ring, cancel(SEND | token)), // a repeat is harmless
                Waiting::Sent => {}
                Waiting::Readable if conn.http.is_none() => {
                    if due || self.stopping {
                        self.close(token, now);
                    }
                }
                Waiting::Readable => self.drive(token, now),
            }
        }
    }

    /// Stops accepting (`pause`), or accepts again if paused and there is room.
    fn pause_listener(&mut self, pause: bool) {
        if pause {
            if self.accepting && !self.listener_paused {
                push(&mut self.ring, cancel(ACCEPT));
            }
            self.listener_paused = true;
        } else if self.open < self.max_conns && self.parked.is_empty() {
            self.listener_paused = false;
        }
    }

    /// Shutdown: stop accepting; every connection finishes what it holds (an idle one closes
    /// at once) and none waits past the read timeout from now.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stopping = true;
        if self.accepting {
            push(&mut self.ring, cancel(ACCEPT));
        }
        self.parked.clear(); // never served, like connections left in the backlog
        let stop_by = now + self.config.read_timeout;
        for conn in self.conns.iter_mut().flatten() {
            if let Some(http) = conn.http.as_mut() {
                http.shutdown(now);
            }
            conn.deadline = conn.deadline.min(stop_by);
        }
        self.sweep(now);
    }

    /// Closes a connection; one with a send in flight is finished when the send is back.
    fn close(&mut self, token: u64, now: Instant) {
        let Some(conn) = find(&mut self.conns, token) else {
            return;
        };
        conn.closing = true;
        conn.held = Vec::new();
        if conn.sending {
            push(&mut self.ring, cancel(SEND | token));
            return;
        }
        self.finish(token, now);
    }

    /// Cancels the receive and closes the socket, both through the ring, in this order: a
    /// socket with a receive pending would stay open, without a FIN, after a plain close.
    /// Completions of the receive still to come find no connection and give back their buffers.
    fn finish(&mut self, token: u64, now: Instant) {
        if find(&mut self.conns, token).is_none() {
            return;
        }
        let fd = (token & ((1 << FD_BITS) - 1)) as usize;
        let conn = self.conns[fd].take().expect("found above");
        if conn.recv == Recv::Armed {
            push(&mut self.ring, cancel(RECV | token));
        }
        let close = opcode::Close::new(Fd(fd as i32)).build();
        push(&mut self.ring, quiet(close));
        self.spare.extend(conn.http);
        self.open -= 1;
        if !self.stopping {
            if let Some(parked) = self.parked.pop_front() {
                return self.on_accepted(parked, now);
            }
        }
        self.pause_listener(false);
    }
}

/// The connection behind `token`, if it is still the one the token was made for.
fn find(conns: &mut [Option<Conn>], token: u64) -> Option<&mut Conn> {
    let slot = conns.get_mut((token & ((1 << FD_BITS) - 1)) as usize)?;
    slot.as_mut().filter(|conn| conn.token == token)
}

/// A state for a connection that has none: a spare one reset, or a new one.
#[allow(clippy::vec_box)]
fn state(spare: &mut Vec<Box<Connection>>, config: ServerConfig, now: Instant) -> Box<Connection> {
    match spare.pop() {
        Some(mut http) => {
            http.reset(now);
            http
        }
        None => Box::new(Connection::new(config, now)),
    }
}

/// Copies what fits of `bytes` into the connection's request buffer; how much that was.
fn take(http: &mut Connection, bytes: &[u8], now: Instant) -> usize {
    let room = http.read_buf();
    let n = bytes.len().min(room.len());
    if n > 0 {
        room[..n].copy_from_slice(&bytes[..n]);
        http.read(n, now);
    }
    n
}

/// A cancel of the operation with `user_data`.
fn cancel(user_data: u64) -> squeue::Entry {
    quiet(opcode::AsyncCancel::new(user_data).build())
}

/// An entry that posts a completion only if it fails (and that one is ignored).
fn quiet(entry: squeue::Entry) -> squeue::Entry {
    entry.user_data(OTHER).flags(squeue::Flags::SKIP_SUCCESS)
}

/// Queues `entry`, submitting first if the submission queue is full.
fn push(ring: &mut IoUring, entry: squeue::Entry) {
    loop {
        // SAFETY: the entries built in this file point only at memory that outlives their
        // operation: a connection's outbox (its state is kept until the send completes), the
        // timeouts' durations (read when the kernel takes the entry, owned by the loop), and
        // the provided buffers (never freed).
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return;
        }
        let _ = ring.submit();
    }
}

/// The ring, with the best way of running completions' work this kernel offers, and its name.
fn setup_ring() -> io::Result<(IoUring, &'static str)> {
    type Flags = fn(&mut io_uring::Builder) -> &mut io_uring::Builder;
    let modes: [(&str, Flags); 3] = [
        ("single issuer, deferred task running", |b| {
            b.setup_single_issuer().setup_defer_taskrun()
        }),
        ("cooperative task running", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag()
        }),
        ("default task running (interrupts on completions)", |b| b),
    ];
    let mut refused = io::Error::from_raw_os_error(libc::EINVAL);
    for (name, flags) in modes {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(CQ_ENTRIES).setup_submit_all();
        match flags(&mut builder).build(SQ_ENTRIES) {
            Ok(ring) => {
                check_kernel()?;
                return Ok((ring, name));
            }
            // A flag this kernel does not know: try with fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => refused = e,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(unavailable(refused))
}

/// Multishot receive came with Linux 6.0.
fn check_kernel() -> io::Result<()> {
    // SAFETY: uname(2) fills the zeroed struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::uname(&mut name) };
    // SAFETY: the kernel writes a NUL-terminated release string.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) }.to_string_lossy();
    let mut numbers = release
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < (6, 0) {
        let old = io::Error::other(format!("kernel {release} is older than 6.0"));
        return Err(unavailable(old));
    }
    Ok(())
}

/// The one line a kernel or sandbox that refuses io_uring gets.
fn unavailable(e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "io_uring is not available here ({e}): disabled by the kernel.io_uring_disabled \
             sysctl, refused by a seccomp filter (as in many containers), or a kernel older \
             than 6.0; the other servers do not need it"
        ),
    )
}

/// The provided-buffer ring: the kernel takes a buffer from its head when data arrives for a
/// receive; the loop copies the bytes out and gives it back at the tail in the same turn, so
/// the ring runs dry only if one batch of receives outnumbers its buffers. The memory
/// lives as long as the process: the kernel may use it until the ring is torn down.
struct Buffers {
    /// `BUFFERS` entries, page-aligned, shared with the kernel; the tail lies in entry 0.
    ring: *mut BufRingEntry,
    data: *mut u8,
    tail: u16,
}

impl Buffers {
    fn new() -> Buffers {
        let layout = Layout::from_size_align(BUFFERS as usize * size_of::<BufRingEntry>(), 4096)
            .expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let ring = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if ring.is_null() {
            handle_alloc_error(layout);
        }
        // Zeroed by the allocator without touching the pages: they cost only once used.
        let data = Box::leak(vec![0u8; BUFFERS as usize * BUF_SIZE].into_boxed_slice());
        let mut buffers = Buffers {
            ring,
            data: data.as_mut_ptr(),
            tail: 0,
        };
        for bid in 0..BUFFERS {
            buffers.give_back(bid);
        }
        buffers
    }

    /// The `len` bytes a receive put in buffer `bid` (the loop's until it gives it back).
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < BUFFERS && len <= BUF_SIZE, "a buffer of the ring");
        // SAFETY: inside buffer `bid`, which the kernel handed over and does not write to.
        unsafe { std::slice::from_raw_parts(self.data.add(bid as usize * BUF_SIZE), len) }
    }

    fn give_back(&mut self, bid: u16) {
        // SAFETY: the slot is inside the ring (masked index); the kernel reads only slots
        // before the tail, and this one is past it until the tail moves below.
        let slot = unsafe { &mut *self.ring.add((self.tail & (BUFFERS - 1)) as usize) };
        // SAFETY: buffer `bid` lies inside the data.
        slot.set_addr(unsafe { self.data.add(bid as usize * BUF_SIZE) } as u64);
        slot.set_len(BUF_SIZE as u32);
        slot.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field lies in the ring, is aligned, and the kernel reads it with
        // acquire ordering: the slot written above is visible before the new tail.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.ring).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// An event loop on a fresh listener; `None`, said on stderr, where io_uring is refused.
    /// Nothing is ever submitted: the tests play the kernel's part with the completions.
    fn event_loop() -> Option<EventLoop> {
        let cli = Cli::parse_from(["server-uring"]);
        let listener = listener::bind(&cli.server).unwrap();
        match EventLoop::new(listener, cli.server.config(), 16) {
            Ok(event_loop) => Some(event_loop),
            Err(e) => {
                conformance::server::say_skipped("server-uring unit test", &e.to_string());
                None
            }
        }
    }

    /// Accepts a queued connection (the plain way) and hands it to the loop; its token.
    fn accept(event_loop: &mut EventLoop) -> u64 {
        let (stream, _) = event_loop.listener.accept().unwrap();
        event_loop.on_accepted(stream.into(), Instant::now());
        let newest = event_loop
            .conns
            .iter()
            .flatten()
            .max_by_key(|c| c.token >> FD_BITS);
        newest.unwrap().token
    }

    /// A receive's completion flags: data in buffer `bid`, more to come unless `last`.
    fn received_in(bid: u16, last: bool) -> u32 {
        let more = if last { 0 } else { 2 }; // IORING_CQE_F_MORE
        1 | more | (u32::from(bid) << 16) // IORING_CQE_F_BUFFER, and the buffer id
    }

    /// Plays the kernel: puts `bytes` in ring buffer `bid`.
    fn fill(event_loop: &mut EventLoop, bid: u16, bytes: &[u8]) {
        assert!(bytes.len() <= BUF_SIZE);
        // SAFETY: inside buffer `bid`; nothing was submitted, so the kernel uses none.
        unsafe {
            let at = event_loop.buffers.data.add(bid as usize * BUF_SIZE);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len());
        }
    }

    #[test]
    fn a_late_receive_for_a_closed_connection_gives_its_buffer_back_and_reaches_no_other() {
        // Alone: descriptors are numbered per process, and the other test makes some.
        let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut event_loop) = event_loop() else {
            return;
        };
        let addr = event_loop.listener.local_addr().unwrap();
        let _first = TcpStream::connect(addr).unwrap();
        let old = accept(&mut event_loop);
        // The client's socket first, so that the descriptor freed next is the lowest.
        let _second = TcpStream::connect(addr).unwrap();
        event_loop.close(old, Instant::now());
        event_loop.ring.submit().unwrap(); // the cancel and the close
        let new = accept(&mut event_loop);
        let fd_mask = (1 << FD_BITS) - 1;
        assert_eq!(new & fd_mask, old & fd_mask, "the descriptor is reused");
        assert_ne!(new, old, "the token is not");
        // Data for the closed connection, completed before its cancel landed.
        fill(&mut event_loop, 0, GET);
        let tail = event_loop.buffers.tail;
        event_loop.on_recv(old, GET.len() as i32, received_in(0, false), Instant::now());
        assert_eq!(
            event_loop.buffers.tail,
            tail.wrapping_add(1),
            "buffer not given back"
        );
        let conn = find(&mut event_loop.conns, new).unwrap();
        assert!(conn.held.is_empty() && conn.http.is_none() && !conn.sending);
        assert_eq!(event_loop.open, 1);
    }

    #[test]
    fn bytes_arriving_during_a_send_are_held_and_stop_the_receive_until_taken() {
        let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut event_loop) = event_loop() else {
            return;
        };
        let _client = TcpStream::connect(event_loop.listener.local_addr().unwrap()).unwrap();
        let token = accept(&mut event_loop);
        let now = Instant::now();
        let conn = find(&mut event_loop.conns, token).unwrap();
        assert!(conn.http.is_none(), "an idle connection holds no state");
        assert_eq!(conn.recv, Recv::Armed);
        // A request: answered at once, its send in flight.
        fill(&mut event_loop, 0, GET);
        event_loop.on_recv(token, GET.len() as i32, received_in(0, false), now);
        let conn = find(&mut event_loop.conns, token).unwrap();
        assert!(conn.sending);
        let answer = conn.http.as_ref().unwrap().to_write().len() as i32;
        // The next request arrives during the send: held, and the receive cancelled.
        fill(&mut event_loop, 1, GET);
        event_loop.on_recv(token, GET.len() as i32, received_in(1, false), now);
        let conn = find(&mut event_loop.conns, token).unwrap();
        assert_eq!(conn.held, GET);
        assert_eq!(conn.recv, Recv::Cancelled);
        event_loop.on_recv(token, -libc::ECANCELED, 0, now); // the receive's last completion
                                                             // The send completes: the held request is taken and answered.
        event_loop.on_send(token, answer, now);
        let conn = find(&mut event_loop.conns, token).unwrap();
        assert!(conn.held.is_empty() && conn.sending);
        assert_eq!(
            conn.recv,
            Recv::Off,
            "not receiving while its answer is sent"
        );
        // That send completes: idle again, receiving again, its state given back.
        event_loop.on_send(token, answer, now);
        let conn = find(&mut event_loop.conns, token).unwrap();
        assert_eq!(conn.recv, Recv::Armed);
        assert!(conn.http.is_none() && !conn.sending);
        assert_eq!(
            conn.held.capacity(),
            0,
            "an idle connection holds no memory"
        );
        assert_eq!(
            event_loop.buffers.tail,
            BUFFERS.wrapping_add(2),
            "both buffers back"
        );
    }

    #[test]
    fn an_idle_connection_costs_its_slot_and_nothing_else() {
        // Its slot in the table; no state (given back), no buffer, nothing held.
        let slot = std::mem::size_of::<Option<Conn>>();
        assert!(slot <= 64, "{slot} B");
    }
}
