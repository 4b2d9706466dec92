//! Framing checks: the cases a request-smuggling review tries (issue 28). Each sends the
//! case with a `GET /follow-up` pipelined behind it where that matters: a refused head must be
//! answered, then the connection closed with the follow-up unanswered, since a server that
//! guessed where the refused request ended would answer it. docs/http.md has the table of
//! these cases beside nginx's answers.

use std::time::{Duration, Instant};

use crate::client::{Conn, Response, GET};
use crate::{Model, Server};

const FOLLOW_UP: &[u8] = b"GET /follow-up HTTP/1.1\r\nHost: test\r\n\r\n";

/// Sends `request` then [`FOLLOW_UP`]; asserts the answer is `status`, then a close with
/// nothing more. Returns the answer.
fn refused(server: &Server, request: &[u8], status: u16) -> Response {
    let mut conn = Conn::open(server.addr);
    conn.send(&[request, FOLLOW_UP].concat());
    let response = conn.response();
    let case = String::from_utf8_lossy(request);
    assert_eq!(response.status, status, "{case:?}: {response:?}");
    assert_eq!(response.header("connection"), Some("close"), "{case:?}");
    assert!(
        conn.read_to_close().is_empty(),
        "{case:?}: the follow-up was answered"
    );
    response
}

/// Sends `request` and asserts a `200` that keeps the connection, then the follow-up's `200`.
fn served(server: &Server, request: &[u8]) {
    let mut conn = Conn::open(server.addr);
    conn.send(&[request, FOLLOW_UP].concat());
    let case = String::from_utf8_lossy(request);
    for which in ["the request", "the follow-up"] {
        let response = conn.response();
        assert_eq!(response.status, 200, "{case:?}, {which}: {response:?}");
        assert_eq!(response.body, b"HelloWorld\n", "{case:?}");
    }
}

/// `Content-Length` is ASCII digits between SP or HTAB, nothing else: Unicode spaces around
/// it (U+00A0, U+0085, U+3000), a sign, a list or a repeat are `400` and close (RFC 9110 8.6,
/// RFC 9112 6.3); SP and HTAB around it are fine.
pub fn content_length_is_digits_and_nothing_else(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for value in [
        &b"5\xc2\xa0"[..],
        b"5\xc2\x85",
        b"\xe3\x80\x805",
        b"+5",
        b"5, 5",
        b"5\r\nContent-Length: 5",
        b"5\r\nContent-Length: 6",
    ] {
        let request = [
            &b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: "[..],
            value,
            b"\r\n\r\nhello",
        ]
        .concat();
        refused(&server, &request, 400);
    }
    served(
        &server,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length:\t 5 \t\r\n\r\nhello",
    );
}

/// `Host` by RFC 9112 3.2: missing on HTTP/1.1, repeated (same or not) or invalid is `400`
/// and close; HTTP/1.0 without one, an empty one and an IPv6 literal with a port are served.
pub fn host_is_required_once_and_valid(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    ] {
        refused(&server, request, 400);
    }
    for request in [
        &b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    ] {
        served(&server, request);
    }
}

/// `CONNECT` (a 2xx would open a tunnel, RFC 9110 9.3.6) and the other methods the servers do
/// not serve get `405` with `Allow`, then close; a method no RFC defines gets `501` with
/// `Allow`.
pub fn methods_not_served_get_405_with_allow(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for request in [
        &b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"[..],
        b"PUT / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi",
        b"OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n",
    ] {
        let response = refused(&server, request, 405);
        assert_eq!(response.header("allow"), Some("GET, HEAD, POST"));
    }
    let response = refused(&server, b"BREW / HTTP/1.1\r\nHost: test\r\n\r\n", 501);
    assert_eq!(response.header("allow"), Some("GET, HEAD, POST"));
}

/// `Expect: 100-continue` with a body not yet sent: `HTTP/1.1 100 Continue` at once, then the
/// answer once the body came (RFC 9110 10.1.1). A head refused anyway gets its final answer at
/// once instead; on HTTP/1.0 the expectation is ignored.
pub fn expect_100_continue_gets_100_before_the_body(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    let start = Instant::now();
    conn.send(
        b"POST / HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert_eq!(conn.head(), b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the 100 came after {:?}",
        start.elapsed()
    );
    conn.send(b"hello");
    let response = conn.response();
    assert_eq!(
        (response.status, &response.body[..]),
        (200, &b"HelloWorld\n"[..])
    );
    conn.send(GET);
    assert_eq!(conn.response().status, 200, "the connection goes on");
    drop(conn);

    refused(
        &server,
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        400,
    );
    let mut conn = Conn::open(server.addr);
    conn.send(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(
        conn.nothing_within(Duration::from_millis(300)),
        "a 100 to HTTP/1.0"
    );
    conn.send(b"hello");
    assert_eq!(conn.response().status, 200);
}

/// `HTTP/1.2` to `HTTP/1.9` are served as HTTP/1.1 (RFC 9110 2.5), kept alive; `HTTP/2.0` in
/// an HTTP/1 request line gets `505`; `HTTP/1.10` is not a version (`400`).
pub fn higher_minor_versions_are_served_and_http2_gets_505(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    served(&server, b"GET / HTTP/1.2\r\nHost: test\r\n\r\n");
    served(&server, b"GET / HTTP/1.9\r\nHost: test\r\n\r\n");
    refused(&server, b"GET / HTTP/2.0\r\nHost: test\r\n\r\n", 505);
    refused(&server, b"GET / HTTP/1.10\r\nHost: test\r\n\r\n", 400);
}

/// A request target that fills the 8 KiB head gets `414` (RFC 9112 3); fields that do get
/// `431`; any number of fields that fit in 8 KiB are served (no fixed count).
pub fn a_long_target_gets_414_and_fields_fit_by_size(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut target = b"GET /".to_vec();
    target.resize(8192 + 16, b'a');
    let mut conn = Conn::open(server.addr);
    conn.send(&target);
    assert_eq!(conn.response().status, 414);
    assert!(conn.read_to_close().is_empty());
    drop(conn);
    for count in [65, 1000] {
        let mut request = b"GET / HTTP/1.1\r\nHost: test\r\n".to_vec();
        for i in 0..count {
            request.extend_from_slice(format!("x{i}:\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        served(&server, &request);
    }
}

/// A connection that says nothing is closed after the read timeout (the first-byte deadline),
/// without an answer, long before the idle timeout: a silent client holds a thread or a
/// process of the blocking models for that long at most.
pub fn a_silent_connection_is_closed_at_the_read_timeout(bin: &str, _: Model) {
    let server = Server::start(bin, &["--read-timeout", "300ms", "--idle-timeout", "30s"]);
    let mut conn = Conn::open(server.addr);
    let start = Instant::now();
    assert!(conn.read_to_close().is_empty(), "an answer to nothing");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    // The server still serves.
    let mut conn = Conn::open(server.addr);
    conn.send(GET);
    assert_eq!(conn.response().status, 200);
}
