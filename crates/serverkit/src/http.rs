//! Sans-IO HTTP/1.1: request parsing and the response bytes. No I/O in here.
//!
//! Every model drives the same two buffers (through [`crate::connection::Connection`]):
//!
//! - [`RequestBuffer`] receives bytes (`spare` + `filled`) and hands out complete requests in
//!   order (`next_request`), so partial reads and pipelined requests are handled once, here. A
//!   request with a body (`Content-Length`) is handed out once its body has arrived (and been
//!   skipped: it is never stored). Its storage is a fixed 8 KiB array: a request head that
//!   does not fit is answered `431`, so no client can make a connection's memory grow.
//! - [`Outbox`] collects response bytes (several when requests are pipelined) so that they leave
//!   in one `write`, and remembers how much a partial write already sent.
//!
//! Every answer carries `Server`, `Date` (cached, see [`crate::date`]), `Content-Type` and
//! `Content-Length`. A [`Response`] is two `'static` byte strings with the date between them:
//! answering a request copies bytes and formats nothing.

use std::fmt;
use std::mem::MaybeUninit;

use crate::date::{DateCache, DATE_LEN};
use crate::framing::{self, Head, Version};

/// Largest request head accepted; a longer one is answered `414` (its request line had not
/// ended) or `431` (its fields had not), and the connection closed.
pub const MAX_HEAD: usize = 8192;

/// The body every workload answers with.
pub const HELLO_BODY: &[u8] = b"HelloWorld\n";

/// Fields parsed into an array on the stack; a head with more (still within [`MAX_HEAD`]) is
/// parsed again into one on the heap, sized for the most a head of its length can hold.
const INLINE_HEADERS: usize = 64;

/// The interim answer to `Expect: 100-continue` (RFC 9110 10.1.1, 15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Which headers the answers carry (`--headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Headers {
    /// `Server`, `Date`, `Content-Type`, `Content-Length` (and `Connection` where needed).
    Standard,
    /// `Content-Length` (and `Connection` where needed) only: the fewest bytes HTTP/1.1 allows.
    Minimal,
}

/// One answer: `start`, the date when `dated`, then `rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    start: &'static [u8],
    dated: bool,
    rest: &'static [u8],
}

/// The [`Response`] for a status, a body (and its length) and any further headers.
macro_rules! response {
    (Standard, $status:literal, $len:literal, $body:literal $(, $header:literal)*) => {
        Response {
            start: concat!("HTTP/1.1 ", $status, "\r\nServer: archbench\r\nDate: ").as_bytes(),
            dated: true,
            rest: concat!(
                "\r\nContent-Type: text/plain\r\nContent-Length: ", $len, "\r\n",
                $($header, "\r\n",)* "\r\n", $body
            )
            .as_bytes(),
        }
    };
    (Minimal, $status:literal, $len:literal, $body:literal $(, $header:literal)*) => {
        Response {
            start: concat!("HTTP/1.1 ", $status, "\r\n").as_bytes(),
            dated: false,
            rest: concat!($($header, "\r\n",)* "Content-Length: ", $len, "\r\n\r\n", $body)
                .as_bytes(),
        }
    };
}

/// The three answers to a request, in both header sets: kept alive, HTTP/1.0 kept alive, close.
macro_rules! hello_responses {
    ($headers:ident) => {
        [
            response!($headers, "200 OK", "11", "HelloWorld\n"),
            response!(
                $headers,
                "200 OK",
                "11",
                "HelloWorld\n",
                "Connection: keep-alive"
            ),
            response!(
                $headers,
                "200 OK",
                "11",
                "HelloWorld\n",
                "Connection: close"
            ),
        ]
    };
}

const HELLO_STANDARD: [Response; 3] = hello_responses!(Standard);
const HELLO_MINIMAL: [Response; 3] = hello_responses!(Minimal);

