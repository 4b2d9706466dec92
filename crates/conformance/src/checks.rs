//! The checks, one function each; [`crate::suite!`] turns them into tests.
//!
//! Each starts its own server on port 0, so they run in parallel without sharing state.

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{get_once, Conn, GET, GET_CLOSE};
use crate::{Model, Server};

mod framing;
pub use framing::*;

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

/// `cpu:D` is served, and the CPU is spent: the server's CPU time (its processes and threads,
/// children included) grows by about 5 x 40 ms for 5 requests of `cpu:40ms`. The kernel counts
/// each process in whole ticks (10 ms), and the requests may land in 5 processes, so up to 5
/// ticks of the 20 can be lost to rounding: at least 14 must show.
pub fn cpu_workload_is_served(bin: &str, _: Model) {
    let server = Server::start(bin, &["--workload", "cpu:40ms"]);
    let before = server.tree_cpu_ticks();
    for _ in 0..5 {
        assert_hello(&get_once(server.addr));
    }
    // A fork child's CPU reaches the parent's count when the parent reaps it (within a tick).
    let start = Instant::now();
    let spent = loop {
        let spent = server.tree_cpu_ticks() - before;
        if spent >= 14 || start.elapsed() > Duration::from_secs(2) {
            break spent;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        spent >= 14,
        "5 x cpu:40ms cost the server only {spent} ticks (10 ms each)"
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
    assert!(text.ends_with("Connection: close\r\n\r\nHelloWorld\n"));
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
/// answers (about 14) give or take, and a few times that: every request is answered in order,
/// then the `400`, then the close. (The `400` must not be lost when the answers before it
/// fill the outbox.)
pub fn pipelined_requests_then_garbage_get_every_answer_then_400(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for count in (10..=18).chain(38..=42) {
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

/// A request head over 8 KiB gets `431`, then the server closes; also when the client keeps
/// sending after the limit (the server drains it rather than answer it with a reset).
pub fn oversized_head_gets_431_and_close(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    let mut head = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    head.resize(8192, b'a');
    conn.send(&head);
    assert_eq!(conn.response().status, 431);
    assert!(conn.is_closed());
    drop(conn);
    assert_hello(&get_once(server.addr));

    let mut conn = Conn::open(server.addr);
    head.resize(8192 + 64 * 1024, b'a');
    conn.send(&head);
    assert_eq!(conn.response().status, 431);
    assert!(conn.read_to_close().is_empty(), "bytes after the 431");
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
        assert_usage_error(bin, args);
    }
}

/// `bin` with `args` exits 2 with one line on stderr (`error: ...`) and nothing on stdout (no
/// ready line: it bound nothing); returns the line.
fn assert_usage_error(bin: &str, args: &[&str]) -> String {
    let output = crate::server::command(bin, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}: it printed on stdout");
    stderr
}

/// `--transport udp`: a model that serves it answers a datagram (its own checks are in
/// [`crate::udp`]); every other model exits 2 with one line, before binding anything.
pub fn transport_udp_is_served_or_refused(bin: &str, _: Model) {
    if profile(bin).serves_udp {
        let server = Server::start(bin, &["--transport", "udp"]);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let answer = crate::udp::ask(&socket, server.addr, b"x");
        assert_eq!(answer.as_deref(), Some(crate::udp::ANSWER));
        return;
    }
    let line = assert_usage_error(bin, &["--transport", "udp"]);
    assert!(line.contains("udp"), "{line}");
}

/// Half a request head, then silence: the server answers `408` after the read timeout, and
/// closes.
pub fn read_timeout_answers_408_and_closes(bin: &str, _: Model) {
    let server = Server::start(bin, &["--read-timeout", "300ms"]);
    let mut conn = Conn::open(server.addr);
    let start = Instant::now();
    conn.send(b"GET / HTTP/1.1\r\nHost: slow");
    let response = conn.response();
    assert_eq!(response.status, 408);
    assert_standard_headers(&response);
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
/// connection keeps being served, the server does not spin (unless its model always does:
/// [`Profile::spins_by_design`]), and it accepts again once
/// descriptors are free. The server must have met `EMFILE` (and said so), unless its model
/// keeps its own descriptors few whatever the clients do ([`Profile::descriptors_bounded`]),
/// which is then checked instead.
pub fn out_of_descriptors_keeps_serving_and_recovers(bin: &str, _: Model) {
    let server = Server::start_capturing_stderr(bin, &[], Some(32));
    let mut existing = Conn::open(server.addr);
    existing.send(GET);
    assert_hello(&existing.response());
    let hogs: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    thread::sleep(Duration::from_millis(300));
    existing.send(GET);
    assert_hello(&existing.response());
    match profile(bin).descriptors_bounded {
        None => assert!(
            server.stderr().contains("Too many open files"),
            "never reached EMFILE: {:?}",
            server.stderr()
        ),
        Some(why) => {
            let open = server.open_fds();
            assert!(open <= 8, "{open} descriptors open, yet {why}");
        }
    }
    if profile(bin).spins_by_design.is_none() {
        let before = server.tree_cpu_ticks();
        thread::sleep(Duration::from_secs(1));
        let spent = server.tree_cpu_ticks() - before;
        assert!(
            spent <= 15,
            "spun while out of descriptors: {spent} ticks of CPU in 1 s"
        );
    }
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
    let mut child = crate::server::command(bin, &["--addr", "0.0.0.0:0"])
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

/// What the checks need to know of a server beyond its [`Model`], by binary name.
pub struct Profile {
    /// Flags that cap it at 2 connections served at once.
    pub cap_of_two: &'static [&'static str],
    /// Why the server process cannot run out of descriptors (it holds few, whatever the
    /// clients do), or `None` when it can and must then say so.
    pub descriptors_bounded: Option<&'static str>,
    /// Why the server burns CPU with nothing to do (its model never blocks), which excuses it
    /// from the checks that it does not spin; `None` for every server that waits.
    pub spins_by_design: Option<&'static str>,
    /// It serves `--transport udp` (its `tests/udp.rs` runs [`crate::udp_suite!`]); every
    /// other server refuses it.
    pub serves_udp: bool,
}

/// The [`Profile`] of the server binary `bin`.
pub fn profile(bin: &str) -> Profile {
    let name = std::path::Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(bin);
    let cap_of_two: &[&str] = match name {
        "server-pool" | "server-prefork" => &["--workers", "2"],
        // The cap is per worker, and the kernel spreads connections blind to it.
        "server-reuseport" => &["--workers", "1", "--max-conns", "2"],
        _ => &["--max-conns", "2"],
    };
    let descriptors_bounded = match name {
        "server-iterative" => Some("it holds one connection at a time"),
        "server-fork" => Some("each connection lives in a child; the parent closes its copy"),
        "server-prefork" => Some("each connection lives in a worker; the parent holds none"),
        _ => None,
    };
    let spins_by_design = match name {
        "server-busypoll" => Some("it polls every socket in a loop that never blocks"),
        _ => None,
    };
    Profile {
        cap_of_two,
        descriptors_bounded,
        spins_by_design,
        serves_udp: matches!(name, "server-iterative" | "server-epoll"),
    }
}

const HEAD: &[u8] = b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n";

/// `Server: archbench`, `Content-Type: text/plain`, and a `Date` (an IMF-fixdate) within two
/// seconds of the test's own clock.
fn assert_standard_headers(response: &crate::client::Response) {
    assert_eq!(response.header("server"), Some("archbench"), "{response:?}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{response:?}"
    );
    let date = response.header("date").expect("a Date header");
    let when = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("Date {date:?}: {e}"));
    let now = std::time::SystemTime::now();
    let off = now.duration_since(when).unwrap_or_else(|e| e.duration());
    assert!(off <= Duration::from_secs(2), "Date {date} is {off:?} off");
}

/// Every answer (200 to GET and HEAD, 400, 431, 501; 408 is checked with the read timeout)
/// carries `Date`, `Server` and `Content-Type`; HEAD has the GET's headers and no body.
pub fn answers_carry_date_server_and_content_type(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(GET);
    let get = conn.response();
    conn.send(HEAD);
    let head = conn.response_to(true);
    assert_standard_headers(&get);
    assert_standard_headers(&head);
    let without_date = |r: &crate::client::Response| -> Vec<(String, String)> {
        r.headers
            .iter()
            .filter(|(n, _)| n != "date")
            .cloned()
            .collect()
    };
    assert_eq!(without_date(&head), without_date(&get));
    drop(conn);
    let mut long_head = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    long_head.resize(8192, b'a');
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for (request, status) in [
        (&b"nonsense\r\n\r\n"[..], 400),
        (&long_head[..], 431),
        (&chunked[..], 501),
    ] {
        let mut conn = Conn::open(server.addr);
        conn.send(request);
        let response = conn.response();
        assert_eq!(response.status, status);
        assert_standard_headers(&response);
        assert_eq!(response.header("connection"), Some("close"));
    }
    // `--headers minimal`: Content-Length and Connection only.
    let minimal = Server::start(bin, &["--headers", "minimal"]);
    let response = get_once(minimal.addr);
    assert_hello(&response);
    let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["connection", "content-length"]);
}

/// Two answers 3 s apart carry different dates (TechEmpower's rule), on one kept-alive
/// connection and on a new one: the cached date is refreshed.
pub fn the_date_moves_with_the_clock(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(GET);
    let first = conn.response();
    thread::sleep(Duration::from_millis(3100));
    conn.send(GET);
    let later = conn.response();
    assert_standard_headers(&later);
    assert_ne!(first.header("date"), later.header("date"));
    drop(conn);
    assert_standard_headers(&get_once(server.addr));
}

/// A request with a body is answered after its body, not before; bodies larger than the
/// request buffer are skipped; a GET pipelined behind a body is answered in turn.
pub fn request_bodies_are_read_before_the_answer(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nab");
    assert!(
        conn.nothing_within(Duration::from_millis(300)),
        "answered before the body arrived"
    );
    conn.send(b"cde");
    conn.send(GET);
    assert_hello(&conn.response());
    assert_hello(&conn.response());
    drop(conn); // the iterative server serves one connection at a time

    let mut conn = Conn::open(server.addr);
    let mut batch = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 20000\r\n\r\n".to_vec();
    batch.resize(batch.len() + 20_000, b'x');
    batch.extend_from_slice(GET_CLOSE);
    conn.send(&batch);
    assert_hello(&conn.response());
    let last = conn.response();
    assert_hello(&last);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(conn.is_closed());
}

/// A chunked body gets `501`, and the connection is closed gracefully: the rest of the body,
/// still arriving, is drained, so the `501` is read whole and the close is a FIN, not a reset.
pub fn chunked_body_gets_501_and_a_graceful_close(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    let mut request =
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        request.extend_from_slice(b"1000\r\n");
        request.resize(request.len() + 4096, b'x');
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    conn.send(&request);
    assert_eq!(conn.response().status, 501);
    assert!(conn.read_to_close().is_empty(), "bytes after the 501");
}

/// A request that ends in a `400` while the client is still sending: the answer survives
/// (the server drains instead of closing with unread input, which would send a reset).
pub fn an_error_answer_survives_input_still_arriving(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    let mut conn = Conn::open(server.addr);
    let mut request = b"garbage garbage\r\n\r\n".to_vec();
    request.resize(request.len() + 256 * 1024, b'x');
    conn.send(&request);
    assert_eq!(conn.response().status, 400);
    assert!(conn.read_to_close().is_empty(), "bytes after the 400");
}

/// An upload that keeps moving, slower than the whole head would be allowed, is not timed out:
/// the read timeout applies to each stretch of a body without progress.
pub fn a_slow_upload_is_not_timed_out(bin: &str, _: Model) {
    let server = Server::start(bin, &["--read-timeout", "500ms"]);
    let mut conn = Conn::open(server.addr);
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 8\r\n\r\n");
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(200));
        conn.send(b"x");
    }
    assert_hello(&conn.response());
}

/// `close` wins in any Connection token list, HTTP/1.1 or 1.0.
pub fn close_wins_in_a_connection_token_list(bin: &str, _: Model) {
    let server = Server::start(bin, &[]);
    for request in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
    ] {
        let mut conn = Conn::open(server.addr);
        conn.send(request);
        let response = conn.response();
        assert_hello(&response);
        assert_eq!(response.header("connection"), Some("close"));
        assert!(conn.is_closed());
    }
}

