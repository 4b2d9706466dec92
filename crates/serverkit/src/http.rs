//! Sans-IO HTTP/1.1: request parsing and the response bytes. No I/O in here.
//!
//! Every model drives the same two buffers:
//!
//! - [`RequestBuffer`] receives bytes (`spare` + `filled`) and hands out complete requests in
//!   order (`next_request`), so partial reads and pipelined requests are handled once, here.
//!   Its storage is a fixed 8 KiB array: a request head that does not fit is answered `431`, so
//!   no client can make a connection's memory grow.
//! - [`Outbox`] collects response bytes (several when requests are pipelined) so that they leave
//!   in one `write`, and remembers how much a partial write already sent.
//!
//! The responses are `'static` byte strings: answering a request allocates nothing.

use std::fmt;

/// Largest request head accepted; a longer one is answered `431` and the connection closed.
pub const MAX_HEAD: usize = 8192;

/// The body every workload answers with.
pub const HELLO_BODY: &[u8] = b"HelloWorld\n";

const MAX_HEADERS: usize = 64;

macro_rules! hello_response {
    ($($header:literal)?) => {
        concat!("HTTP/1.1 200 OK\r\n", $($header, "\r\n",)? "Content-Length: 11\r\n\r\nHelloWorld\n")
            .as_bytes()
    };
}

const OK_KEEP_ALIVE: &[u8] = hello_response!();
const OK_KEEP_ALIVE_HTTP10: &[u8] = hello_response!("Connection: keep-alive");
const OK_CLOSE: &[u8] = hello_response!("Connection: close");

/// One parsed request: all the server needs to know to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The client asked to keep the connection open (HTTP/1.1 without `Connection: close`,
    /// or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// HTTP/1.0 request (a kept-alive answer then says `Connection: keep-alive`).
    pub http10: bool,
    /// `HEAD` request: the answer carries no body.
    pub head_only: bool,
}

impl Request {
    /// The response bytes for this request; `closing` forces `Connection: close` (the server
    /// is shutting down). Returns the bytes and whether to close after sending them.
    pub fn response(&self, closing: bool) -> (&'static [u8], bool) {
        let close = closing || !self.keep_alive;
        let full = match (close, self.http10) {
            (true, _) => OK_CLOSE,
            (false, false) => OK_KEEP_ALIVE,
            (false, true) => OK_KEEP_ALIVE_HTTP10,
        };
        let bytes = if self.head_only {
            &full[..full.len() - HELLO_BODY.len()]
        } else {
            full
        };
        (bytes, close)
    }
}

/// A request the server refuses; each maps to a status and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, or a bad header (400).
    Malformed,
    /// Request head over [`MAX_HEAD`] bytes or too many headers (431).
    HeadTooLarge,
    /// Valid HTTP this server does not implement, such as chunked request bodies (501).
    NotImplemented,
    /// The client took longer than the read timeout to send its request head (408).
    Timeout,
}

impl HttpError {
    /// The full response (status line, headers, body) sent before closing.
    pub fn response(&self) -> &'static [u8] {
        match self {
            HttpError::Malformed => {
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 12\r\n\r\nbad request\n"
            }
            HttpError::HeadTooLarge => {
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 17\r\n\r\nhead over 8 KiB.\n"
            }
            HttpError::NotImplemented => {
                b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 16\r\n\r\nnot implemented\n"
            }
            HttpError::Timeout => {
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 16\r\n\r\nrequest timeout\n"
            }
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            HttpError::Malformed => "malformed request",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::NotImplemented => "not implemented",
            HttpError::Timeout => "request timeout",
        };
        f.write_str(text)
    }
}

impl std::error::Error for HttpError {}

/// Bytes received on one connection, not yet consumed as requests.
///
/// ```
/// use serverkit::http::RequestBuffer;
/// let mut buf = RequestBuffer::new();
/// let input = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n";
/// buf.spare()[..input.len()].copy_from_slice(input);
/// buf.filled(input.len());
/// assert!(buf.next_request().unwrap().unwrap().keep_alive);
/// assert!(!buf.next_request().unwrap().unwrap().keep_alive);
/// assert_eq!(buf.next_request(), Ok(None));
/// ```
pub struct RequestBuffer {
    bytes: [u8; MAX_HEAD],
    start: usize,
    end: usize,
    /// Request-body bytes still to discard (from `Content-Length`); they never need storing.
    body_left: u64,
}

