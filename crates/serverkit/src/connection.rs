//! The one connection protocol every model runs, sans-IO: a state machine that is told what
//! happened (bytes read, bytes written, the request's cost paid, shutdown asked for, the time)
//! and answers what the connection wants next ([`Action`]). No socket and no clock inside:
//! the time comes in as an argument, so every rule is unit-tested without a network.
//!
//! A model is then only the way it waits: a blocking model does each [`Action`] with a
//! blocking call, the epoll loop turns it into an interest in the epoll set or a timer, tokio
//! into an `.await`. The rules live here, once:
//!
//! - **Pipelining:** every complete request already received is answered in order, and the
//!   answers leave together (one `write`) through the [`Outbox`](crate::http::Outbox).
//! - **Bodies:** a request with a body (`Content-Length`) is answered after its body arrived.
//! - **Close:** after `Connection: close`, HTTP/1.0 without keep-alive, an error answer, or a
//!   shutdown.
//! - **Graceful close:** when input may still be arriving (after a `400`/`431`/`501`, or
//!   bytes left behind a `Connection: close`), closing at once would make the kernel answer
//!   that input with a reset, which can destroy the answer just sent. So the connection
//!   shuts down its writing side ([`Action::CloseWrite`]: the answer is followed by a FIN),
//!   then reads and discards for at most [`LINGER_TIME`] and [`LINGER_BYTES`], then closes, as
//!   nginx's lingering close does. A `408` closes at once: that client has gone quiet.
//! - **`Expect: 100-continue`:** a `100 Continue` goes out as soon as such a head is parsed
//!   and its body is wanted and has not started; a head that is refused gets its final
//!   answer at once instead (RFC 9110 10.1.1).
//! - **Deadlines**, one per wait, each returned with the [`Action`] that waits:
//!   - a new connection's first byte, `read_timeout` (or `idle_timeout` if shorter; then
//!     closed quietly): a client that connects and says nothing holds a thread or a process
//!     of the blocking models for that long, not for the idle timeout;
//!   - between requests, `idle_timeout` (then closed quietly);
//!   - a request head, `read_timeout` from its first byte (then `408`: the slowloris guard);
//!   - a request body, `read_timeout` without progress (a slow upload is fine, a stalled one
//!     is not);
//!   - a write, `read_timeout` without progress (a client that never reads is dropped);
//!   - a lingering close, [`LINGER_TIME`].
//! - **Shutdown:** answers say `Connection: close`; an idle connection closes at once; one
//!   in the middle of a request finishes it; and no wait ends later than `read_timeout`
//!   after the shutdown, whatever the client does.
//!
//! Its memory is fixed: a few words of state (about 130 bytes), and its [`Buffers`] (an 8 KiB
//! [`RequestBuffer`](crate::http::RequestBuffer) and a 2 KiB [`Outbox`](crate::http::Outbox))
//! on the heap. A blocking model's connection owns its buffers ([`Connection::new`]); an event
//! loop's borrows them from the loop's [`BufferPool`] only while bytes are in them
//! ([`Connection::pooled`], [`Connection::next_lent`]), so an idle connection is its few words.

use std::time::{Duration, Instant};

use crate::buffers::{BufferPool, Buffers};
use crate::cli::{Protocol, ServerConfig};
use crate::date::DateCache;
use crate::http::{HttpError, Reading, Request, CONTINUE, HELLO_BODY, MAX_RESPONSE};
use crate::workload::Workload;

/// Longest a graceful close drains the client's input before closing anyway.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// Most input a graceful close drains before closing anyway.
pub const LINGER_BYTES: usize = 16 << 20;

const NOT_LENT: &str = "a pooled connection is lent buffers before it reads or answers";

/// What the connection wants next. Each variant says what the driver does, and what it
/// reports back before asking [`Connection::next`] again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read into [`Connection::read_buf`], then report with [`Connection::read`] (0: the peer
    /// closed its side). Ask again at `deadline` if nothing arrived by then.
    Read {
        /// When the wait ends.
        deadline: Instant,
    },
    /// Write [`Connection::to_write`], then report with [`Connection::wrote`]. Ask again at
    /// `deadline` if the socket took nothing by then.
    Write {
        /// When the wait ends.
        deadline: Instant,
    },
    /// Pay this request's cost (sleep or arm a timer for `delay`, burn for `cpu`), then
    /// report with [`Connection::worked`]. Never `Hello`: that costs nothing.
    Work(Workload),
    /// Shut down the writing side of the socket (`shutdown(SHUT_WR)`), then ask again: the
    /// answer is complete and the client's input is drained before closing.
    CloseWrite,
    /// Close the socket: the connection is over.
    Close,
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests, answering them, writing the answers.
    Serving,
    /// A request's cost is being paid (`None` inside: the raw protocol's one answer).
    Working(Option<Request>),
    /// The cost is paid; the answer goes out at the next [`Connection::next`].
    Paid(Option<Request>),
    /// Writing side shut; reading and discarding until EOF, a limit, or the deadline.
    Lingering,
    /// Done.
    Closed,
}

