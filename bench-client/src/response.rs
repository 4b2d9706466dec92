//! Sans-IO response reading: bytes in, a verdict out. The engines only move bytes.

use crate::request::StatusSet;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 8192;

/// The raw protocol's whole answer.
pub const RAW_ANSWER: &[u8] = b"HelloWorld\n";

/// What went wrong with a response (each counted under its own kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// A status outside the expected set (`--expect-status`; default 2xx and 3xx).
    Status(u16),
    /// The answer is in the other protocol: HTTP expected and the first bytes are not
    /// `HTTP/`, or raw expected and they are.
    WrongProtocol,
    /// Not a parsable HTTP response, no Content-Length, or bytes beyond the response.
    Malformed,
    /// The server closed before the whole response arrived.
    EarlyClose,
}

/// Outcome of feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes needed.
    More,
    /// A whole, valid response; `keep_alive` says whether the connection may be reused.
    Done {
        /// The server keeps the connection open.
        keep_alive: bool,
        /// Its status code (0 for the raw protocol).
        status: u16,
    },
    /// A bad response.
    Failed(Bad),
}

/// Reads one HTTP/1.x response (or the raw protocol's answer) incrementally.
pub struct ResponseReader {
    raw: bool,
    /// Statuses that count as ok.
    expect: StatusSet,
    /// Answers carry no body (the request was `HEAD`).
    head_only: bool,
    head: Vec<u8>,
    /// The body still expected, once the head is parsed.
    body: Option<Body>,
    keep_alive: bool,
    status: u16,
}

impl ResponseReader {
    /// A reader for the HTTP protocol, or for `raw` (everything until EOF is the answer),
    /// with 2xx and 3xx as the expected statuses and bodies expected.
    pub fn new(raw: bool) -> Self {
        ResponseReader::expecting(raw, StatusSet::default(), false)
    }

    /// A reader whose answers are ok with a status in `expect`; `head_only`: answers to
    /// `HEAD`, whose heads announce a body that never comes.
    pub fn expecting(raw: bool, expect: StatusSet, head_only: bool) -> Self {
        ResponseReader {
            raw,
            expect,
            head_only,
            head: Vec::with_capacity(256),
            body: None,
            keep_alive: false,
            status: 0,
        }
    }

    /// Forgets the previous response (the buffer is kept: no allocation per request).
    pub fn reset(&mut self) {
        self.head.clear();
        self.body = None;
        self.keep_alive = false;
        self.status = 0;
    }

    /// Feeds bytes just read, holding at most this one response: bytes beyond it are an error
    /// (none were asked for).
    pub fn feed(&mut self, bytes: &[u8]) -> Progress {
        match self.feed_one(bytes) {
            (Progress::More, _) => Progress::More,
            (_, used) if used < bytes.len() => Progress::Failed(Bad::Malformed),
            (progress, _) => progress,
        }
    }

