//! What every single-threaded loop on non-blocking sockets shares (epoll, poll, select and the
//! busy-polling loop): accept without waiting, read what is there, do what the [`Connection`]
//! asks until a step would block ([`advance`]), and keep the open connections in a table
//! ([`Conns`]).
//!
//! What differs between those models is only how they learn that a step would no longer block
//! (an event from `epoll_wait`, a bit from `select`, a `revents` from `poll`, or trying again
//! on the next pass), and that stays in each model's file. What a connection does once it may
//! go on is the same rule everywhere, written here once; the blocking models' counterpart is
//! [`crate::blocking::serve_connection`].
//!
//! Memory: a connection holds buffers only while bytes are in them. [`Conns`] owns the loop's
//! [`BufferPool`]; [`Conns::read`] lends a connection a set before reading and
//! [`Conns::advance`] takes it back once it holds nothing ([`Connection::next_lent`]). An idle
//! keep-alive connection is its slot in the table: the socket, the token, the connection's
//! state without buffers (about 130 bytes) and what the model keeps beside it.
//!
//! A connection is known by a token, `serial << 32 | descriptor`, with a serial never reused:
//! the kernel hands a closed connection's descriptor to the next one at once (even within one
//! batch of events), so anything keyed by descriptor alone (an event, a timer) could reach the
//! wrong connection. A token meant for a closed connection finds nothing.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{accept4, SockFlag};

use crate::buffers::BufferPool;
use crate::cli::ServerConfig;
use crate::connection::{Action, Connection};
use crate::date::DateCache;
use crate::timers::Deadlines;
use crate::workload::{burn_cpu, Workload};

/// What a connection waits for between two turns of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Its socket to be readable (a request, or the rest of one).
    Readable,
    /// Its socket to be writable (a write was left half done).
    Writable,
    /// Its `delay` timer.
    Timer,
}

/// One open connection of a loop, on a socket of type `S`: std's [`TcpStream`] for the loops
/// over raw syscalls, `mio::net::TcpStream` for the one over mio (any non-blocking stream
/// socket that reads, writes and lends its descriptor).
pub struct Conn<W, S = TcpStream> {
    /// The socket (non-blocking); dropping it closes the descriptor.
    pub stream: S,
    /// Its token: serial number and descriptor; never the same for two connections.
    pub token: u64,
    /// Its protocol state, without buffers while it holds no bytes.
    pub http: Connection,
    /// What it waits for, as [`Conns::advance`] last left it.
    pub waiting: Waiting,
    /// What the model keeps beside it for its wait (epoll: the interest registered; poll: the
    /// index of its `pollfd`; nothing for select and the busy loop).
    pub watch: W,
}

/// The open connections of a loop, indexed by descriptor (the kernel hands out the lowest free
/// number, so the table stays as small as the most connections ever open at once), and the
/// pool their buffers are lent from.
///
/// A connection's state lives in its slot, without buffers: accepting writes a slot and
/// allocates nothing (the table grows only past its largest descriptor so far).
pub struct Conns<W, S = TcpStream> {
    config: ServerConfig,
    slots: Vec<Option<Conn<W, S>>>,
    open: usize,
    pool: BufferPool,
    next_serial: u64,
}

impl<W, S: Read + Write + AsFd> Conns<W, S> {
    /// No connections; the ones added will speak by `config`.
    pub fn new(config: ServerConfig) -> Conns<W, S> {
        Conns {
            config,
            slots: Vec::new(),
            open: 0,
            pool: BufferPool::new(),
            next_serial: 0,
        }
    }

    /// The pool the connections' buffers are lent from.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// How many are open.
    pub fn open(&self) -> usize {
        self.open
    }

    /// One past the highest descriptor the table has held: a scan over every connection goes
    /// over `0..fd_bound()` with [`by_fd`](Self::by_fd).
    pub fn fd_bound(&self) -> usize {
        self.slots.len()
    }