/// One connection's protocol state.
pub struct Connection {
    config: ServerConfig,
    /// The request buffer and the outbox; `None` while a pooled connection holds no bytes.
    bufs: Option<Box<Buffers>>,
    phase: Phase,
    /// When the current wait began or last made progress; its deadline counts from here.
    since: Instant,
    /// What [`since`](Self::since) was last set for: a change of what is being read restarts it.
    reading: Reading,
    /// Close once the outbox is written.
    close_after: bool,
    /// Input may still be arriving when closing: close gracefully.
    linger_after: bool,
    /// The client shut its side (a read returned 0).
    peer_closed: bool,
    /// No byte has arrived yet: the first-byte deadline applies, not the idle one.
    fresh: bool,
    /// Shutdown asked for: no wait ends after this.
    stop_by: Option<Instant>,
    drained: usize,
    raw_answered: bool,
}

impl Connection {
    /// A connection accepted at `now`, with buffers of its own for its whole life (the
    /// blocking models: a thread or process per connection holds them anyway).
    pub fn new(config: ServerConfig, now: Instant) -> Connection {
        Connection {
            bufs: Some(Buffers::new()),
            ..Self::pooled(config, now)
        }
    }

    /// A connection accepted at `now`, without buffers: its driver lends it a set from a
    /// [`BufferPool`] when bytes arrive or an answer is due, and takes it back when the set
    /// holds nothing ([`next_lent`](Self::next_lent), [`lend`](Self::lend)). What the event
    /// loops use: an idle connection then costs its few words, not 10 KiB.
    pub fn pooled(config: ServerConfig, now: Instant) -> Connection {
        let mut conn = Connection {
            config,
            bufs: None,
            phase: Phase::Closed,
            since: now,
            reading: Reading::Idle,
            close_after: false,
            linger_after: false,
            peer_closed: false,
            fresh: true,
            stop_by: None,
            drained: 0,
            raw_answered: false,
        };
        conn.reset(now);
        conn
    }

    /// Makes this the state of a new connection accepted at `now`, keeping its buffers: a
    /// thread or process that serves one connection after another reuses one state and pays
    /// nothing per connection for it (`new` allocates and clears 10 KiB of buffers).
    pub fn reset(&mut self, now: Instant) {
        if let Some(bufs) = &mut self.bufs {
            bufs.clear();
        }
        self.phase = Phase::Serving;
        self.since = now;
        self.reading = Reading::Idle;
        self.close_after = false;
        self.linger_after = false;
        self.peer_closed = false;
        self.fresh = true;
        self.stop_by = None;
        self.drained = 0;
        self.raw_answered = false;
    }

    /// What to do next, at `now`; answers carry `date`.
    pub fn next(&mut self, now: Instant, date: &DateCache) -> Action {
        match self.phase {
            Phase::Closed => return Action::Close,
            Phase::Working(_) => return Action::Work(self.config.workload),
            Phase::Paid(request) => {
                self.phase = Phase::Serving;
                self.answer(request, now, date);
            }
            Phase::Lingering => {
                let deadline = self.deadline(self.since + LINGER_TIME);
                if now >= deadline || self.drained >= LINGER_BYTES {
                    return self.close();
                }
                return Action::Read { deadline };
            }
            Phase::Serving => {}
        }
        if self.stop_by.is_some_and(|stop_by| now >= stop_by) {
            return self.close();
        }
        if let Some(action) = self.expire(now, date) {
            return action;
        }
        if let Some(work) = self.answer_buffered(now, date) {
            return work;
        }
        if !self.out_empty() {
            return Action::Write {
                deadline: self.deadline(self.since + self.config.read_timeout),
            };
        }
        if self.close_after {
            if self.linger_after && !self.peer_closed {
                self.phase = Phase::Lingering;
                self.since = now;
                self.clear_requests();
                return Action::CloseWrite;
            }
            return self.close();
        }
        let reading = self.received();
        if reading != self.reading {
            self.reading = reading;
            self.since = now;
        }
        if self.peer_closed || (self.stop_by.is_some() && reading == Reading::Idle) {
            return self.close();
        }
        Action::Read {
            deadline: self.deadline(self.since + self.read_limit(reading)),
        }
    }