/// The server at its cap (2 connections held by idle keep-alive clients, a third waiting in
/// the backlog) still drains and exits 0 on SIGTERM.
pub fn sigterm_at_the_cap_drains_and_exits(bin: &str, model: Model) {
    let mut server = Server::start(bin, profile(bin).cap_of_two);
    let holders = if model == Model::Iterative { 1 } else { 2 };
    let mut held: Vec<Conn> = (0..holders)
        .map(|_| {
            let mut conn = Conn::open(server.addr);
            conn.send(GET);
            assert_hello(&conn.response());
            conn
        })
        .collect();
    let mut waiting = Conn::open(server.addr);
    waiting.send(GET);
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("still running 3 s after SIGTERM at the cap");
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(2));
    for conn in &mut held {
        assert!(conn.is_closed());
    }
}

/// Clients that pipeline requests and read their answers slowly, a trickle, or never; then
/// SIGTERM. Every write has a deadline and a shutdown caps every wait, so the server exits
/// within the read timeout plus a tick, whatever these clients do.
pub fn sigterm_with_clients_that_barely_read_ends_in_time(bin: &str, model: Model) {
    use std::io::Read;
    let mut server = Server::start(bin, &["--read-timeout", "1s"]);
    let clients = if model == Model::Iterative { 1 } else { 2 };
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let stream = TcpStream::connect(server.addr).unwrap();
            let mut writer = stream.try_clone().unwrap();
            let flood = thread::spawn(move || {
                let batch = GET.repeat(500);
                for _ in 0..400 {
                    if writer.write_all(&batch).is_err() {
                        return;
                    }
                }
            });
            // Client 0 reads a little every 200 ms (each of the server's writes progresses,
            // none finishes); client 1 never reads.
            let trickle = thread::spawn(move || {
                let start = Instant::now();
                let mut chunk = [0u8; 1024];
                while i == 0 && start.elapsed() < Duration::from_secs(8) {
                    match (&stream).read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => thread::sleep(Duration::from_millis(200)),
                    }
                }
                drop(stream);
            });
            (flood, trickle)
        })
        .collect();
    thread::sleep(Duration::from_millis(600)); // the server's writes fill the buffers
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM, held by clients that barely read");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} (read timeout 1 s)"
    );
    for (flood, trickle) in handles {
        trickle.join().unwrap();
        flood.join().unwrap();
    }
}