    /// Feeds bytes just read that may hold this response and more (pipelined answers): returns
    /// the progress of this response and how many bytes of `bytes` it took. Once it is `Done`
    /// (or failed with a status, which is whole too), the rest belongs to the next response:
    /// [`reset`](Self::reset), then feed the rest. No copy when a head arrives whole.
    pub fn feed_one(&mut self, bytes: &[u8]) -> (Progress, usize) {
        if self.raw {
            self.head.extend_from_slice(bytes);
            let progress = if RAW_ANSWER.starts_with(&self.head) {
                Progress::More
            } else if looks_like_http(&self.head) {
                Progress::Failed(Bad::WrongProtocol)
            } else {
                Progress::Failed(Bad::Malformed)
            };
            return (progress, bytes.len());
        }
        let mut used = 0;
        if self.body.is_none() {
            let before = self.head.len();
            let parsed = if before == 0 {
                parse_head(bytes)
            } else {
                // At most up to MAX_HEAD: a head that does not end by then is refused anyway.
                let room = MAX_HEAD.saturating_sub(before).min(bytes.len());
                self.head.extend_from_slice(&bytes[..room]);
                parse_head(&self.head)
            };
            let head = match parsed {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if before == 0 {
                        self.head
                            .extend_from_slice(&bytes[..bytes.len().min(MAX_HEAD)]);
                    }
                    let progress = if self.head.len() < MAX_HEAD {
                        Progress::More
                    } else {
                        Progress::Failed(Bad::Malformed)
                    };
                    return (progress, bytes.len());
                }
                Err(bad) => return (Progress::Failed(bad), bytes.len()),
            };
            self.status = head.status;
            self.keep_alive = head.keep_alive;
            // RFC 9112 6.3: no body after HEAD, 1xx, 204 or 304, whatever the head says.
            let bodiless = self.head_only || matches!(head.status, 100..=199 | 204 | 304);
            self.body = Some(match (bodiless, head.chunked, head.content_length) {
                (true, _, _) => Body::Length(0),
                (false, true, _) => Body::Chunked(Chunked::default()),
                (false, false, Some(length)) => Body::Length(length),
                (false, false, None) => return (Progress::Failed(Bad::Malformed), bytes.len()),
            });
            used = head.len - before;
        }
        let rest = &bytes[used..];
        let (took, done) = match self.body.as_mut().expect("head parsed") {
            Body::Length(left) => {
                let take = (*left).min(rest.len() as u64);
                *left -= take;
                (take as usize, *left == 0)
            }
            Body::Chunked(chunked) => match chunked.advance(rest) {
                Ok(step) => step,
                Err(bad) => return (Progress::Failed(bad), bytes.len()),
            },
        };
        used += took;
        if !done {
            return (Progress::More, used);
        }
        if !self.expect.contains(self.status) {
            return (Progress::Failed(Bad::Status(self.status)), used);
        }
        let done = Progress::Done {
            keep_alive: self.keep_alive,
            status: self.status,
        };
        (done, used)
    }

    /// Whether the server keeps the connection open after the response read so far (known once
    /// its head is parsed; also for a response with an unexpected status).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The server closed the connection (read returned 0).
    pub fn eof(&mut self) -> Progress {
        match (self.raw, self.head.is_empty()) {
            (true, false) if self.head == RAW_ANSWER => Progress::Done {
                keep_alive: false,
                status: 0,
            },
            (true, false) => Progress::Failed(Bad::Malformed),
            _ => Progress::Failed(Bad::EarlyClose),
        }
    }
}

/// True while `bytes` can still be the start of an HTTP response (`HTTP/`): what tells the two
/// protocols apart on the first answer.
fn looks_like_http(bytes: &[u8]) -> bool {
    let n = bytes.len().min(5);
    bytes[..n] == b"HTTP/"[..n]
}

/// What a response head says.
struct Head {
    /// Its length in bytes.
    len: usize,
    status: u16,
    keep_alive: bool,
    content_length: Option<u64>,
    /// `Transfer-Encoding` ends with `chunked`: the body is in chunks, whatever the
    /// Content-Length says (RFC 9112 6.3).
    chunked: bool,
}

/// How the body of a response is delimited.
enum Body {
    /// This many bytes still to come.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunked),
}

/// Where a chunked body stands (RFC 9112 7.1): a byte-at-a-time state machine over the framing,
/// the chunks' data skipped in bulk; nothing is copied or kept.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    /// The chunk size read so far (hex).
    size: u64,
    /// Hex digits of the size read so far.
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the size's hex digits.
    #[default]
    Size,
    /// After the size: an extension (`;name=value`) or whitespace, up to the CR.
    SizeRest,
    /// The LF ending the size line.
    SizeLf,
    /// Data bytes still to skip.
    Data(u64),
    /// The CR after the data.
    DataCr,
    /// The LF after the data.
    DataLf,
    /// After the last chunk: the start of a trailer line, or the final CRLF.
    TrailerStart,
    /// Inside a trailer field, up to its LF.
    Trailer,
    /// The final LF.
    EndLf,
}

