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

/// Pipelined requests followed by garbage, as many as fill the server's 2 KiB of waiting
/// answers (about 40) give or take: every request is answered in order, then the `400`, then
/// the close. (The `400` must not be lost when the answers before it fill the outbox.)
pub fn pipelined_requests_then_garbage_get_every_answer_then_400(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for count in 38..=42 {
        let mut conn = Conn::open(server.addr);
        let mut batch = GET.repeat(count);
        batch.extend_from_slice(b"garbage garbage\r\n\r\n");
        conn.send(&batch);
        for i in 0..count {
            assert_eq!(conn.response().status, 200, "{count} pipelined: answer {i}");
        }
        assert_eq!(
            conn.response().status,
            400,
            "{count} pipelined: the 400 after them"
        );
        assert!(conn.is_closed());
    }
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

/// Half a request head, then silence: the server answers `408` after the read timeout, and
/// closes.
pub fn read_timeout_answers_408_and_closes(bin: &str, _: Model) {
    let server = Server::start(bin, &["--read-timeout", "300ms"]);
    let mut conn = Conn::open(server.addr);
    let start = Instant::now();
    conn.send(b"GET / HTTP/1.1\r\nHost: slow");
    assert_eq!(conn.response().status, 408);
    assert!(conn.is_closed());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "408 after only {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "408 only after {waited:?}");
}

/// A kept-alive connection that stays idle past the idle timeout is closed.
pub fn idle_timeout_closes_an_idle_connection(bin: &str, _: Model) {
    let server = Server::start(bin, &["--idle-timeout", "300ms"]);
    let mut conn = Conn::open(server.addr);
    conn.send(GET);
    assert_hello(&conn.response());
    let start = Instant::now();
    assert!(conn.is_closed(), "idle connection left open");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "closed after {waited:?}"
    );
}

fn slowloris(addr: std::net::SocketAddr, k: usize) -> Vec<Conn> {
    (0..k)
        .map(|_| {
            let mut c = Conn::open(addr);
            c.send(b"GET / HTTP/1.1\r\nHost: slowloris\r\n");
            c
        })
        .collect()
}

/// K connections that send half a request and stall. A concurrent model keeps answering
/// others at once; the iterative server cannot (by its nature): the next client waits until
/// the read timeout frees it. Either way the stalled ones get `408` and are closed.
pub fn slowloris_shows_the_model(bin: &str, model: Model) {
    let server = Server::start(bin, &["--read-timeout", "1s"]);
    let k = if model == Model::Iterative { 1 } else { 5 };
    let mut stalled = slowloris(server.addr, k);
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    assert_hello(&get_once(server.addr));
    let waited = start.elapsed();
    match model {
        Model::Concurrent => assert!(waited < Duration::from_millis(500), "starved for {waited:?} by {k} slowloris clients"),
        Model::Iterative => assert!(
            waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
            "an iterative server is held by a slowloris client until its read timeout; waited {waited:?}"
        ),
    }
    for conn in &mut stalled {
        assert_eq!(conn.response().status, 408);
        assert!(conn.is_closed());
    }
}

/// Clients that reset before their answer, and clients that connect and vanish, cost the
/// server nothing: it goes on serving (SIGPIPE never kills it).
pub fn resets_and_vanishing_clients_cost_nothing(bin: &str, _: Model) {
    let mut server = Server::start(bin, &["--workload", "delay:20ms", "--read-timeout", "1s"]);
    for _ in 0..10 {
        let conn = Conn::open(server.addr);
        drop(conn); // connect and vanish
        let mut conn = Conn::open(server.addr);
        conn.send(GET);
        socket2::SockRef::from(&*conn.stream())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(conn); // reset while the server is still working on the answer
    }
    thread::sleep(Duration::from_millis(100));
    assert_hello(&get_once(server.addr));
    assert!(
        server.wait_exit(Duration::from_millis(10)).is_none(),
        "server died"
    );
}

/// A client that sends its request and shuts down its writing side still gets its answer.
pub fn half_closed_client_gets_its_answer(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(GET);
    conn.stream().shutdown(std::net::Shutdown::Write).unwrap();
    assert_hello(&conn.response());
    assert!(
        conn.is_closed(),
        "the server closes once the client's side is done"
    );
}

/// Out of file descriptors (RLIMIT_NOFILE 32 and many idle connections): an existing
/// connection keeps being served, the server does not spin, and it accepts again once
/// descriptors are free.
pub fn out_of_descriptors_keeps_serving_and_recovers(bin: &str, _: Model) {
    let server = Server::start_with_fd_limit(bin, &[], Some(32));
    let mut existing = Conn::open(server.addr);
    existing.send(GET);
    assert_hello(&existing.response());
    let hogs: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    thread::sleep(Duration::from_millis(300));
    existing.send(GET);
    assert_hello(&existing.response());
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let spent = server.cpu_ticks() - before;
    assert!(
        spent <= 15,
        "spun while out of descriptors: {spent} ticks of CPU in 1 s"
    );
    drop(existing);
    drop(hogs);
    let start = Instant::now();
    loop {
        let mut conn = Conn::open(server.addr);
        conn.stream()
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        conn.send(GET_CLOSE);
        let mut answer = Vec::new();
        use std::io::Read;
        let _ = conn.stream().read_to_end(&mut answer);
        if answer.ends_with(HELLO) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not recover after descriptors were freed"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// After a run, no child is left a zombie.
pub fn no_zombies_after_a_run(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for _ in 0..30 {
        assert_hello(&get_once(server.addr));
    }
    let start = Instant::now();
    while server.zombie_children() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{} zombies 2 s after the run",
            server.zombie_children()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM with several requests in flight: every one is answered (with `Connection: close`),
/// then the server exits 0.
pub fn sigterm_under_load_answers_every_request_in_flight(bin: &str, model: Model) {
    let mut server = Server::start(bin, &["--workload", "delay:300ms"]);
    let clients = if model == Model::Iterative { 1 } else { 8 };
    let addr = server.addr;
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            thread::spawn(move || {
                let mut conn = Conn::open(addr);
                conn.send(GET);
                conn.response()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    for handle in handles {
        let response = handle.join().expect("a request in flight was not answered");
        assert_hello(&response);
        assert_eq!(response.header("connection"), Some("close"));
    }
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("still running 3 s after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

/// Binding beyond loopback works, and says on stderr that the server is then reachable.
pub fn binding_beyond_loopback_warns(bin: &str, _: Model) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(bin)
        .args(["--addr", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on 0.0.0.0:"), "{line}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.starts_with("warning: binding 0.0.0.0:0"), "{stderr}");
}

/// With `--max-conns 2` and 4 concurrent `delay:200ms` requests, the server never holds more
/// than 2 (children for fork, connection threads for threads) and the requests go in two
/// waves. Returns the most (threads, children) seen, for the caller's model-specific check.
pub fn max_conns_caps_what_clients_get(bin: &str) -> (usize, usize) {
    let server = Server::start(bin, &["--max-conns", "2", "--workload", "delay:200ms"]);
    let addr = server.addr;
    let start = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || get_once(addr)))
        .collect();
    let mut most = (0, 0);
    while !clients.iter().all(|c| c.is_finished()) {
        let (t, c) = server.threads_and_children();
        most = (most.0.max(t), most.1.max(c));
        thread::sleep(Duration::from_millis(5));
    }
    for client in clients {
        assert_hello(&client.join().unwrap());
    }
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "4 requests under a cap of 2 took {:?}",
        start.elapsed()
    );
    most
}