    /// Adds a connection accepted at `now`, waiting to read; returns its token.
    pub fn add(&mut self, stream: S, watch: W, now: Instant) -> u64 {
        let fd = stream.as_fd().as_raw_fd() as usize;
        if self.slots.len() <= fd {
            self.slots.resize_with(fd + 1, || None);
        }
        self.next_serial += 1;
        let token = (self.next_serial << 32) | fd as u64;
        self.slots[fd] = Some(Conn {
            stream,
            token,
            http: Connection::pooled(self.config, now),
            waiting: Waiting::Readable,
            watch,
        });
        self.open += 1;
        token
    }

    /// The connection behind `token`, if it is still the one the token was made for.
    pub fn get(&mut self, token: u64) -> Option<&mut Conn<W, S>> {
        find(&mut self.slots, token)
    }

    /// [`get`](Self::get), with the pool beside it: for a loop that drives the connection
    /// itself ([`Connection::next_lent`], [`Connection::lend`]).
    pub fn get_with_pool(&mut self, token: u64) -> Option<(&mut Conn<W, S>, &mut BufferPool)> {
        Some((find(&mut self.slots, token)?, &mut self.pool))
    }

    /// The connection on descriptor `fd`, if any.
    pub fn by_fd(&mut self, fd: usize) -> Option<&mut Conn<W, S>> {
        self.slots.get_mut(fd)?.as_mut()
    }

    /// The token of the connection on descriptor `fd`, if it waits for its socket (not for its
    /// `delay` timer): what a sweep of the deadlines lets [`advance`](Self::advance).
    pub fn waiting_on_socket(&self, fd: usize) -> Option<u64> {
        let conn = self.slots.get(fd)?.as_ref()?;
        (conn.waiting != Waiting::Timer).then_some(conn.token)
    }

    /// Every open connection, by descriptor.
    pub fn iter(&self) -> impl Iterator<Item = &Conn<W, S>> {
        self.slots.iter().flatten()
    }

    /// Lets the connection behind `token` [`advance`] at `now`, and notes what it then waits
    /// for in its [`waiting`](Conn::waiting). `None` for a token that finds no connection.
    /// The loop arms a timer for [`Step::Delay`] and closes on [`Step::Close`].
    pub fn advance(&mut self, token: u64, now: Instant, date: &DateCache) -> Option<Step> {
        self.advance_to_deadline(token, now, date)
            .map(|(step, _)| step)
    }

    /// [`advance`](Self::advance), and when the wait it ends in runs out (the read, idle or
    /// write deadline of a [`Step::Readable`] or [`Step::Writable`]): for a loop that keeps
    /// its connections' deadlines in a heap (epoll) rather than looking at every connection.
    pub fn advance_to_deadline(
        &mut self,
        token: u64,
        now: Instant,
        date: &DateCache,
    ) -> Option<(Step, Option<Instant>)> {
        let conn = find(&mut self.slots, token)?;
        let (step, deadline) =
            advance_to_deadline(&mut conn.stream, &mut conn.http, &mut self.pool, now, date);
        conn.waiting = match step {
            Step::Readable => Waiting::Readable,
            Step::Writable => Waiting::Writable,
            Step::Delay(_) => Waiting::Timer,
            Step::Close => conn.waiting,
        };
        Some((step, deadline))
    }

    /// Reads once from the socket of the connection behind `token` (see [`read_once`]), into a
    /// set of buffers lent for it. `Ok(false)`: nothing to read, or no such connection.
    ///
    /// # Errors
    /// The socket failed (a reset): the loop closes the connection.
    pub fn read(&mut self, token: u64, now: Instant) -> io::Result<bool> {
        Ok(self.read_edge(token, now)? != Got::Nothing)
    }