impl Response {
    /// Its length in bytes.
    pub const fn len(&self) -> usize {
        self.start.len() + if self.dated { DATE_LEN } else { 0 } + self.rest.len()
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The whole answer with `date` in it (tests and tools; servers copy it into an [`Outbox`]).
    pub fn to_bytes(&self, date: &DateCache) -> Vec<u8> {
        let date: &[u8] = if self.dated { date.text() } else { b"" };
        [self.start, date, self.rest].concat()
    }

    /// The same answer without its body (for `HEAD`).
    fn without_body(self) -> Response {
        Response {
            rest: &self.rest[..self.rest.len() - HELLO_BODY.len()],
            ..self
        }
    }
}

/// The longest answer any request gets: an [`Outbox`] with this much room takes any of them.
pub const MAX_RESPONSE: usize = 256;

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
    /// The answer to this request; `closing` forces `Connection: close` (the server is
    /// shutting down). Returns it and whether to close after sending it.
    pub fn response(&self, closing: bool, headers: Headers) -> (Response, bool) {
        let close = closing || !self.keep_alive;
        let set = match headers {
            Headers::Standard => &HELLO_STANDARD,
            Headers::Minimal => &HELLO_MINIMAL,
        };
        let full = match (close, self.http10) {
            (true, _) => set[2],
            (false, false) => set[0],
            (false, true) => set[1],
        };
        let response = if self.head_only {
            full.without_body()
        } else {
            full
        };
        (response, close)
    }
}

/// A request the server refuses; each maps to a status and closes the connection.
/// docs/http.md lists which bytes get which, beside nginx's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, a bad field (`Content-Length` not digits, a repeated one, a missing,
    /// repeated or invalid `Host`) (400).
    Malformed,
    /// A method the servers know but do not serve, such as `CONNECT` (405, with `Allow`).
    MethodNotAllowed,
    /// A request line (its target) that does not end within [`MAX_HEAD`] bytes (414).
    UriTooLong,
    /// A request head over [`MAX_HEAD`] bytes (431).
    HeadTooLarge,
    /// Valid HTTP this server does not implement: chunked request bodies (501).
    NotImplemented,
    /// A method neither RFC 9110 nor RFC 5789 defines (501, with `Allow`).
    UnknownMethod,
    /// A major version other than 1, such as `HTTP/2.0` on an HTTP/1 connection (505).
    VersionNotSupported,
    /// The client took longer than the read timeout to send its request head (408).
    Timeout,
}

impl HttpError {
    /// The answer sent before closing.
    pub fn response(&self, headers: Headers) -> Response {
        macro_rules! answers {
            ($headers:ident) => {
                match self {
                    HttpError::Malformed => response!(
                        $headers,
                        "400 Bad Request",
                        "12",
                        "bad request\n",
                        "Connection: close"
                    ),
                    HttpError::MethodNotAllowed => response!(
                        $headers,
                        "405 Method Not Allowed",
                        "19",
                        "method not allowed\n",
                        "Allow: GET, HEAD, POST",
                        "Connection: close"
                    ),
                    HttpError::UriTooLong => response!(
                        $headers,
                        "414 URI Too Long",
                        "19",
                        "target over 8 KiB.\n",
                        "Connection: close"
                    ),
                    HttpError::HeadTooLarge => response!(
                        $headers,
                        "431 Request Header Fields Too Large",
                        "17",
                        "head over 8 KiB.\n",
                        "Connection: close"
                    ),
                    HttpError::NotImplemented => response!(
                        $headers,
                        "501 Not Implemented",
                        "16",
                        "not implemented\n",
                        "Connection: close"
                    ),
                    HttpError::UnknownMethod => response!(
                        $headers,
                        "501 Not Implemented",
                        "15",
                        "unknown method\n",
                        "Allow: GET, HEAD, POST",
                        "Connection: close"
                    ),
                    HttpError::VersionNotSupported => response!(
                        $headers,
                        "505 HTTP Version Not Supported",
                        "23",
                        "HTTP/1.1 and 1.0 only.\n",
                        "Connection: close"
                    ),
                    HttpError::Timeout => response!(
                        $headers,
                        "408 Request Timeout",
                        "16",
                        "request timeout\n",
                        "Connection: close"
                    ),
                }
            };
        }
        match headers {
            Headers::Standard => answers!(Standard),
            Headers::Minimal => answers!(Minimal),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            HttpError::Malformed => "malformed request",
            HttpError::MethodNotAllowed => "method not allowed",
            HttpError::UriTooLong => "request target too long",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::NotImplemented => "not implemented",
            HttpError::UnknownMethod => "unknown method",
            HttpError::VersionNotSupported => "HTTP version not supported",
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
/// let input = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
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
    /// The request whose body is arriving: handed out once the body is all here.
    awaiting_body: Option<Request>,
    /// A `100 Continue` is owed: the head asked for it and none of its body has come.
    continue_due: bool,
}

/// What a connection is in the middle of receiving (which read deadline applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Nothing: between requests (the idle timeout applies).
    Idle,
    /// Part of a request head (the read timeout applies, from its first byte).
    Head,
    /// A request body (the read timeout applies to each stretch without progress).
    Body,
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
            awaiting_body: None,
            continue_due: false,
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
        self.reading() != Reading::Idle
    }

