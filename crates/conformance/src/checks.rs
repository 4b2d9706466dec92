//! The checks, one function each; [`crate::suite!`] turns them into tests.
//!
//! Each starts its own server on port 0, so they run in parallel without sharing state.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{get_once, Conn, GET, GET_CLOSE};
use crate::{Model, Server};

const HELLO: &[u8] = b"HelloWorld\n";

fn assert_hello(response: &crate::client::Response) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, HELLO, "{response:?}");
}

/// 100 requests on one kept-alive connection: each `200` with body `HelloWorld\n`.
pub fn keep_alive_serves_100_sequential_requests(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    for _ in 0..100 {
        conn.send(GET);
        let response = conn.response();
        assert_hello(&response);
        assert_ne!(response.header("connection"), Some("close"));
    }
}

/// `Connection: close` is answered with `Connection: close`, then the server closes.
pub fn connection_close_closes(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(GET_CLOSE);
    let response = conn.response();
    assert_hello(&response);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        conn.is_closed(),
        "connection left open after Connection: close"
    );
}

/// HTTP/1.0 closes after the answer, unless it asked for keep-alive.
pub fn http10_closes_unless_keep_alive(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET / HTTP/1.0\r\n\r\n");
    assert_hello(&conn.response());
    assert!(conn.is_closed(), "HTTP/1.0 connection left open");

    let mut conn = Conn::open(server.addr);
    for _ in 0..3 {
        conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = conn.response();
        assert_hello(&response);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
}

/// Requests sent in one write are answered in order: a GET, a HEAD (no body), a GET with
/// `Connection: close`; then the server closes.
pub fn pipelined_requests_are_answered_in_order(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    let mut batch = Vec::new();
    batch.extend_from_slice(GET);
    batch.extend_from_slice(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n");
    batch.extend_from_slice(GET_CLOSE);
    conn.send(&batch);
    let first = conn.response();
    assert_hello(&first);
    assert_eq!(first.header("connection"), None);
    let second = conn.response_to(true);
    assert_eq!((second.status, second.body.len()), (200, 0));
    let third = conn.response();
    assert_hello(&third);
    assert_eq!(third.header("connection"), Some("close"));
    assert!(conn.is_closed());
}

/// Raw protocol: `HelloWorld\n`, then the server closes.
pub fn raw_protocol_answers_and_closes(bin: &str, _: Model) {
    let server = Server::start(bin, &["--protocol", "raw"]);
    for _ in 0..3 {
        let mut conn = Conn::open(server.addr);
        assert_eq!(conn.read_to_close(), HELLO);
    }
}

/// The model's defining property: 5 concurrent `delay:100ms` requests finish within
/// 2 x 100 ms on a concurrent model, and take at least 5 x 100 ms on the iterative one.
pub fn delay_shows_the_model(bin: &str, model: Model) {
    let server = Server::start(bin, &["--workload", "delay:100ms"]);
    let addr = server.addr;
    let start = Instant::now();
    let clients: Vec<_> = (0..5)
        .map(|_| thread::spawn(move || get_once(addr)))
        .collect();
    for client in clients {
        assert_hello(&client.join().expect("client thread"));
    }
    let elapsed = start.elapsed();
    match model {
        Model::Concurrent => assert!(
            elapsed < Duration::from_millis(200),
            "5 concurrent delay:100ms took {elapsed:?}; a concurrent model overlaps them"
        ),
        Model::Iterative => assert!(
            elapsed >= Duration::from_millis(500),
            "5 delay:100ms took only {elapsed:?}; an iterative server serves one at a time"
        ),
    }
}

/// `cpu:D` is served (the burn happens and the answer is right).
pub fn cpu_workload_is_served(bin: &str, _: Model) {
    let server = Server::start(bin, &["--workload", "cpu:5ms"]);
    let start = Instant::now();
    for _ in 0..3 {
        assert_hello(&get_once(server.addr));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(15),
        "cpu:5ms x 3 answered too fast"
    );
}

/// A request that arrives a few bytes at a time (partial reads) is answered once complete.
pub fn request_sent_a_byte_at_a_time_is_served(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    for _ in 0..2 {
        for chunk in GET.chunks(3) {
            conn.send(chunk);
            thread::sleep(Duration::from_millis(2));
        }
        assert_hello(&conn.response());
    }
}

/// A client that pipelines 5000 requests behind a small receive buffer and reads slowly: the
/// server's writes stall and resume (partial writes), and every answer arrives, whole, in order.
pub fn slow_reader_gets_every_response(bin: &str, _: Model) {
    const REQUESTS: usize = 5000;
    let server = Server::start(bin, &[]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let batch: Vec<u8> = GET.repeat(100);
        for _ in 0..REQUESTS / 100 {
            writer.write_all(&batch).expect("send pipelined requests");
        }
        writer.write_all(GET_CLOSE).expect("send last request");
    });
    thread::sleep(Duration::from_millis(100)); // let the server fill its send buffer
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        use std::io::Read;
        let n = (&stream).read(&mut chunk).expect("read responses");
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
        if all.len() % 32 == 0 {
            thread::sleep(Duration::from_micros(200));
        }
    }
    sender.join().unwrap();
    let text = String::from_utf8(all).expect("responses are text");
    let answers = text.matches("HTTP/1.1 200 OK\r\n").count();
    assert_eq!(
        answers,
        REQUESTS + 1,
        "expected every pipelined request answered"
    );
    assert_eq!(text.matches("\r\n\r\nHelloWorld\n").count(), REQUESTS + 1);
    assert!(text.ends_with("Connection: close\r\nContent-Length: 11\r\n\r\nHelloWorld\n"));
}

/// A malformed request gets `400`, then the server closes.
pub fn malformed_request_gets_400_and_close(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(b"this is not http\r\n\r\n");
    assert_eq!(conn.response().status, 400);
    assert!(conn.is_closed());
    // The server is still fine afterwards.
    assert_hello(&get_once(server.addr));
}

/// A request head over 8 KiB gets `431`, then the server closes.
pub fn oversized_head_gets_431_and_close(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    let mut head = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    // Exactly 8 KiB and no end of head: everything sent is read, so the close is a clean FIN.
    head.resize(8192, b'a');
    conn.send(&head);
    assert_eq!(conn.response().status, 431);
    assert!(conn.is_closed());
    assert_hello(&get_once(server.addr));
}

/// SIGTERM with a request in flight: the request is answered, and the server exits 0 soon.
pub fn sigterm_answers_request_in_flight_and_exits_0(bin: &str, _: Model) {
    let mut server = Server::start(bin, &["--workload", "delay:300ms"]);
    let addr = server.addr;
    let client = thread::spawn(move || {
        let mut conn = Conn::open(addr);
        conn.send(GET);
        let response = conn.response();
        (response, conn.is_closed())
    });
    thread::sleep(Duration::from_millis(50));
    // An idle keep-alive client must not hold the shutdown up. (Opened after the request, so
    // the iterative server is serving the request, not the idle client.)
    let idle = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(50));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let (response, closed) = client.join().unwrap();
    assert_hello(&response);
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "shutdown answers close"
    );
    assert!(closed);
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("server still running 3 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?}",
        signalled.elapsed()
    );
    drop(idle);
}

/// An unknown flag or a bad workload: one line on stderr, exit code 2.
pub fn bad_flags_exit_2_with_one_line(bin: &str, _: Model) {
    for args in [
        &["--no-such-flag"][..],
        &["--workload", "sleep:1s"],
        &["--workload", "delay:5"],
    ] {
        let output = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}