    /// [`read`](Self::read), saying whether the socket may hold more ([`Got::Full`]): for a
    /// loop told of readiness only when it changes (edge-triggered, as mio is), which must read
    /// again until the socket is drained or it hears of it no more.
    ///
    /// # Errors
    /// The socket failed (a reset): the loop closes the connection.
    pub fn read_edge(&mut self, token: u64, now: Instant) -> io::Result<Got> {
        match find(&mut self.slots, token) {
            Some(conn) => read_counted(&mut conn.stream, &mut conn.http, &mut self.pool, now),
            None => Ok(Got::Nothing),
        }
    }

    /// The server is shutting down, from `now`: every connection finishes what it holds, then
    /// closes (see [`Connection::shutdown`]).
    pub fn shutdown(&mut self, now: Instant) {
        for conn in self.slots.iter_mut().flatten() {
            conn.http.shutdown(now);
        }
    }

    /// Closes the connection behind `token` (its socket is dropped, any buffers it held go
    /// back to the pool); returns what the model kept beside it. `None` if the token finds no
    /// connection.
    pub fn close(&mut self, token: u64) -> Option<W> {
        let fd = self.get(token)?.stream.as_fd().as_raw_fd() as usize;
        let mut conn = self.slots[fd].take()?;
        conn.http.give_back(&mut self.pool);
        self.open -= 1;
        Some(conn.watch)
    }
}

/// What a loop that keeps its connections' read, idle and write deadlines in a [`Deadlines`]
/// heap (epoll, mio) keeps beside each connection: when its entry there comes due.
pub trait DeadlineEntry {
    /// When the connection's entry in the heap comes due (`None`: it has none).
    fn due(&mut self) -> &mut Option<Instant>;
}

/// The deadline heap of an event loop: at most one live entry per connection, at the deadline
/// its watch notes ([`DeadlineEntry`]); a timer wake-up visits only the entries come due.
impl<W: DeadlineEntry, S: Read + Write + AsFd> Conns<W, S> {
    /// After [`advance_to_deadline`](Self::advance_to_deadline): gives the connection an entry
    /// at `deadline` if it has none that early. A deadline earlier than its entry (a new
    /// connection; the read timeout of a request begun while idle) needs an entry of its own;
    /// a later one (the next idle wait of a kept-alive connection) waits for the old entry to
    /// come due.
    pub fn note_deadline(&mut self, token: u64, deadline: Option<Instant>, heap: &mut Deadlines) {
        let (Some(deadline), Some(conn)) = (deadline, self.get(token)) else {
            return;
        };
        let due = conn.watch.due();
        if due.is_none_or(|due| deadline < due) {
            heap.add(deadline, token);
            *due = Some(deadline);
        }
    }

    /// The next connection whose entry came due by `now` and that waits on its socket: the
    /// loop advances it (it closes, answers 408, or gets an entry at its new deadline).
    /// Entries of closed connections, and older entries of connections that have a later one,
    /// are dropped on the way.
    pub fn next_due(&mut self, heap: &mut Deadlines, now: Instant) -> Option<u64> {
        while let Some(token) = heap.pop_due(now) {
            let Some(conn) = self.get(token) else {
                continue; // closed since: its entry was left behind
            };
            let due = conn.watch.due();
            if due.is_some_and(|due| due > now) {
                continue; // an older entry: the connection has a later one
            }
            *due = None;
            if conn.waiting != Waiting::Timer {
                return Some(token);
            }
        }
        None
    }

    /// After a close: a closed connection's entry stays until it comes due; once they
    /// outnumber the open connections, drop them all (O(entries), at most once per as many
    /// closes).
    pub fn prune_deadlines(&mut self, heap: &mut Deadlines) {
        if heap.len() > 2 * self.open + 1024 {
            let slots = &mut self.slots;
            heap.retain(|token| find(slots, token).is_some());
        }
    }
}