    /// What is being received: nothing, a head, or a body.
    pub fn reading(&self) -> Reading {
        if self.awaiting_body.is_some() {
            Reading::Body
        } else if self.start < self.end {
            Reading::Head
        } else {
            Reading::Idle
        }
    }

    /// Drops everything received (the connection only drains its input from now on).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.body_left = 0;
        self.awaiting_body = None;
        self.continue_due = false;
    }

    /// True once after a head with `Expect: 100-continue` whose body has not started: the
    /// caller sends [`CONTINUE`] before waiting for the body.
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_due)
    }

    /// The next complete request, in arrival order.
    ///
    /// `Ok(None)` means more bytes are needed. A request with a body (`Content-Length`) comes
    /// out once all of its body has arrived; the body is skipped as it arrives, so it never
    /// needs to fit in the buffer, and the request is answered only after it.
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
        if let Some(request) = self.awaiting_body.take() {
            return Ok(Some(request));
        }
        if self.start == self.end {
            return Ok(None);
        }
        let bytes = &self.bytes[self.start..self.end];
        let full = bytes.len() >= MAX_HEAD;
        let (head_len, head) = match parse_head(bytes) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if full => return Err(too_large(bytes)),
            Ok(None) => return Ok(None),
            Err(Refusal::Answer(error)) => return Err(error),
            // Cannot happen: the second array holds as many fields as the bytes can.
            Err(Refusal::TooManyFields) => return Err(HttpError::HeadTooLarge),
            Err(Refusal::Version) => match framing::version(bytes) {
                Version::Patch(at) => {
                    // The minor digit of this head's own request line, which has ended: no
                    // other request's bytes change, and the parse again accepts the version.
                    self.bytes[self.start + at] = b'1';
                    return self.next_request();
                }
                Version::Incomplete if full => return Err(too_large(bytes)),
                Version::Incomplete => return Ok(None),
                Version::NotSupported => return Err(HttpError::VersionNotSupported),
                Version::Malformed => return Err(HttpError::Malformed),
            },
        };
        self.start += head_len;
        if head.body == 0 {
            return Ok(Some(head.request));
        }
        self.body_left = head.body;
        self.awaiting_body = Some(head.request);
        self.continue_due = head.expects_continue && self.start == self.end;
        self.next_request()
    }
}

/// Why a head was not accepted as it stands.
enum Refusal {
    /// Answer this and close.
    Answer(HttpError),
    /// `httparse` refused the version: [`framing::version`] decides.
    Version,
    /// More fields than the array given to `httparse`.
    TooManyFields,
}

/// Parses the head at the start of `bytes`: its length and what it asks, `None` if it has not
/// ended. Fields go into an array on the stack, left uninitialised (`httparse` writes only
/// the fields it finds, so a request pays for none it does not have). A head with more fields
/// than fit is parsed again, once it has ended, into an array on the heap sized for the most
/// its bytes can hold (rare: a head of many tiny fields), so the only limit is [`MAX_HEAD`].
fn parse_head(bytes: &[u8]) -> Result<Option<(usize, Head)>, Refusal> {
    let mut headers = [const { MaybeUninit::uninit() }; INLINE_HEADERS];
    match parse_into(bytes, &mut headers) {
        // Until then each read would pay for the heap array again: wait for the empty line.
        Err(Refusal::TooManyFields) if !head_ended(bytes) && bytes.len() < MAX_HEAD => Ok(None),
        Err(Refusal::TooManyFields) => {
            // The shortest field line is 3 bytes (`a:` and LF).
            let mut many = Vec::with_capacity(bytes.len() / 3 + 1);
            parse_into(bytes, many.spare_capacity_mut())
        }
        other => other,
    }
}

