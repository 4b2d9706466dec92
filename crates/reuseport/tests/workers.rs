//! Model tests of the reuseport server: the ready line, a worker killed, a worker stopped.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use conformance::client::{get_once, Conn, GET};
use conformance::Server;

const BIN: &str = env!("CARGO_BIN_EXE_server-reuseport");

/// Sockets listening on `addr` (from /proc/net/tcp: state 0A is LISTEN).
fn listeners_on(addr: SocketAddr) -> usize {
    let local = format!("0100007F:{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not {what} in 5 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The ready line comes once, after every worker listens: at that moment the port has one
/// listener per worker (the master's reservation is not one), and a replaced worker does not
/// print it again.
#[test]
fn the_ready_line_comes_once_after_every_worker_listens() {
    let mut child = Command::new(BIN)
        .args(["--addr", "127.0.0.1:0", "--workers", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8];
    while byte[0] != b'\n' {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "no ready line");
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(listeners_on(addr), 3, "when the ready line came");
    let pid = child.id() as libc::pid_t;
    let workers = conformance::server::children_of(child.id());
    // SAFETY: kill(2) on a child of our own child.
    unsafe { libc::kill(workers[0] as libc::pid_t, libc::SIGKILL) };
    wait_until("replaced", || {
        let now = conformance::server::children_of(child.id());
        now.len() == 3 && !now.contains(&workers[0]) && listeners_on(addr) == 3
    });
    assert_eq!(get_once(addr).status, 200);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "more after the ready line");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// SIGKILL to a worker: the server keeps serving (the others take the new connections), and
/// the master replaces the worker, which joins the port's group of listeners.
#[test]
fn a_killed_worker_is_replaced_and_service_goes_on() {
    let server = Server::start(BIN, &["--workers", "2"]);
    let workers = server.children();
    assert_eq!(workers.len(), 2, "{workers:?}");
    // SAFETY: kill(2) on a child of our own child.
    unsafe { libc::kill(workers[0] as libc::pid_t, libc::SIGKILL) };
    wait_until("gone", || !server.children().contains(&workers[0]));
    for _ in 0..20 {
        assert_eq!(get_once(server.addr).status, 200);
    }
    wait_until("replaced", || {
        server.children().len() == 2 && listeners_on(server.addr) == 2
    });
    for _ in 0..20 {
        assert_eq!(get_once(server.addr).status, 200);
    }
}

/// The lesson in the file's top comment: the kernel hashes each connection to a listener blind
/// to load, so a worker that does not run (here stopped with SIGSTOP, as a worker stuck in a
/// long computation would be) leaves its share of the new connections waiting in its accept
/// queue, while the other worker answers its own share at once. They are answered when it
/// runs again.
#[test]
fn a_stopped_worker_s_share_of_connections_waits() {
    let server = Server::start(BIN, &["--workers", "2"]);
    let workers = server.children();
    // SAFETY: kill(2) on a child of our own child.
    unsafe { libc::kill(workers[0] as libc::pid_t, libc::SIGSTOP) };
    let addr = server.addr;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            thread::spawn(move || {
                let start = Instant::now();
                let mut conn = Conn::open(addr);
                conn.send(GET);
                let response = conn.response();
                (response.status, start.elapsed())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let answered = clients.iter().filter(|c| c.is_finished()).count();
    // SAFETY: as above.
    unsafe { libc::kill(workers[0] as libc::pid_t, libc::SIGCONT) };
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        results.iter().all(|(status, _)| *status == 200),
        "{results:?}"
    );
    // Each side gets none of 16 connections with a chance of 2^-16.
    assert!(answered > 0, "the running worker answered nothing");
    assert!(answered < 16, "nothing waited for the stopped worker");
    let waited = results
        .iter()
        .filter(|(_, took)| *took >= Duration::from_millis(300))
        .count();
    assert_eq!(waited, 16 - answered, "{results:?}");
}