    /// True between two requests of a kept-alive connection that holds nothing: no byte of a
    /// next request, no answer to write, no close pending, no shutdown. Asked after
    /// [`next`](Self::next) returned [`Action::Read`], it says the state can be let go: a
    /// fresh one, [`reset`](Self::reset) when the next bytes arrive, behaves the same. And
    /// [`next`](Self::next) on an idle connection touches no buffer (it can only wait or
    /// close): a pooled connection needs none lent for it.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Serving
            && self.config.protocol == Protocol::Http
            && self.bufs.as_ref().is_none_or(|bufs| bufs.is_empty())
            && !self.close_after
            && !self.peer_closed
            && self.stop_by.is_none()
    }

    /// True while it has a set of buffers (its own, or one lent).
    pub fn holds_buffers(&self) -> bool {
        self.bufs.is_some()
    }

    /// Lends the connection a set from `pool` if it has none: before
    /// [`read_buf`](Self::read_buf), and before [`next`](Self::next) unless it
    /// [`is_idle`](Self::is_idle) (what [`next_lent`](Self::next_lent) does).
    pub fn lend(&mut self, pool: &mut BufferPool) {
        if self.bufs.is_none() {
            self.bufs = Some(pool.take());
        }
    }

    /// Gives its set back to `pool` if the set holds nothing (no byte of a request, nothing
    /// unsent): true if it did, or had none.
    pub fn release(&mut self, pool: &mut BufferPool) -> bool {
        if self.bufs.as_ref().is_some_and(|bufs| bufs.is_empty()) {
            pool.give(self.bufs.take().expect("checked above"));
        }
        self.bufs.is_none()
    }

    /// Gives its set back to `pool` whatever it holds: the connection is closed.
    pub fn give_back(&mut self, pool: &mut BufferPool) {
        if let Some(bufs) = self.bufs.take() {
            pool.give(bufs);
        }
    }

    /// [`next`](Self::next) for a connection whose buffers come from `pool`: lends it a set
    /// first unless it is idle, and takes the set back when it holds nothing once the
    /// connection has said what it waits for. So a connection holds a set only while bytes
    /// are in it: between requests, during a `delay`, and after its close, none. On a
    /// kept-alive connection that is one take and one give per request, both from the top of
    /// the pool's free list.
    pub fn next_lent(&mut self, now: Instant, date: &DateCache, pool: &mut BufferPool) -> Action {
        if !self.is_idle() {
            self.lend(pool);
        }
        let action = self.next(now, date);
        self.release(pool);
        action
    }

    /// Where to read into (for [`Action::Read`]).
    ///
    /// # Panics
    /// If the connection holds no buffers: a pooled connection is [`lend`](Self::lend)
    /// a set first.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.bufs_mut().requests.spare()
    }

    /// Reports `n` bytes read into [`read_buf`](Self::read_buf) at `now`; 0 means the peer
    /// closed its side.
    pub fn read(&mut self, n: usize, now: Instant) {
        if n == 0 {
            self.peer_closed = true;
            if self.phase == Phase::Lingering {
                self.phase = Phase::Closed;
            }
            return;
        }
        if self.phase == Phase::Lingering {
            self.drained += n;
            self.clear_requests();
            return;
        }
        self.fresh = false;
        self.bufs_mut().requests.filled(n);
        // A head's deadline counts from its first byte; a body's from its last progress.
        if self.reading != Reading::Head {
            self.since = now;
        }
    }

    /// The bytes to write (for [`Action::Write`]).
    pub fn to_write(&self) -> &[u8] {
        self.bufs.as_ref().map_or(&[], |bufs| bufs.out.pending())
    }

    /// Reports `n` bytes of [`to_write`](Self::to_write) written at `now`.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.bufs_mut().out.sent(n);
            self.since = now;
        }
    }

    /// Reports that the cost asked for by [`Action::Work`] is paid.
    pub fn worked(&mut self) {
        if let Phase::Working(request) = self.phase {
            self.phase = Phase::Paid(request);
        }
    }

    /// The server is shutting down (from `now`): finish what is in hand, then close.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stop_by.is_none() {
            self.stop_by = Some(now + self.config.read_timeout);
        }
    }

    fn close(&mut self) -> Action {
        self.phase = Phase::Closed;
        Action::Close
    }

    fn bufs(&self) -> &Buffers {
        self.bufs.as_deref().expect(NOT_LENT)
    }

    fn bufs_mut(&mut self) -> &mut Buffers {
        self.bufs.as_deref_mut().expect(NOT_LENT)
    }

    /// Nothing waits to be written.
    fn out_empty(&self) -> bool {
        self.bufs.as_ref().is_none_or(|bufs| bufs.out.is_empty())
    }

    /// What has been received of the next request.
    fn received(&self) -> Reading {
        self.bufs
            .as_ref()
            .map_or(Reading::Idle, |bufs| bufs.requests.reading())
    }

    fn clear_requests(&mut self) {
        if let Some(bufs) = &mut self.bufs {
            bufs.requests.clear();
        }
    }

    /// `at`, or the shutdown deadline if earlier.
    fn deadline(&self, at: Instant) -> Instant {
        self.stop_by.map_or(at, |stop_by| at.min(stop_by))
    }

    /// How long a read may wait while `reading`: a request's head or body, the read timeout;
    /// between requests, the idle timeout; before a new connection's first byte, the shorter.
    fn read_limit(&self, reading: Reading) -> Duration {
        match reading {
            Reading::Idle if self.fresh => self.config.read_timeout.min(self.config.idle_timeout),
            Reading::Idle => self.config.idle_timeout,
            Reading::Head | Reading::Body => self.config.read_timeout,
        }
    }

    /// The current wait's deadline has passed: close, or answer `408` first.
    fn expire(&mut self, now: Instant, date: &DateCache) -> Option<Action> {
        let limit = if !self.out_empty() {
            self.config.read_timeout
        } else {
            self.read_limit(self.reading)
        };
        if now < self.since + limit {
            return None;
        }
        if self.out_empty() && self.reading != Reading::Idle && !self.close_after {
            // The client started a request and stalled: tell it, then close (no lingering:
            // waiting longer for it is what the timeout refused).
            let response = HttpError::Timeout.response(self.config.headers);
            self.bufs_mut().out.push_response(response, date);
            self.close_after = true;
            self.linger_after = false;
            self.since = now;
            return None;
        }
        Some(self.close())
    }

    /// Answers the requests already received, in order, into the outbox; stops at a request
    /// whose cost must be paid first (returned), at a full outbox, or at a close.
    fn answer_buffered(&mut self, now: Instant, date: &DateCache) -> Option<Action> {
        while !self.close_after {
            let request = match self.config.protocol {
                Protocol::Raw if self.raw_answered => return None,
                // Lent nothing: nothing was received (an idle pooled connection).
                Protocol::Http if self.bufs.is_none() => return None,
                _ if self.bufs().out.room() < MAX_RESPONSE => return None,
                Protocol::Raw => {
                    self.raw_answered = true;
                    None
                }
                Protocol::Http => match self.bufs_mut().requests.next_request() {
                    Ok(Some(request)) => Some(request),
                    Ok(None) => {
                        if self.bufs_mut().requests.take_continue() {
                            self.start_writing(now);
                            self.bufs_mut().out.push(CONTINUE);
                        }
                        return None;
                    }
                    Err(error) => {
                        self.start_writing(now);
                        let response = error.response(self.config.headers);
                        self.bufs_mut().out.push_response(response, date);
                        self.close_after = true;
                        self.linger_after = true;
                        return None;
                    }
                },
            };
            if self.config.workload != Workload::Hello {
                self.phase = Phase::Working(request);
                return Some(Action::Work(self.config.workload));
            }
            self.answer(request, now, date);
        }
        None
    }

    /// Puts the answer to `request` (`None`: the raw protocol's) in the outbox. Whether it
    /// closes is decided now, when the answer is due, so a shutdown during a `delay` still
    /// says `close`.
    fn answer(&mut self, request: Option<Request>, now: Instant, date: &DateCache) {
        self.start_writing(now);
        match request {
            None => {
                self.bufs_mut().out.push(HELLO_BODY);
                self.close_after = true;
            }
            Some(request) => {
                let (response, close) =
                    request.response(self.stop_by.is_some(), self.config.headers);
                self.bufs_mut().out.push_response(response, date);
                if close {
                    self.close_after = true;
                    // Bytes behind this request will never be read: drain them, do not reset.
                    self.linger_after = self.received() != Reading::Idle;
                }
            }
        }
    }

    /// The write deadline counts from the first answer put in an empty outbox.
    fn start_writing(&mut self, now: Instant) {
        if self.out_empty() {
            self.since = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8; 29] = b"Sun, 06 Nov 1994 08:49:37 GMT";
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

    fn config() -> ServerConfig {
        ServerConfig {
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            ..ServerConfig::default()
        }
    }

    /// A scripted peer: what the connection wrote, and whether it closed.
    struct Run {
        written: Vec<u8>,
        closed_write: bool,
        closed: bool,
    }

    /// Drives `conn` over `input` given in `chunks` (read sizes), writing at most `write_size`
    /// bytes a call, paying work at once; the peer closes after its input. All at time `t`.
    fn drive(conn: &mut Connection, input: &[u8], chunks: &[usize], write_size: usize) -> Run {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let mut run = Run {
            written: Vec::new(),
            closed_write: false,
            closed: false,
        };
        let mut offset = 0;
        let mut chunk = chunks.iter().cycle();
        for _ in 0..1_000_000 {
            match conn.next(t, &date) {
                Action::Read { .. } => {
                    let want = (*chunk.next().unwrap()).max(1);
                    let buf = conn.read_buf();
                    let n = want.min(buf.len()).min(input.len() - offset);
                    buf[..n].copy_from_slice(&input[offset..offset + n]);
                    offset += n;
                    conn.read(n, t);
                }
                Action::Write { .. } => {
                    let bytes = conn.to_write();
                    assert!(bytes.len() <= crate::http::OUTBOX_SIZE);
                    let n = bytes.len().min(write_size);
                    run.written.extend_from_slice(&bytes[..n]);
                    conn.wrote(n, t);
                }
                Action::Work(_) => conn.worked(),
                Action::CloseWrite => run.closed_write = true,
                Action::Close => {
                    run.closed = true;
                    return run;
                }
            }
        }
        panic!("the connection never closed");
    }

    fn answers(written: &[u8]) -> Vec<String> {
        let text = String::from_utf8(written.to_vec()).unwrap();
        text.split("HTTP/1.1 ")
            .filter(|s| !s.is_empty())
            .map(|s| s.lines().next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_then_the_peer_close_closes() {
        let mut input = GET.repeat(3);
        input.extend_from_slice(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut conn = Connection::new(config(), Instant::now());
        let run = drive(&mut conn, &input, &[4096], 4096);
        assert_eq!(answers(&run.written).len(), 4);
        assert!(run.closed && !run.closed_write);
        let text = String::from_utf8(run.written).unwrap();
        assert!(
            text.ends_with("Content-Length: 11\r\n\r\n"),
            "HEAD has no body"
        );
    }

    #[test]
    fn an_error_answer_closes_gracefully() {
        let mut input = GET.to_vec();
        input.extend_from_slice(b"garbage\r\n\r\n");
        input.extend_from_slice(&[b'x'; 5000]);
        let mut conn = Connection::new(config(), Instant::now());
        let run = drive(&mut conn, &input, &[700], 4096);
        assert_eq!(answers(&run.written), ["200 OK", "400 Bad Request"]);
        assert!(run.closed_write, "writing side shut before closing");
    }

    #[test]
    fn bytes_behind_connection_close_are_drained_not_reset() {
        let mut input = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
        input.extend_from_slice(GET);
        let mut conn = Connection::new(config(), Instant::now());
        let run = drive(&mut conn, &input, &[4096], 4096);
        assert_eq!(answers(&run.written).len(), 1);
        assert!(run.closed_write);
        // Nothing behind it: a plain close.
        let mut conn = Connection::new(config(), Instant::now());
        let run = drive(
            &mut conn,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            &[4096],
            4096,
        );
        assert!(!run.closed_write);
    }

    #[test]
    fn a_body_is_read_before_the_answer() {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let mut conn = Connection::new(config(), t);
        let head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(conn.next(t, &date), Action::Read { .. }));
        conn.read_buf()[..head.len()].copy_from_slice(head);
        conn.read(head.len(), t);
        assert!(
            matches!(conn.next(t, &date), Action::Read { .. }),
            "no answer before the body"
        );
        conn.read_buf()[..3].copy_from_slice(b"cde");
        conn.read(3, t);
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
    }

    #[test]
    fn deadlines_follow_the_wait() {
        let date = DateCache::fixed(DATE);
        let cfg = config();
        let t0 = Instant::now();
        let mut conn = Connection::new(cfg, t0);
        assert_eq!(
            conn.next(t0, &date),
            Action::Read {
                deadline: t0 + cfg.read_timeout
            },
            "a new connection's first byte: the read timeout"
        );
        // A head's first byte starts the read timeout; later bytes do not extend it.
        let t1 = t0 + Duration::from_secs(1);
        conn.read_buf()[..3].copy_from_slice(b"GET");
        conn.read(3, t1);
        let head_deadline = t1 + cfg.read_timeout;
        assert_eq!(
            conn.next(t1, &date),
            Action::Read {
                deadline: head_deadline
            }
        );
        conn.read_buf()[..1].copy_from_slice(b" ");
        conn.read(1, t1 + Duration::from_secs(5));
        assert_eq!(
            conn.next(t1 + Duration::from_secs(5), &date),
            Action::Read {
                deadline: head_deadline
            }
        );
        // Past it: a 408, then a plain close.
        assert!(matches!(
            conn.next(head_deadline, &date),
            Action::Write { .. }
        ));
        assert!(String::from_utf8_lossy(conn.to_write()).starts_with("HTTP/1.1 408"));
        let n = conn.to_write().len();
        conn.wrote(n, head_deadline);
        assert_eq!(conn.next(head_deadline, &date), Action::Close);
    }

    #[test]
    fn a_silent_new_connection_closes_quietly_at_the_first_byte_deadline() {
        let date = DateCache::fixed(DATE);
        let cfg = config();
        let t0 = Instant::now();
        let mut silent = Connection::new(cfg, t0);
        let Action::Read { deadline } = silent.next(t0, &date) else {
            panic!("expected a read")
        };
        assert_eq!(deadline, t0 + cfg.read_timeout);
        assert_eq!(silent.next(deadline, &date), Action::Close, "no 408");
        assert!(silent.to_write().is_empty());
        // Once a request came, the wait between requests is the idle timeout (from the
        // answer's last byte written).
        let mut served = Connection::new(cfg, t0);
        served.next(t0, &date);
        served.read_buf()[..GET.len()].copy_from_slice(GET);
        served.read(GET.len(), t0);
        assert!(matches!(served.next(t0, &date), Action::Write { .. }));
        served.wrote(served.to_write().len(), t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            served.next(t1, &date),
            Action::Read {
                deadline: t0 + cfg.idle_timeout
            }
        );
        // An idle timeout shorter than the read timeout bounds the first byte too.
        let short = ServerConfig {
            idle_timeout: Duration::from_secs(1),
            ..cfg
        };
        let mut conn = Connection::new(short, t0);
        assert_eq!(
            conn.next(t0, &date),
            Action::Read {
                deadline: t0 + short.idle_timeout
            }
        );
    }

    #[test]
    fn expect_100_continue_gets_a_100_then_the_answer_after_the_body() {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let mut conn = Connection::new(config(), t);
        let head =
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        conn.next(t, &date);
        conn.read_buf()[..head.len()].copy_from_slice(head);
        conn.read(head.len(), t);
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
        assert_eq!(conn.to_write(), crate::http::CONTINUE);
        conn.wrote(crate::http::CONTINUE.len(), t);
        assert!(
            matches!(conn.next(t, &date), Action::Read { .. }),
            "then the body"
        );
        conn.read_buf()[..5].copy_from_slice(b"hello");
        conn.read(5, t);
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
        assert!(String::from_utf8_lossy(conn.to_write()).starts_with("HTTP/1.1 200 OK"));
        // Pipelined behind a GET: the GET's answer first, then the 100 (the body comes in a
        // later read). A HEAD with a body is the same. A body that came in the same read as
        // its head is owed no 100.
        let head_as_head = [&b"HEAD"[..], &head[4..]].concat();
        let cases: [(Vec<u8>, bool, &[&str]); 3] = [
            (
                [GET, head].concat(),
                true,
                &["200 OK", "100 Continue", "200 OK"],
            ),
            (head_as_head, true, &["100 Continue", "200 OK"]),
            (head.to_vec(), false, &["200 OK"]),
        ];
        for (mut input, body_later, expected) in cases {
            input.extend_from_slice(b"hello");
            let reads = if body_later {
                [input.len() - 5, 5]
            } else {
                [input.len(), 1]
            };
            let mut conn = Connection::new(config(), t);
            let run = drive(&mut conn, &input, &reads, 4096);
            assert_eq!(
                answers(&run.written),
                expected,
                "{}",
                String::from_utf8_lossy(&input)
            );
        }
        // A head refused at once gets its final answer, not a 100.
        let mut refused = Connection::new(config(), t);
        let bad = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        refused.next(t, &date);
        refused.read_buf()[..bad.len()].copy_from_slice(bad);
        refused.read(bad.len(), t);
        assert!(matches!(refused.next(t, &date), Action::Write { .. }));
        assert!(String::from_utf8_lossy(refused.to_write()).starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn a_slow_body_that_keeps_moving_is_not_timed_out() {
        let date = DateCache::fixed(DATE);
        let cfg = config();
        let mut t = Instant::now();
        let mut conn = Connection::new(cfg, t);
        let head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n";
        conn.next(t, &date);
        conn.read_buf()[..head.len()].copy_from_slice(head);
        conn.read(head.len(), t);
        for _ in 0..100 {
            assert!(matches!(conn.next(t, &date), Action::Read { .. }));
            t += cfg.read_timeout / 2; // slower than the whole head would be allowed
            conn.read_buf()[0] = b'x';
            conn.read(1, t);
        }
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
        assert!(String::from_utf8_lossy(conn.to_write()).starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_write_that_never_progresses_is_dropped() {
        let date = DateCache::fixed(DATE);
        let cfg = config();
        let t = Instant::now();
        let mut conn = Connection::new(cfg, t);
        conn.next(t, &date);
        conn.read_buf()[..GET.len()].copy_from_slice(GET);
        conn.read(GET.len(), t);
        let Action::Write { deadline } = conn.next(t, &date) else {
            panic!("expected a write")
        };
        assert_eq!(deadline, t + cfg.read_timeout);
        assert_eq!(conn.next(deadline, &date), Action::Close);
    }

    #[test]
    fn shutdown_closes_idle_finishes_work_and_caps_every_wait() {
        let date = DateCache::fixed(DATE);
        let cfg = config();
        let t = Instant::now();
        // Idle: closes at once.
        let mut idle = Connection::new(cfg, t);
        idle.next(t, &date);
        idle.shutdown(t);
        assert_eq!(idle.next(t, &date), Action::Close);
        // Working: the answer still goes out, saying close.
        let mut busy = Connection::new(
            ServerConfig {
                workload: Workload::Delay(Duration::from_millis(100)),
                ..cfg
            },
            t,
        );
        busy.next(t, &date);
        busy.read_buf()[..GET.len()].copy_from_slice(GET);
        busy.read(GET.len(), t);
        assert!(matches!(busy.next(t, &date), Action::Work(_)));
        busy.shutdown(t);
        busy.worked();
        assert!(matches!(busy.next(t, &date), Action::Write { .. }));
        assert!(String::from_utf8_lossy(busy.to_write()).contains("Connection: close"));
        // A write that never progresses ends by the shutdown's deadline.
        let Action::Write { deadline } = busy.next(t, &date) else {
            panic!("expected a write")
        };
        assert!(deadline <= t + cfg.read_timeout);
        // A half-received head: capped too.
        let mut partial = Connection::new(cfg, t);
        partial.next(t, &date);
        partial.read_buf()[..3].copy_from_slice(b"GET");
        partial.read(3, t);
        let later = t + Duration::from_secs(5);
        partial.next(later, &date);
        partial.shutdown(later);
        let Action::Read { deadline } = partial.next(later, &date) else {
            panic!("expected a read")
        };
        assert!(deadline <= later + cfg.read_timeout);
        assert_eq!(partial.next(later + cfg.read_timeout, &date), Action::Close);
    }

    #[test]
    fn lingering_ends_at_eof_the_time_limit_or_the_byte_limit() {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let start = |input: &[u8]| {
            let mut conn = Connection::new(config(), t);
            conn.next(t, &date);
            conn.read_buf()[..input.len()].copy_from_slice(input);
            conn.read(input.len(), t);
            let n = match conn.next(t, &date) {
                Action::Write { .. } => conn.to_write().len(),
                other => panic!("{other:?}"),
            };
            conn.wrote(n, t);
            assert_eq!(conn.next(t, &date), Action::CloseWrite);
            conn
        };
        let mut eof = start(b"bad\r\n\r\n");
        assert!(matches!(eof.next(t, &date), Action::Read { .. }));
        eof.read(0, t);
        assert_eq!(eof.next(t, &date), Action::Close);

        let mut timed = start(b"bad\r\n\r\n");
        assert_eq!(timed.next(t + LINGER_TIME, &date), Action::Close);

        let mut flood = start(b"bad\r\n\r\n");
        let mut drained = 0;
        while let Action::Read { .. } = flood.next(t, &date) {
            let n = flood.read_buf().len();
            flood.read(n, t);
            drained += n;
        }
        assert!((LINGER_BYTES..LINGER_BYTES + 8192).contains(&drained));
    }

    #[test]
    fn raw_protocol_pays_answers_and_closes() {
        let cfg = ServerConfig {
            protocol: Protocol::Raw,
            workload: Workload::Cpu(Duration::from_micros(1)),
            ..config()
        };
        let mut conn = Connection::new(cfg, Instant::now());
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        assert!(matches!(
            conn.next(t, &date),
            Action::Work(Workload::Cpu(_))
        ));
        assert!(matches!(conn.next(t, &date), Action::Work(_)), "until paid");
        conn.worked();
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
        assert_eq!(conn.to_write(), HELLO_BODY);
        conn.wrote(HELLO_BODY.len(), t);
        assert_eq!(conn.next(t, &date), Action::Close);
    }

    #[test]
    fn a_reset_connection_behaves_as_a_new_one() {
        let input = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.0\r\n\r\n";
        let mut fresh = Connection::new(config(), Instant::now());
        let first = drive(&mut fresh, input, &[5], 7).written;
        // Leave one in the middle of everything: partial head, pending output, shutdown.
        let t = Instant::now();
        let mut used = Connection::new(config(), t);
        let date = DateCache::fixed(DATE);
        used.next(t, &date);
        used.read_buf()[..GET.len() + 3].copy_from_slice(&[GET, b"GET"].concat());
        used.read(GET.len() + 3, t);
        assert!(matches!(used.next(t, &date), Action::Write { .. }));
        used.shutdown(t);
        used.reset(Instant::now());
        assert_eq!(drive(&mut used, input, &[5], 7).written, first);
    }

    #[test]
    fn idle_only_between_requests_with_nothing_held() {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let mut conn = Connection::new(config(), t);
        assert!(matches!(conn.next(t, &date), Action::Read { .. }));
        assert!(conn.is_idle(), "a new connection holds nothing");
        conn.read_buf()[..GET.len() + 3].copy_from_slice(&[GET, b"GET"].concat());
        conn.read(GET.len() + 3, t);
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
        assert!(!conn.is_idle(), "an answer to write");
        let n = conn.to_write().len();
        conn.wrote(n, t);
        assert!(matches!(conn.next(t, &date), Action::Read { .. }));
        assert!(!conn.is_idle(), "part of the next request");
        let rest = &GET[3..];
        conn.read_buf()[..rest.len()].copy_from_slice(rest);
        conn.read(rest.len(), t);
        assert!(matches!(conn.next(t, &date), Action::Write { .. }));
        let n = conn.to_write().len();
        conn.wrote(n, t);
        assert!(matches!(conn.next(t, &date), Action::Read { .. }));
        assert!(conn.is_idle(), "both answered");
        conn.shutdown(t);
        assert!(!conn.is_idle(), "a shutdown is pending");
    }

    #[test]
    fn the_state_is_a_few_words_and_two_fixed_buffers_beside_it() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 128, "{size} bytes");
        let buffers = std::mem::size_of::<Buffers>();
        assert!(
            buffers < crate::http::MAX_HEAD + crate::http::OUTBOX_SIZE + 128,
            "{buffers}"
        );
    }

    /// Lends `conn` a set and reads `bytes` into it, as a pooled driver does.
    fn feed(conn: &mut Connection, pool: &mut BufferPool, bytes: &[u8], t: Instant) {
        conn.lend(pool);
        conn.read_buf()[..bytes.len()].copy_from_slice(bytes);
        conn.read(bytes.len(), t);
    }

    #[test]
    fn a_pooled_connection_holds_buffers_only_while_bytes_are_in_them() {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let mut pool = BufferPool::new();
        let mut conn = Connection::pooled(config(), t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Read { .. }
        ));
        assert!(
            !conn.holds_buffers() && pool.made() == 0,
            "nothing lent to wait"
        );
        feed(&mut conn, &mut pool, b"GET / HT", t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Read { .. }
        ));
        assert!(conn.holds_buffers(), "half a request is kept");
        feed(&mut conn, &mut pool, b"TP/1.1\r\nHost: t\r\n\r\n", t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Write { .. }
        ));
        assert!(conn.holds_buffers(), "an answer to write");
        conn.wrote(conn.to_write().len() - 1, t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Write { .. }
        ));
        assert_eq!(conn.to_write(), b"\n", "a partial write is kept");
        conn.wrote(1, t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Read { .. }
        ));
        assert!(!conn.holds_buffers(), "idle again");
        assert_eq!((pool.made(), pool.free()), (1, 1));
        // The idle timeout passes: closed without a set.
        let late = t + config().idle_timeout;
        assert_eq!(conn.next_lent(late, &date, &mut pool), Action::Close);
        assert_eq!(pool.made(), 1);
    }

    #[test]
    fn a_delay_holds_no_buffers_and_the_answer_takes_them_again() {
        let date = DateCache::fixed(DATE);
        let t = Instant::now();
        let mut pool = BufferPool::new();
        let cfg = ServerConfig {
            workload: Workload::Delay(Duration::from_millis(100)),
            ..config()
        };
        let mut conn = Connection::pooled(cfg, t);
        conn.next_lent(t, &date, &mut pool);
        feed(&mut conn, &mut pool, GET, t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Work(_)
        ));
        assert!(
            !conn.holds_buffers(),
            "nothing buffered while the cost is paid"
        );
        conn.worked();
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Write { .. }
        ));
        assert!(String::from_utf8_lossy(conn.to_write()).starts_with("HTTP/1.1 200 OK"));
        conn.wrote(conn.to_write().len(), t);
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Read { .. }
        ));
        assert!(!conn.holds_buffers());
        // A raw connection answers at once: it is never idle before that.
        let raw = ServerConfig {
            protocol: Protocol::Raw,
            ..config()
        };
        let mut conn = Connection::pooled(raw, t);
        assert!(!conn.is_idle());
        assert!(matches!(
            conn.next_lent(t, &date, &mut pool),
            Action::Write { .. }
        ));
        assert_eq!(conn.to_write(), HELLO_BODY);
        assert_eq!(pool.made(), 1, "the same set, given back during the delay");
    }

    #[test]
    #[should_panic(expected = "lent buffers")]
    fn reading_into_a_pooled_connection_without_lending_is_a_driver_bug() {
        let mut conn = Connection::pooled(config(), Instant::now());
        conn.read_buf();
    }
}