impl<W, S: Read + Write + AsFd> Conns<W, S> {
    /// The `delay` timer of the connection behind `token` fired: reports the cost paid
    /// ([`Connection::worked`]). False for a token that finds no connection (closed since);
    /// otherwise the loop advances it.
    pub fn delay_ended(&mut self, token: u64) -> bool {
        let Some(conn) = self.get(token) else {
            return false;
        };
        conn.http.worked();
        true
    }
}

/// The connection behind `token` in `slots`, if it is still the one the token was made for.
fn find<W, S>(slots: &mut [Option<Conn<W, S>>], token: u64) -> Option<&mut Conn<W, S>> {
    let slot = slots.get_mut((token & 0xffff_ffff) as usize)?;
    slot.as_mut().filter(|conn| conn.token == token)
}

/// Where [`advance`] left a connection: what it waits for, or that it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its socket to be readable (a request, or the rest of one).
    Readable,
    /// Its socket to be writable: a write was left half done.
    Writable,
    /// Its `delay`: the loop arms a timer for this long and, when it fires, reports the cost
    /// paid ([`Connection::worked`]) and advances the connection again.
    Delay(Duration),
    /// Nothing: the connection is over (or its socket failed); the loop closes it.
    Close,
}

/// Accepts one queued connection, non-blocking and close-on-exec (`accept4`: one syscall, not
/// `accept` and `fcntl`). `Ok(None)` when none is queued; an aborted or interrupted accept is
/// retried.
///
/// # Errors
/// What `accept4` reports otherwise: `EMFILE`/`ENFILE` (out of descriptors, the connection
/// stays queued), `EINVAL` (the listener was shut down).
pub fn accept(listener: &TcpListener) -> io::Result<Option<TcpStream>> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    loop {
        match accept4(listener.as_raw_fd(), flags) {
            // SAFETY: accept4 just returned this descriptor; nothing else owns it.
            Ok(fd) => return Ok(Some(unsafe { TcpStream::from_raw_fd(fd) })),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR | Errno::ECONNABORTED) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads once from `stream` into the connection, lending it buffers from `pool` for the
/// read, and reports it (a read of 0: the peer closed its side). `Ok(false)` when there was
/// nothing to read (the buffers go back if they hold nothing).
///
/// # Errors
/// The socket failed (a reset): the loop closes the connection, which costs nothing more.
pub fn read_once(
    stream: &mut impl Read,
    http: &mut Connection,
    pool: &mut BufferPool,
    now: Instant,
) -> io::Result<bool> {
    Ok(read_counted(stream, http, pool, now)? != Got::Nothing)
}

/// What one read from a socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// Nothing was there (`EAGAIN`).
    Nothing,
    /// Fewer bytes than there was room for: the socket held no more at that moment, and bytes
    /// that come later are a new edge (but a FIN that came with these bytes is read next).
    Short,
    /// A read of 0: the peer closed its side.
    End,
    /// As many bytes as there was room for: more may be waiting.
    Full,
}

/// [`read_once`], saying how full the read came back.
fn read_counted(
    stream: &mut impl Read,
    http: &mut Connection,
    pool: &mut BufferPool,
    now: Instant,
) -> io::Result<Got> {
    http.lend(pool);
    let room = http.read_buf().len();
    match stream.read(http.read_buf()) {
        Ok(n) => {
            http.read(n, now);
            Ok(match n {
                0 => Got::End,
                n if n == room => Got::Full,
                _ => Got::Short,
            })
        }
        Err(e) if would_block(&e) => {
            http.release(pool);
            Ok(Got::Nothing)
        }
        Err(e) => Err(e),
    }
}