impl Default for RequestBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        RequestBuffer {
            bytes: [0; MAX_HEAD],
            start: 0,
            end: 0,
            body_left: 0,
        }
    }

    /// Room to read into. Empty only when 8 KiB of complete requests wait to be answered
    /// (a reader must then stop reading until `next_request` consumed some).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == MAX_HEAD && self.start > 0 {
            // Only a partial request (or pipelined ones) can be left: move it to the front.
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.bytes[self.end..]
    }

    /// Records that `n` bytes were read into [`spare`](Self::spare).
    ///
    /// # Panics
    /// If `n` is larger than the spare room (a bug in the caller).
    pub fn filled(&mut self, n: usize) {
        assert!(self.end + n <= MAX_HEAD, "filled past the buffer");
        self.end += n;
    }

    /// True when part of a request has arrived (the read timeout applies, not the idle one).
    pub fn has_partial(&self) -> bool {
        self.start < self.end || self.body_left > 0
    }

    /// True when no room is left to read into until a request is consumed.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == MAX_HEAD
    }

    /// The next complete request, in arrival order.
    ///
    /// `Ok(None)` means more bytes are needed. A request body (`Content-Length`) is skipped as
    /// it arrives, so it never needs to fit in the buffer.
    ///
    /// # Errors
    /// [`HttpError`] for a request to refuse; the connection should answer it and close.
    pub fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        if self.body_left > 0 {
            let skip = self.body_left.min((self.end - self.start) as u64);
            self.start += skip as usize;
            self.body_left -= skip;
            if self.body_left > 0 {
                return Ok(None);
            }
        }
        if self.start == self.end {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&self.bytes[self.start..self.end]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.end - self.start >= MAX_HEAD => {
                return Err(HttpError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
            Err(_) => return Err(HttpError::Malformed),
        };
        let request = interpret(&parsed)?;
        self.start += head_len;
        self.body_left = request.1;
        Ok(Some(request.0))
    }
}

/// Reads what the server needs out of a parsed head: keep-alive, version, method, body length.
fn interpret(parsed: &httparse::Request<'_, '_>) -> Result<(Request, u64), HttpError> {
    let http10 = parsed.version == Some(0);
    let mut keep_alive = !http10;
    let mut body_len: Option<u64> = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(header.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(HttpError::Malformed)?;
            if body_len.is_some_and(|previous| previous != len) {
                return Err(HttpError::Malformed);
            }
            body_len = Some(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::NotImplemented);
        }
    }
    let head_only = parsed.method == Some("HEAD");
    Ok((
        Request {
            keep_alive,
            http10,
            head_only,
        },
        body_len.unwrap_or(0),
    ))
}

/// Response bytes waiting to be written, so pipelined answers leave in one `write`.
pub struct Outbox {
    bytes: [u8; OUTBOX_SIZE],
    len: usize,
    sent: usize,
}

