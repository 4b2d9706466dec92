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

    /// Feeds bytes just read.
    pub fn feed(&mut self, bytes: &[u8]) -> Progress {
        if self.raw {
            self.head.extend_from_slice(bytes);
            return if RAW_ANSWER.starts_with(&self.head) {
                Progress::More
            } else {
                Progress::Failed(Bad::Malformed)
            };
        }
        let mut bytes = bytes;
        if self.body_left.is_none() {
            let before = self.head.len();
            self.head.extend_from_slice(bytes);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let head_len = match response.parse(&self.head) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if self.head.len() < MAX_HEAD => {
                    return Progress::More
                }
                _ => return Progress::Failed(Bad::Malformed),
            };
            self.status = response.code.unwrap_or(0);
            let http11 = response.version == Some(1);
            let mut keep_alive = http11;
            let mut length = None;
            for header in response.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(header.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                } else if header.name.eq_ignore_ascii_case("connection") {
                    let value = header.value;
                    if value.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if value.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            let Some(length) = length else {
                return Progress::Failed(Bad::Malformed);
            };
            self.keep_alive = keep_alive;
            self.body_left = Some(length);
            bytes = &bytes[head_len - before..];
        }
        let left = self.body_left.as_mut().expect("head parsed");
        let take = (*left).min(bytes.len() as u64);
        *left -= take;
        if (take as usize) < bytes.len() {
            return Progress::Failed(Bad::Malformed); // bytes beyond the response: none asked
        }
        if *left > 0 {
            return Progress::More;
        }
        if self.status != 200 {
            return Progress::Failed(Bad::Status(self.status));
        }
        Progress::Done {
            keep_alive: self.keep_alive,
        }
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