/// Does what the connection asks, at `now`, until a step would block: writes its answers
/// (stopping at a partial write, which the next writable moment resumes), shuts down its
/// writing side, and pays a `cpu` cost on the spot. A `cpu:D` request thus holds the loop's
/// only thread for D, and every other connection of the loop waits meanwhile: the lesson of
/// every single-threaded loop.
///
/// A [`Step::Readable`] is returned without trying the read: the loop reads when it knows (or,
/// busy-polling, guesses) that bytes are there. Buffers come from `pool` while the connection
/// has bytes in them, and are back there when it waits with none ([`Connection::next_lent`]).
pub fn advance<S: Write + AsFd>(
    stream: &mut S,
    http: &mut Connection,
    pool: &mut BufferPool,
    now: Instant,
    date: &DateCache,
) -> Step {
    advance_to_deadline(stream, http, pool, now, date).0
}

/// [`advance`], and the deadline of the wait it ends in (for [`Step::Readable`] and
/// [`Step::Writable`]).
fn advance_to_deadline<S: Write + AsFd>(
    stream: &mut S,
    http: &mut Connection,
    pool: &mut BufferPool,
    now: Instant,
    date: &DateCache,
) -> (Step, Option<Instant>) {
    loop {
        match http.next_lent(now, date, pool) {
            Action::Read { deadline } => return (Step::Readable, Some(deadline)),
            Action::Write { deadline } => match stream.write(http.to_write()) {
                Ok(n) => {
                    http.wrote(n, now);
                    if !http.to_write().is_empty() {
                        // The socket took only part.
                        return (Step::Writable, Some(deadline));
                    }
                }
                Err(e) if would_block(&e) => return (Step::Writable, Some(deadline)),
                Err(_) => return (Step::Close, None), // EPIPE, reset: the client is gone
            },
            Action::Work(Workload::Delay(d)) => return (Step::Delay(d), None),
            Action::Work(workload) => {
                if let Workload::Cpu(d) = workload {
                    burn_cpu(d);
                }
                http.worked();
            }
            Action::CloseWrite => {
                let _ = socket2::SockRef::from(&*stream).shutdown(Shutdown::Write);
            }
            Action::Close => return (Step::Close, None),
        }
    }
}