/// True once `bytes` hold the empty line that ends a head (after any empty lines before the
/// request line; line ends CRLF or LF).
fn head_ended(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let head = &bytes[start..];
    head.windows(2).any(|w| w == b"\n\n") || head.windows(3).any(|w| w == b"\n\r\n")
}

/// One `httparse` pass over `bytes` into `headers`, then [`framing::interpret`].
fn parse_into<'b>(
    bytes: &'b [u8],
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<(usize, Head)>, Refusal> {
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(bytes, headers) {
        Ok(httparse::Status::Complete(len)) => framing::interpret(&parsed)
            .map(|head| Some((len, head)))
            .map_err(Refusal::Answer),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::Version) => Err(Refusal::Version),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::TooManyFields),
        Err(_) => Err(Refusal::Answer(HttpError::Malformed)),
    }
}

/// The answer to a head that filled the buffer: 414 if its request line had not ended yet
/// (RFC 9112 3), 431 if its fields had not (RFC 6585 5).
fn too_large(bytes: &[u8]) -> HttpError {
    if framing::request_line_ended(bytes) {
        HttpError::HeadTooLarge
    } else {
        HttpError::UriTooLong
    }
}

/// Bytes of the outbox: 2 KiB, about a dozen answers.
pub const OUTBOX_SIZE: usize = 2048;

