//! Sans-IO response reading: bytes in, a verdict out. The engines only move bytes.

/// Largest response head accepted.
pub const MAX_HEAD: usize = 8192;

/// The raw protocol's whole answer.
pub const RAW_ANSWER: &[u8] = b"HelloWorld\n";

/// What went wrong with a response (each counted under its own kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// A status other than 200.
    Status(u16),
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
    },
    /// A bad response.
    Failed(Bad),
}

/// Reads one HTTP/1.x response (or the raw protocol's answer) incrementally.
pub struct ResponseReader {
    raw: bool,
    head: Vec<u8>,
    /// Body bytes still expected, once the head is parsed.
    body_left: Option<u64>,
    keep_alive: bool,
    status: u16,
}

impl ResponseReader {
    /// A reader for the HTTP protocol, or for `raw` (everything until EOF is the answer).
    pub fn new(raw: bool) -> Self {
        ResponseReader {
            raw,
            head: Vec::with_capacity(256),
            body_left: None,
            keep_alive: false,
            status: 0,
        }
    }

    /// Forgets the previous response (the buffer is kept: no allocation per request).
    pub fn reset(&mut self) {
        self.head.clear();
        self.body_left = None;
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
            } else {
                Progress::Failed(Bad::Malformed)
            };
            return (progress, bytes.len());
        }
        let mut used = 0;
        if self.body_left.is_none() {
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
            self.body_left = Some(head.content_length);
            used = head.len - before;
        }
        let left = self.body_left.as_mut().expect("head parsed");
        let take = (*left).min((bytes.len() - used) as u64);
        *left -= take;
        used += take as usize;
        if *left > 0 {
            return (Progress::More, used);
        }
        if self.status != 200 {
            return (Progress::Failed(Bad::Status(self.status)), used);
        }
        let done = Progress::Done {
            keep_alive: self.keep_alive,
        };
        (done, used)
    }

    /// Whether the server keeps the connection open after the response read so far (known once
    /// its head is parsed; also for a response with a status other than 200).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The server closed the connection (read returned 0).
    pub fn eof(&mut self) -> Progress {
        match (self.raw, self.head.is_empty()) {
            (true, false) if self.head == RAW_ANSWER => Progress::Done { keep_alive: false },
            (true, false) => Progress::Failed(Bad::Malformed),
            _ => Progress::Failed(Bad::EarlyClose),
        }
    }
}

/// What a response head says.
struct Head {
    /// Its length in bytes.
    len: usize,
    status: u16,
    keep_alive: bool,
    content_length: u64,
}

/// Parses a response head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Bad> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Bad::Malformed),
    };
    let mut keep_alive = response.version == Some(1);
    let mut content_length = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    let content_length = content_length.ok_or(Bad::Malformed)?;
    Ok(Some(Head {
        len,
        status: response.code.unwrap_or(0),
        keep_alive,
        content_length,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHelloWorld\n";

    #[test]
    fn whole_and_split_responses_complete() {
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(OK), Progress::Done { keep_alive: true });
        for split in 1..OK.len() {
            let mut r = ResponseReader::new(false);
            assert_eq!(r.feed(&OK[..split]), Progress::More, "split at {split}");
            assert_eq!(r.feed(&OK[split..]), Progress::Done { keep_alive: true });
        }
    }

    #[test]
    fn close_and_http10_are_not_kept_alive() {
        let mut r = ResponseReader::new(false);
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(r.feed(close), Progress::Done { keep_alive: false });
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Progress::Done { keep_alive: false }
        );
    }

    #[test]
    fn bad_responses_are_classified() {
        let mut r = ResponseReader::new(false);
        let err = b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(r.feed(err), Progress::Failed(Bad::Status(500)));
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"garbage garbage\r\n\r\n"),
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
                    if let Progress::Done { keep_alive } = progress {
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
    fn raw_answer_is_exact() {
        let mut r = ResponseReader::new(true);
        assert_eq!(r.feed(b"Hello"), Progress::More);
        assert_eq!(r.feed(b"World\n"), Progress::More);
        assert_eq!(r.eof(), Progress::Done { keep_alive: false });
        let mut r = ResponseReader::new(true);
        assert_eq!(r.feed(b"Goodbye\n"), Progress::Failed(Bad::Malformed));
        let mut r = ResponseReader::new(true);
        r.feed(b"Hello");
        assert_eq!(r.eof(), Progress::Failed(Bad::Malformed));
    }
}