/// SIGTERM while the server is in the middle of writing pipelined answers: what was written
/// is delivered, the answer after it says `Connection: close`, and the connection closes at
/// once, not at the idle timeout.
pub fn sigterm_mid_write_closes_after_the_answer(bin: &str, _: Model) {
    use std::io::Read;
    let mut server = Server::start(bin, &[]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // More answers than the kernel's buffers hold (megabytes), so the server must wait for
    // this client to read: it is mid-write when SIGTERM comes.
    const BATCHES: usize = 100;
    let mut writer = stream.try_clone().unwrap();
    let flood = thread::spawn(move || {
        let batch = GET.repeat(1000);
        for _ in 0..BATCHES {
            if writer.write_all(&batch).is_err() {
                return;
            }
        }
    });
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read slowly for a while, so the server's writes stall and it is mid-write.
    for _ in 0..5 {
        let n = stream.read(&mut chunk).unwrap();
        all.extend_from_slice(&chunk[..n]);
        thread::sleep(Duration::from_millis(40));
    }
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    loop {
        let n = stream.read(&mut chunk).expect("read until the close");
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "connection still open 5 s after SIGTERM"
        );
    }
    drop(stream);
    flood.join().unwrap();
    let text = String::from_utf8(all).unwrap();
    let answers = text.matches("HTTP/1.1 200 OK\r\n").count();
    assert!(
        answers < BATCHES * 1000,
        "every request answered: SIGTERM came too late"
    );
    let last = text.rsplit("HTTP/1.1 200 OK\r\n").next().unwrap();
    assert!(
        last.contains("Connection: close\r\n"),
        "last answer: {last:?}"
    );
    assert!(last.ends_with("HelloWorld\n"));
    let status = server.wait_exit(Duration::from_secs(3)).expect("exited");
    assert_eq!(status.code(), Some(0));
}