const OUTBOX_SIZE: usize = 2048;

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Outbox {
            bytes: [0; OUTBOX_SIZE],
            len: 0,
            sent: 0,
        }
    }

    /// Appends a response; false (and nothing appended) when it does not fit: write first.
    pub fn push(&mut self, response: &[u8]) -> bool {
        if self.len + response.len() > OUTBOX_SIZE {
            return false;
        }
        self.bytes[self.len..self.len + response.len()].copy_from_slice(response);
        self.len += response.len();
        true
    }

    /// Free bytes left.
    pub fn room(&self) -> usize {
        OUTBOX_SIZE - self.len
    }

    /// True when `response` fits without writing first.
    pub fn has_room_for(&self, response: &[u8]) -> bool {
        self.len + response.len() <= OUTBOX_SIZE
    }

    /// The bytes still to write.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..self.len]
    }

    /// Records that `n` bytes of [`pending`](Self::pending) were written.
    pub fn sent(&mut self, n: usize) {
        self.sent += n;
        if self.sent >= self.len {
            self.sent = 0;
            self.len = 0;
        }
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(buf: &mut RequestBuffer, bytes: &[u8]) {
        let spare = buf.spare();
        spare[..bytes.len()].copy_from_slice(bytes);
        buf.filled(bytes.len());
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let cases: [(&[u8], bool, bool); 5] = [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true, false),
            (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false, false),
            (b"GET / HTTP/1.0\r\n\r\n", false, true),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                true,
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n",
                false,
                false,
            ),
        ];
        for (input, keep_alive, http10) in cases {
            let mut buf = RequestBuffer::new();
            feed(&mut buf, input);
            let req = buf.next_request().unwrap().unwrap();
            assert_eq!(
                (req.keep_alive, req.http10),
                (keep_alive, http10),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_request_split_byte_by_byte_parses_once_complete() {
        let input = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut buf = RequestBuffer::new();
        for (i, byte) in input.iter().enumerate() {
            assert_eq!(
                buf.next_request(),
                Ok(None),
                "complete too early at byte {i}"
            );
            feed(&mut buf, &[*byte]);
        }
        assert!(buf.next_request().unwrap().is_some());
        assert!(!buf.has_partial());
    }

    #[test]
    fn bodies_are_skipped_even_when_larger_than_the_buffer() {
        let mut buf = RequestBuffer::new();
        feed(
            &mut buf,
            b"POST / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n",
        );
        assert!(buf.next_request().unwrap().is_some());
        let chunk = [b'x'; 4000];
        for _ in 0..5 {
            feed(&mut buf, &chunk);
            assert_eq!(buf.next_request(), Ok(None));
        }
        feed(&mut buf, b"GET / HTTP/1.1\r\n\r\n");
        assert!(buf.next_request().unwrap().is_some());
    }

    #[test]
    fn oversized_head_is_431_and_garbage_is_400() {
        let mut buf = RequestBuffer::new();
        feed(&mut buf, b"GET / HTTP/1.1\r\nX: ");
        let filler = vec![b'a'; MAX_HEAD - 19];
        feed(&mut buf, &filler);
        assert_eq!(buf.next_request(), Err(HttpError::HeadTooLarge));

        let mut buf = RequestBuffer::new();
        feed(&mut buf, b"\x16\x03\x01 hello tls\r\n\r\n");
        assert_eq!(buf.next_request(), Err(HttpError::Malformed));

        let mut buf = RequestBuffer::new();
        feed(&mut buf, b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n");
        assert_eq!(buf.next_request(), Err(HttpError::Malformed));

        let mut buf = RequestBuffer::new();
        feed(
            &mut buf,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(buf.next_request(), Err(HttpError::NotImplemented));
    }

    #[test]
    fn responses_match_the_request() {
        let req = Request {
            keep_alive: true,
            http10: false,
            head_only: false,
        };
        assert_eq!(req.response(false), (OK_KEEP_ALIVE, false));
        assert_eq!(req.response(true), (OK_CLOSE, true));
        let head = Request {
            head_only: true,
            ..req
        };
        assert!(head.response(false).0.ends_with(b"\r\n\r\n"));
        let ten = Request {
            keep_alive: true,
            http10: true,
            head_only: false,
        };
        assert!(std::str::from_utf8(ten.response(false).0)
            .unwrap()
            .contains("keep-alive"));
        for r in [OK_KEEP_ALIVE, OK_KEEP_ALIVE_HTTP10, OK_CLOSE] {
            assert!(r.ends_with(b"\r\n\r\nHelloWorld\n"));
        }
    }

    #[test]
    fn outbox_tracks_partial_writes() {
        let mut out = Outbox::new();
        assert!(out.push(b"abc"));
        assert!(out.push(b"def"));
        assert_eq!(out.pending(), b"abcdef");
        out.sent(4);
        assert_eq!(out.pending(), b"ef");
        out.sent(2);
        assert!(out.is_empty());
        let big = [0u8; OUTBOX_SIZE];
        assert!(out.push(&big));
        assert!(!out.push(b"x"));
    }
}
