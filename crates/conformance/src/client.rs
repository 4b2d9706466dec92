//! A small blocking HTTP client for the checks: exact bytes out, parsed responses in.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET / HTTP/1.1` with keep-alive.
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
/// `GET / HTTP/1.1` with `Connection: close`.
pub const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (per Content-Length).
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A connection with a read buffer.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects with a 10 s read timeout.
    ///
    /// # Panics
    /// If the connection fails.
    pub fn open(addr: SocketAddr) -> Conn {
        Conn {
            reader: BufReader::new(connect(addr)),
        }
    }

    /// The underlying stream (for writes and socket options).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Writes all of `bytes`.
    ///
    /// # Panics
    /// On a write error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).expect("write request");
    }

    /// Reads one response (head, then Content-Length bytes of body; none for `head_only`).
    ///
    /// # Panics
    /// On a read error, an early close or an unparsable response.
    pub fn response_to(&mut self, head_only: bool) -> Response {
        let head = self.head();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        let status = parsed.parse(&head).expect("parse response");
        assert!(status.is_complete());
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.trim().parse().expect("numeric content-length"))
            .expect("response has a Content-Length");
        let mut body = vec![0; if head_only { 0 } else { length }];
        self.reader
            .read_exact(&mut body)
            .expect("read response body");
        Response {
            status: parsed.code.expect("status code"),
            headers,
            body,
        }
    }

    /// Reads one response head, through its empty line (an interim `100 Continue` is all
    /// head).
    ///
    /// # Panics
    /// On a read error or a close before the head ends.
    pub fn head(&mut self) -> Vec<u8> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = self
                .reader
                .read_until(b'\n', &mut head)
                .expect("read response head");
            assert!(
                n > 0,
                "connection closed before a full response head: {head:?}"
            );
        }
        head
    }

    /// Reads one response to a request that was not `HEAD`.
    pub fn response(&mut self) -> Response {
        self.response_to(false)
    }

    /// True if the server closed the connection (EOF, or a reset) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
        }
    }

    /// True if no byte of an answer arrives within `wait` (the connection stays usable).
    ///
    /// # Panics
    /// On a read error other than the timeout.
    pub fn nothing_within(&mut self, wait: Duration) -> bool {
        self.stream().set_read_timeout(Some(wait)).unwrap();
        let quiet = match self.reader.fill_buf() {
            Ok(_) => false, // bytes, or the close
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "read: {e}"
                );
                true
            }
        };
        self.stream()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        quiet
    }

    /// Reads until the server closes; returns everything read.
    ///
    /// # Panics
    /// On a read error other than a reset.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        self.reader.read_to_end(&mut all).expect("read to close");
        all
    }
}

/// A plain connection with a 10 s read timeout.
///
/// # Panics
/// If the connection fails.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends [`GET`] on `stream` and reads the answer: `true` when answered (`200`, the hello body),
/// `false` when the server closed the connection instead (an end of file, a reset, or a write
/// failing on a connection already closed). For tests that hold many connections, where some
/// are expected to be refused.
///
/// # Panics
/// When neither comes within the stream's read timeout (set one), or on another answer.
pub fn answered_or_closed(stream: &mut TcpStream) -> bool {
    if stream.write_all(GET).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"HelloWorld\n") {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("neither an answer nor a close within the read timeout")
            }
            Err(_) => return false,
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    true
}

/// One request on a new connection (with `Connection: close`); the response.
pub fn get_once(addr: SocketAddr) -> Response {
    let mut conn = Conn::open(addr);
    conn.send(GET_CLOSE);
    conn.response()
}