impl Chunked {
    /// Takes what it can of `bytes`: how many it took, and whether the body is over.
    fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), Bad> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            if let Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    DataCr
                } else {
                    Data(left - take)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match (self.state, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == 15 {
                        return Err(Bad::Malformed); // a chunk over 2^60 bytes
                    }
                    self.digits += 1;
                    self.size = self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                    Size
                }
                (Size, b';' | b' ' | b'\t') if self.digits > 0 => SizeRest,
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (SizeRest, b'\r') => SizeLf,
                (SizeRest, b'\n') => return Err(Bad::Malformed),
                (SizeRest, _) => SizeRest,
                (SizeLf, b'\n') if self.size == 0 => TrailerStart,
                (SizeLf, b'\n') => Data(std::mem::take(&mut self.size)),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => {
                    self.digits = 0;
                    Size
                }
                (TrailerStart, b'\r') => EndLf,
                (Trailer, b'\n') => TrailerStart,
                (TrailerStart, b'\n') => return Err(Bad::Malformed),
                (TrailerStart | Trailer, _) => Trailer,
                (EndLf, b'\n') => return Ok((i, true)),
                _ => return Err(Bad::Malformed),
            };
        }
        Ok((i, false))
    }
}

/// Parses a response head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Bad> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if looks_like_http(buf) => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(Bad::WrongProtocol),
        Err(_) if looks_like_http(buf) => return Err(Bad::Malformed),
        Err(_) => return Err(Bad::WrongProtocol),
    };
    let mut keep_alive = response.version == Some(1);
    let mut content_length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = std::str::from_utf8(header.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Some(Head {
        len,
        status: response.code.unwrap_or(0),
        keep_alive,
        content_length,
        chunked,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHelloWorld\n";

    #[test]
    fn whole_and_split_responses_complete() {
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(OK),
            Progress::Done {
                keep_alive: true,
                status: 200
            }
        );
        for split in 1..OK.len() {
            let mut r = ResponseReader::new(false);
            assert_eq!(r.feed(&OK[..split]), Progress::More, "split at {split}");
            assert_eq!(
                r.feed(&OK[split..]),
                Progress::Done {
                    keep_alive: true,
                    status: 200
                }
            );
        }
    }

    #[test]
    fn close_and_http10_are_not_kept_alive() {
        let mut r = ResponseReader::new(false);
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            r.feed(close),
            Progress::Done {
                keep_alive: false,
                status: 200
            }
        );
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Progress::Done {
                keep_alive: false,
                status: 200
            }
        );
    }

    #[test]
    fn bad_responses_are_classified() {
        let mut r = ResponseReader::new(false);
        let err = b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(r.feed(err), Progress::Failed(Bad::Status(500)));
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.1 garbage\r\n\r\n"),
            Progress::Failed(Bad::Malformed)
        );
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\n\r\n"),
            Progress::Failed(Bad::Malformed)
        );
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(&OK[..30]), Progress::More);
        assert_eq!(r.eof(), Progress::Failed(Bad::EarlyClose));
        let mut r = ResponseReader::new(false);
        assert_eq!(r.eof(), Progress::Failed(Bad::EarlyClose));
        let mut r = ResponseReader::new(false);
        let mut twice = OK.to_vec();
        twice.extend_from_slice(b"extra");
        assert_eq!(r.feed(&twice), Progress::Failed(Bad::Malformed));
    }

    #[test]
    fn pipelined_answers_are_taken_one_at_a_time() {
        let close =
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nHelloWorld\n";
        let bytes = [OK, OK, &close[..]].concat();
        // Whole, or split anywhere: each answer takes exactly its own bytes.
        for split in 0..bytes.len() {
            let mut r = ResponseReader::new(false);
            let mut chunks = [&bytes[..split], &bytes[split..]];
            let mut seen = Vec::new();
            for chunk in &mut chunks {
                while !chunk.is_empty() {
                    let (progress, used) = r.feed_one(chunk);
                    assert!(used > 0 && used <= chunk.len(), "split at {split}");
                    *chunk = &chunk[used..];
                    if let Progress::Done { keep_alive, .. } = progress {
                        seen.push(keep_alive);
                        r.reset();
                    } else {
                        assert_eq!(progress, Progress::More, "split at {split}");
                    }
                }
            }
            assert_eq!(seen, [true, true, false], "split at {split}");
        }
        // An error status is whole too: the next answer starts after it.
        let err = b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno";
        let bytes = [&err[..], OK].concat();
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed_one(&bytes),
            (Progress::Failed(Bad::Status(500)), err.len())
        );
        assert!(r.keep_alive());
        // A head that never ends is refused at MAX_HEAD, however it arrives.
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed_one(b"HTTP/1.1 200 OK\r\n").0, Progress::More);
        let filler = [b'x'; MAX_HEAD];
        assert_eq!(r.feed_one(&filler).0, Progress::Failed(Bad::Malformed));
    }

    #[test]
    fn expected_statuses_and_bodiless_answers() {
        // 2xx and 3xx are answers by default; 204 and 304 need no Content-Length.
        for (bytes, status) in [
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], 204),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
                304,
            ),
            (
                b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
                301,
            ),
        ] {
            let mut r = ResponseReader::new(false);
            assert_eq!(
                r.feed(bytes),
                Progress::Done {
                    keep_alive: true,
                    status
                }
            );
        }
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(not_found), Progress::Failed(Bad::Status(404)));
        let mut r = ResponseReader::expecting(false, "404".parse().unwrap(), false);
        assert_eq!(
            r.feed(not_found),
            Progress::Done {
                keep_alive: true,
                status: 404
            }
        );
        // HEAD: the head announces 11 bytes that never come.
        let mut r = ResponseReader::expecting(false, StatusSet::default(), true);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            r.feed(head),
            Progress::Done {
                keep_alive: true,
                status: 200
            }
        );
    }

    #[test]
    fn chunked_bodies_are_read_split_anywhere() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nHello\r\n6\r\nWorld\n\r\n0\r\nX-Trailer: t\r\n\r\n";
        // Two chunked answers then a plain one, one read or split at any byte: each answer takes
        // exactly its own bytes.
        let bytes = [&chunked[..], chunked, OK].concat();
        for split in 0..bytes.len() {
            let mut r = ResponseReader::new(false);
            let mut seen = 0;
            for mut chunk in [&bytes[..split], &bytes[split..]] {
                while !chunk.is_empty() {
                    let (progress, used) = r.feed_one(chunk);
                    chunk = &chunk[used..];
                    match progress {
                        Progress::Done { status: 200, .. } => {
                            seen += 1;
                            r.reset();
                        }
                        other => assert_eq!(other, Progress::More, "split at {split}"),
                    }
                }
            }
            assert_eq!(seen, 3, "split at {split}");
        }
        // Chunked wins over a Content-Length; no trailer is fine.
        let mut r = ResponseReader::new(false);
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\
            Transfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";
        assert_eq!(
            r.feed(both),
            Progress::Done {
                keep_alive: true,
                status: 200
            }
        );
        // Bad framing is malformed: no size, a data chunk too long, a bare LF.
        for bad in [
            &b"\r\n"[..],
            b"zz\r\n",
            b"2\r\nabc\r\n",
            b"1\nx\r\n",
            b"10000000000000000\r\n",
        ] {
            let mut r = ResponseReader::new(false);
            let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            let answer = [&head[..], bad].concat();
            assert_eq!(
                r.feed(&answer),
                Progress::Failed(Bad::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_other_protocol_is_told_from_a_bad_answer() {
        // The raw answer to an HTTP client, whole or in its first bytes.
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(RAW_ANSWER), Progress::Failed(Bad::WrongProtocol));
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(b"Hel"), Progress::Failed(Bad::WrongProtocol));
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(b"HTT"), Progress::More);
        // An HTTP answer to a raw client.
        let mut r = ResponseReader::new(true);
        assert_eq!(
            r.feed(b"HTTP/1.1 400 Bad Request\r\n"),
            Progress::Failed(Bad::WrongProtocol)
        );
    }

    #[test]
    fn raw_answer_is_exact() {
        let mut r = ResponseReader::new(true);
        assert_eq!(r.feed(b"Hello"), Progress::More);
        assert_eq!(r.feed(b"World\n"), Progress::More);
        assert_eq!(
            r.eof(),
            Progress::Done {
                keep_alive: false,
                status: 0
            }
        );
        let mut r = ResponseReader::new(true);
        assert_eq!(r.feed(b"Goodbye\n"), Progress::Failed(Bad::Malformed));
        let mut r = ResponseReader::new(true);
        r.feed(b"Hello");
        assert_eq!(r.eof(), Progress::Failed(Bad::Malformed));
    }
}