/// Capped at 2 connections, 4 concurrent `delay:200ms` requests are served in two waves
/// (four on the iterative server, which serves one at a time).
pub fn the_cap_holds_connections_back(bin: &str, model: Model) {
    let mut args = profile(bin).cap_of_two.to_vec();
    args.extend(["--workload", "delay:200ms"]);
    let server = Server::start(bin, &args);
    let addr = server.addr;
    let start = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || get_once(addr)))
        .collect();
    for client in clients {
        assert_hello(&client.join().unwrap());
    }
    let waves = if model == Model::Iterative { 4 } else { 2 };
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200 * waves),
        "4 requests under a cap of 2 took {took:?}"
    );
    assert!(
        took < Duration::from_millis(200 * waves + 600),
        "took {took:?}"
    );
}

/// A server that cannot write its ready line (stdout closed) exits non-zero at once, instead
/// of serving a port nobody knows or hanging.
pub fn a_server_that_cannot_announce_exits(bin: &str, _: Model) {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    if profile(bin).cap_of_two[0] == "--workers" {
        args.extend(["--workers", "2"]); // a few workers, quick to start and to stop
    }
    let mut child = crate::server::command(bin, &args)
        .stdin(Stdio::null())
        .stdout(crate::server::failing_stdout())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 5 s after failing to announce");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1));
}

/// A server of processes whose master cannot write its ready line takes its workers down
/// with it: no orphan is left serving a port nobody knows. Makes the calling test process a
/// subreaper and reaps any child: call it from a test binary of its own.
pub fn a_failed_announce_leaves_no_worker_behind(bin: &str, args: &[&str]) {
    // Orphans are re-parented to the nearest subreaper: make that this test process, so any
    // worker left behind shows up among our children.
    // SAFETY: prctl with an integer argument; affects only this process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let mut child = crate::server::command(bin, &[&["--addr", "127.0.0.1:0"], args].concat())
        .stdin(Stdio::null())
        .stdout(crate::server::failing_stdout())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let start = Instant::now();
    loop {
        // Reap anything re-parented to us that has exited, then look at what is left.
        // SAFETY: waitpid on any child, not blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let left = crate::server::children_of(std::process::id());
        if left.is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(3) {
            for pid in &left {
                // SAFETY: kill(2) on our own (adopted) children, to clean up.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            panic!("workers left behind: {left:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