/// Response bytes waiting to be written, so pipelined answers leave in one `write`.
pub struct Outbox {
    bytes: [u8; OUTBOX_SIZE],
    len: usize,
    sent: usize,
}

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

    /// Appends bytes; false (and nothing appended) when they do not fit: write first.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if self.len + bytes.len() > OUTBOX_SIZE {
            return false;
        }
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    /// Appends an answer with `date` in it; false (and nothing appended) when it does not fit.
    pub fn push_response(&mut self, response: Response, date: &DateCache) -> bool {
        if self.room() < response.len() {
            return false;
        }
        self.push(response.start);
        if response.dated {
            self.push(date.text());
        }
        self.push(response.rest);
        true
    }

    /// Free bytes left.
    pub fn room(&self) -> usize {
        OUTBOX_SIZE - self.len
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

    /// Drops whatever waits (for a connection state reused for the next connection).
    pub fn clear(&mut self) {
        self.len = 0;
        self.sent = 0;
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
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Close\r\n\r\n",
                false,
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false, true),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                true,
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade, close\r\n\r\n",
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
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n",
        );
        assert_eq!(buf.next_request(), Ok(None));
        let chunk = [b'x'; 4000];
        for _ in 0..4 {
            feed(&mut buf, &chunk);
            assert_eq!(buf.next_request(), Ok(None));
        }
        feed(&mut buf, &chunk);
        assert!(
            buf.next_request().unwrap().is_some(),
            "the POST, body all here"
        );
        feed(&mut buf, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
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
        feed(
            &mut buf,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
        );
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
        let date = DateCache::fixed(b"Sun, 06 Nov 1994 08:49:37 GMT");
        let text = |r: Response| String::from_utf8(r.to_bytes(&date)).unwrap();
        let req = Request {
            keep_alive: true,
            http10: false,
            head_only: false,
        };
        let (keep, close) = req.response(false, Headers::Standard);
        assert!(!close);
        assert_eq!(
            text(keep),
            "HTTP/1.1 200 OK\r\nServer: archbench\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nHelloWorld\n"
        );
        let (closing, close) = req.response(true, Headers::Standard);
        assert!(close && text(closing).contains("\r\nConnection: close\r\n"));
        let head = Request {
            head_only: true,
            ..req
        };
        let head_text = text(head.response(false, Headers::Standard).0);
        assert!(
            head_text.ends_with("Content-Length: 11\r\n\r\n"),
            "{head_text}"
        );
        let ten = Request {
            keep_alive: true,
            http10: true,
            head_only: false,
        };
        assert!(text(ten.response(false, Headers::Standard).0)
            .contains("\r\nConnection: keep-alive\r\n"));
        for error in [
            HttpError::Malformed,
            HttpError::MethodNotAllowed,
            HttpError::UriTooLong,
            HttpError::HeadTooLarge,
            HttpError::NotImplemented,
            HttpError::UnknownMethod,
            HttpError::VersionNotSupported,
            HttpError::Timeout,
        ] {
            let t = text(error.response(Headers::Standard));
            assert!(
                t.contains("\r\nDate: ") && t.contains("\r\nConnection: close\r\n"),
                "{t}"
            );
            let (head, body) = t.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("Content-Length: {}", body.len())),
                "{t}"
            );
            assert!(error.response(Headers::Standard).len() <= MAX_RESPONSE);
            let minimal = text(error.response(Headers::Minimal));
            assert!(minimal.starts_with("HTTP/1.1 4") || minimal.starts_with("HTTP/1.1 5"));
            assert!(!minimal.contains("Date:") && minimal.contains("Connection: close\r\n"));
        }
        assert!(keep.len() <= MAX_RESPONSE && closing.len() <= MAX_RESPONSE);
        // The minimal set: the bytes of the first archbench servers, before issue 15.
        let (minimal, _) = req.response(true, Headers::Minimal);
        assert_eq!(
            text(minimal),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nHelloWorld\n"
        );
        assert_eq!(minimal.len(), text(minimal).len());
    }

    #[test]
    fn close_wins_in_any_connection_token_list() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close, keep-alive\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
        ] {
            let mut buf = RequestBuffer::new();
            feed(&mut buf, input);
            let req = buf.next_request().unwrap().unwrap();
            assert!(!req.keep_alive, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_request_with_a_body_comes_out_once_its_body_is_here() {
        let mut buf = RequestBuffer::new();
        feed(
            &mut buf,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123",
        );
        assert_eq!(buf.next_request(), Ok(None));
        assert_eq!(buf.reading(), Reading::Body);
        feed(&mut buf, b"456789GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(buf.next_request().unwrap().is_some(), "the POST");
        assert!(buf.next_request().unwrap().is_some(), "the GET after it");
        assert_eq!(buf.reading(), Reading::Idle);
    }

    /// The outcome of one head: the request (`None` until it is whole), or the refusal.
    fn outcome(input: &[u8]) -> Result<Option<Request>, HttpError> {
        let mut buf = RequestBuffer::new();
        feed(&mut buf, input);
        buf.next_request()
    }

    #[test]
    fn framing_refusals_by_the_rfcs() {
        use HttpError::*;
        let cases: [(&[u8], HttpError); 16] = [
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\xc2\xa0\r\n\r\n",
                Malformed,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\xc2\x85\r\n\r\n",
                Malformed,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \xe3\x80\x805\r\n\r\n",
                Malformed,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Malformed,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\n",
                Malformed,
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Malformed),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", Malformed),
            (
                b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
                MethodNotAllowed,
            ),
            (b"PUT / HTTP/1.1\r\nHost: t\r\n\r\n", MethodNotAllowed),
            (b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n", UnknownMethod),
            (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", VersionNotSupported),
            (b"GET / HTTP/1.10\r\nHost: t\r\n\r\n", Malformed),
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection:\x0bclose\r\n\r\n",
                Malformed,
            ),
        ];
        for (input, error) in cases {
            assert_eq!(
                outcome(input),
                Err(error),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn framing_acceptances_by_the_rfcs() {
        let served: [&[u8]; 6] = [
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\t127.0.0.1:80 \t\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length:\t0\t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection:\tclose\t\r\n\r\n",
        ];
        for input in served {
            assert!(
                outcome(input).unwrap().is_some(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // Versions 1.2 to 1.9 are served as 1.1, pipelined or split.
        let mut buf = RequestBuffer::new();
        feed(&mut buf, b"GET / HTTP/1.2\r\nHost: t\r\n\r\nGET / HTTP/1.");
        let first = buf.next_request().unwrap().unwrap();
        assert!(first.keep_alive && !first.http10);
        assert_eq!(buf.next_request(), Ok(None));
        feed(&mut buf, b"9\r\nHost: t\r\nConnection: close\r\n\r\n");
        let second = buf.next_request().unwrap().unwrap();
        assert!(!second.keep_alive && !second.http10);
        // HTTP/2.0 split before its line ends: the answer waits for the line.
        let mut buf = RequestBuffer::new();
        feed(&mut buf, b"GET / HTTP/2.0");
        assert_eq!(buf.next_request(), Ok(None));
        feed(&mut buf, b"\r\n");
        assert_eq!(buf.next_request(), Err(HttpError::VersionNotSupported));
        // Not a version, line not ended: refused without waiting for the rest of the line.
        assert_eq!(outcome(b"GET / XTTP/1.1"), Err(HttpError::Malformed));
    }

    #[test]
    fn a_long_target_is_414_and_long_fields_431() {
        let mut target = b"GET /".to_vec();
        target.resize(MAX_HEAD, b'a');
        assert_eq!(outcome(&target), Err(HttpError::UriTooLong));
        let mut fields = b"GET / HTTP/1.1\r\nHost: t\r\nX: ".to_vec();
        fields.resize(MAX_HEAD, b'a');
        assert_eq!(outcome(&fields), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn any_number_of_fields_within_the_head_limit_is_served() {
        for count in [63, 64, 65, 500, 2000] {
            let mut input = b"GET / HTTP/1.1\r\n".to_vec();
            for _ in 0..count {
                input.extend_from_slice(b"a:\r\n");
            }
            input.extend_from_slice(b"Host: t\r\nConnection: close\r\n\r\n");
            let request = outcome(&input).unwrap().unwrap();
            assert!(
                !request.keep_alive,
                "{count} fields: the last ones read too"
            );
        }
        let mut shortest = b"GET / HTTP/1.1\nHost: t\n".to_vec();
        while shortest.len() + 4 < MAX_HEAD {
            shortest.extend_from_slice(b"a:\n");
        }
        shortest.push(b'\n');
        assert!(
            outcome(&shortest).unwrap().is_some(),
            "the most fields 8 KiB can hold"
        );
    }

    #[test]
    fn expect_100_continue_is_owed_only_before_a_body_starts() {
        let head =
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
        let mut buf = RequestBuffer::new();
        feed(&mut buf, head);
        assert_eq!(buf.next_request(), Ok(None));
        assert!(buf.take_continue(), "owed once");
        assert!(!buf.take_continue(), "and only once");
        feed(&mut buf, b"abc");
        assert!(buf.next_request().unwrap().is_some());
        // The body came with the head, no body at all, or HTTP/1.0: none owed.
        for input in [
            &[&head[..], b"abc"].concat()[..],
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        ] {
            let mut buf = RequestBuffer::new();
            feed(&mut buf, input);
            let _ = buf.next_request();
            assert!(!buf.take_continue(), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn many_fields_trickled_in_are_parsed_into_the_heap_once_the_head_ends() {
        let mut buf = RequestBuffer::new();
        feed(&mut buf, b"GET / HTTP/1.1\r\nHost: t\r\n");
        for _ in 0..100 {
            feed(&mut buf, b"a:\r\n");
            assert_eq!(buf.next_request(), Ok(None), "no head yet");
        }
        feed(&mut buf, b"\r\n");
        assert!(buf.next_request().unwrap().is_some());
    }

    #[test]
    fn the_allow_header_lists_what_is_served() {
        let date = DateCache::fixed(b"Sun, 06 Nov 1994 08:49:37 GMT");
        let allow = format!("\r\nAllow: {}\r\n", crate::framing::ALLOWED_METHODS);
        for error in [HttpError::MethodNotAllowed, HttpError::UnknownMethod] {
            for headers in [Headers::Standard, Headers::Minimal] {
                let text = String::from_utf8(error.response(headers).to_bytes(&date)).unwrap();
                assert!(text.contains(&allow), "{text}");
            }
        }
        for method in crate::framing::ALLOWED_METHODS.split(", ") {
            let input = format!("{method} / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert!(outcome(input.as_bytes()).unwrap().is_some(), "{method}");
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