/// True for the errors that mean "not now" on a non-blocking socket.
pub fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next connection queued on `listener` (the connect may take a moment to land).
    fn accept_soon(listener: &TcpListener) -> TcpStream {
        let start = Instant::now();
        loop {
            if let Some(stream) = accept(listener).unwrap() {
                return stream;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "nothing to accept"
            );
        }
    }

    fn pair() -> (TcpListener, TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        assert!(accept(&listener).unwrap().is_none(), "nothing queued yet");
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let server = accept_soon(&listener);
        (listener, client, server)
    }

    #[test]
    fn a_request_is_read_answered_and_the_connection_waits_to_read_again() {
        let (_listener, mut client, mut server) = pair();
        let now = Instant::now();
        let date = DateCache::at(now);
        let mut pool = BufferPool::new();
        let mut http = Connection::pooled(ServerConfig::default(), now);
        assert_eq!(
            advance(&mut server, &mut http, &mut pool, now, &date),
            Step::Readable
        );
        assert!(
            !read_once(&mut server, &mut http, &mut pool, now).unwrap(),
            "nothing sent yet"
        );
        assert!(!http.holds_buffers(), "a read that found nothing kept none");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let start = Instant::now();
        while !read_once(&mut server, &mut http, &mut pool, now).unwrap() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "request never arrived"
            );
        }
        assert!(http.holds_buffers(), "the request is in a lent set");
        assert_eq!(
            advance(&mut server, &mut http, &mut pool, now, &date),
            Step::Readable
        );
        assert!(!http.holds_buffers(), "answered and idle: the set is back");
        assert_eq!((pool.made(), pool.free()), (1, 1));
        let mut answer = [0u8; 512];
        let n = client.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(answer[..n].ends_with(b"HelloWorld\n"));
    }

    #[test]
    fn a_delay_is_handed_to_the_loop_and_a_write_that_fills_the_socket_waits() {
        let (_listener, _client, mut server) = pair();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        let now = Instant::now();
        let date = DateCache::at(now);
        let delay = Duration::from_millis(5);
        let config = ServerConfig {
            workload: Workload::Delay(delay),
            ..ServerConfig::default()
        };
        let mut pool = BufferPool::new();
        let mut http = Connection::pooled(config, now);
        // Pipelined requests until the client's receive buffer (never read) is full.
        let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut steps = Vec::new();
        for _ in 0..100_000 {
            let step = advance(&mut server, &mut http, &mut pool, now, &date);
            steps.push(step);
            match step {
                Step::Readable => {
                    http.lend(&mut pool);
                    let buf = http.read_buf();
                    let n = buf.len() / request.len() * request.len();
                    for chunk in buf[..n].chunks_mut(request.len()) {
                        chunk.copy_from_slice(request);
                    }
                    http.read(n, now);
                }
                Step::Delay(d) => {
                    assert_eq!(d, delay);
                    http.worked();
                }
                Step::Writable => break,
                Step::Close => panic!("closed"),
            }
        }
        assert_eq!(
            steps.last(),
            Some(&Step::Writable),
            "the socket never filled"
        );
        assert!(steps.contains(&Step::Delay(delay)));
        assert!(http.holds_buffers(), "an answer is left half written");
    }

    /// A table holding one connection (its token), and the client's end of it.
    fn table_of_one() -> (TcpListener, TcpStream, Conns<()>, u64) {
        let (listener, client, server) = pair();
        let mut conns = Conns::new(ServerConfig::default());
        let token = conns.add(server, (), Instant::now());
        (listener, client, conns, token)
    }

    /// Reads into the connection behind `token` once bytes have arrived.
    fn read_soon<W>(conns: &mut Conns<W>, token: u64) {
        let start = Instant::now();
        while !conns.read(token, Instant::now()).unwrap() {
            assert!(start.elapsed() < Duration::from_secs(5), "nothing arrived");
        }
    }

    /// An edge-triggered loop reads again while a read fills the buffer: `read_edge` says
    /// `Full` then, `Short` for the rest, `Nothing` once drained, `End` after the peer's FIN.
    #[test]
    fn a_read_says_whether_the_socket_may_hold_more() {
        let (_listener, mut client, mut conns, token) = table_of_one();
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(20_000, b'a');
        client.write_all(&head).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(50)); // loopback: all of it has arrived
        let mut got = Vec::new();
        loop {
            let read = conns.read_edge(token, Instant::now()).unwrap();
            got.push(read);
            if read == Got::End || got.len() > 100 {
                break;
            }
            // Make room as the loop would: the connection's buffer is read from, not kept.
            if let Some((conn, pool)) = conns.get_with_pool(token) {
                conn.http.give_back(pool);
                conn.http = Connection::pooled(ServerConfig::default(), Instant::now());
            }
        }
        assert_eq!(got.first(), Some(&Got::Full), "{got:?}");
        assert!(got.contains(&Got::Short), "{got:?}");
        assert_eq!(got.last(), Some(&Got::End), "{got:?}");
    }

    /// Sends `bytes` from `client`, then lets the connection read and advance until it waits
    /// to read with nothing left to read; returns what the client received.
    fn exchange<W>(
        conns: &mut Conns<W>,
        token: u64,
        client: &mut TcpStream,
        bytes: &[u8],
        answers: usize,
    ) -> String {
        let date = DateCache::at(Instant::now());
        client.write_all(bytes).unwrap();
        let mut received = Vec::new();
        let start = Instant::now();
        while String::from_utf8_lossy(&received)
            .matches("HelloWorld")
            .count()
            < answers
        {
            assert!(start.elapsed() < Duration::from_secs(5), "no answers");
            if conns.read(token, Instant::now()).unwrap() {
                assert_eq!(
                    conns.advance(token, Instant::now(), &date),
                    Some(Step::Readable)
                );
            }
            client.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            if let Ok(n) = client.read(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8(received).unwrap()
    }

    #[test]
    fn an_idle_connection_holds_no_buffers_and_requests_allocate_none() {
        let (_listener, mut client, mut conns, token) = table_of_one();
        let date = DateCache::at(Instant::now());
        assert_eq!(
            conns.advance(token, Instant::now(), &date),
            Some(Step::Readable)
        );
        assert!(!conns.get(token).unwrap().http.holds_buffers(), "a new one");
        assert_eq!(conns.pool().made(), 0, "nothing lent before bytes came");
        for _ in 0..200 {
            exchange(
                &mut conns,
                token,
                &mut client,
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
                1,
            );
            assert!(!conns.get(token).unwrap().http.holds_buffers());
        }
        // A sweep over an idle connection lends nothing.
        conns.advance(token, Instant::now(), &date);
        assert!(!conns.get(token).unwrap().http.holds_buffers());
        assert_eq!(
            (conns.pool().made(), conns.pool().free()),
            (1, 1),
            "one set, taken and given back by every request"
        );
    }

    #[test]
    fn a_request_split_across_reads_keeps_its_buffers_until_answered() {
        let (_listener, mut client, mut conns, token) = table_of_one();
        let date = DateCache::at(Instant::now());
        client.write_all(b"GET / HT").unwrap();
        read_soon(&mut conns, token);
        assert_eq!(
            conns.advance(token, Instant::now(), &date),
            Some(Step::Readable)
        );
        assert!(
            conns.get(token).unwrap().http.holds_buffers(),
            "half a request is kept"
        );
        let answer = exchange(
            &mut conns,
            token,
            &mut client,
            b"TP/1.1\r\nHost: t\r\n\r\n",
            1,
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(!conns.get(token).unwrap().http.holds_buffers());
    }

    #[test]
    fn a_pipelined_burst_is_answered_in_full_and_the_buffers_go_back() {
        let (_listener, mut client, mut conns, token) = table_of_one();
        let burst = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
        let answers = exchange(&mut conns, token, &mut client, &burst, 100);
        assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 100);
        assert!(!conns.get(token).unwrap().http.holds_buffers());
        // Closing a connection that holds bytes gives its set back too.
        let (_listener, mut client, server) = pair();
        let other = conns.add(server, (), Instant::now());
        client.write_all(b"GET /").unwrap();
        read_soon(&mut conns, other);
        assert!(conns.get(other).unwrap().http.holds_buffers());
        conns.close(other);
        assert_eq!(conns.pool().free(), conns.pool().made());
    }

    #[test]
    fn an_idle_slot_is_small() {
        let slot = std::mem::size_of::<Option<Conn<Option<u64>>>>();
        assert!(slot <= 192, "{slot} bytes");
    }

    #[test]
    fn a_token_for_a_closed_connection_finds_nothing_not_the_next_on_its_descriptor() {
        // Tests run in parallel threads of one process: another may take the freed descriptor
        // first. Try again then; the point needs the descriptor reused.
        for _ in 0..50 {
            let (listener, _client, server) = pair();
            let now = Instant::now();
            let mut conns: Conns<&str> = Conns::new(ServerConfig::default());
            let fd = server.as_raw_fd();
            let old = conns.add(server, "first", now);
            assert_eq!(conns.get(old).map(|c| c.waiting), Some(Waiting::Readable));
            // The client's socket first, so that the descriptor freed next is the lowest.
            let _second = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            assert_eq!(conns.close(old), Some("first"));
            let stream = accept_soon(&listener);
            if stream.as_raw_fd() != fd {
                continue;
            }
            let new = conns.add(stream, "second", now);
            assert_ne!(new, old, "the token is not");
            assert!(conns.get(old).is_none());
            assert_eq!(conns.close(old), None, "a stale close closes nothing");
            assert_eq!(conns.open(), 1);
            assert_eq!(conns.by_fd(fd as usize).map(|c| c.watch), Some("second"));
            return;
        }
        panic!("the descriptor was never reused");
    }
}
