//! The UDP checks (`--transport udp`), for the models that serve it: server-iterative and
//! server-epoll. Each crate runs them with one line in `tests/udp.rs`:
//!
//! ```ignore
//! conformance::udp_suite!(env!("CARGO_BIN_EXE_server-epoll"));
//! ```
//!
//! Every other model must refuse the flag (exit 2, one line): the shared suite's
//! [`transport_udp_is_served_or_refused`](crate::checks::transport_udp_is_served_or_refused).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::Server;

/// What every request datagram is answered with.
pub const ANSWER: &[u8] = b"HelloWorld\n";

/// Expands into one `#[test]` per UDP check for the server binary `$bin`.
#[macro_export]
macro_rules! udp_suite {
    ($bin:expr) => {
        $crate::udp_suite!(@tests $bin;
            a_datagram_gets_one_answer_each_time,
            a_burst_gets_an_answer_per_datagram,
            oversized_datagrams_are_ignored,
            no_state_is_kept_per_client,
            sigterm_exits_0_at_once,
        );
    };
    (@tests $bin:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::udp::$check($bin);
            }
        )*
    };
}

/// A client socket on loopback that gives up on an answer after `wait`.
fn client(wait: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket
}

/// Sends `datagram` to `addr` and returns the answer, or `None` when none came within the
/// socket's read timeout.
pub fn ask(socket: &UdpSocket, addr: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(datagram, addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    assert_eq!(from, addr, "an answer from another address");
    Some(buf[..n].to_vec())
}

fn udp_server(bin: &str) -> Server {
    Server::start(bin, &["--transport", "udp"])
}

/// One datagram, one `HelloWorld\n`, a hundred times on one socket (loopback loses nothing at
/// this pace), and an empty datagram is a request too.
pub fn a_datagram_gets_one_answer_each_time(bin: &str) {
    let server = udp_server(bin);
    let socket = client(Duration::from_secs(2));
    for i in 0..100 {
        let answer = ask(&socket, server.addr, b"hello");
        assert_eq!(answer.as_deref(), Some(ANSWER), "datagram {i}");
    }
    assert_eq!(ask(&socket, server.addr, b"").as_deref(), Some(ANSWER));
}

/// 50 datagrams sent without waiting get 50 answers (the epoll server takes them in batches).
pub fn a_burst_gets_an_answer_per_datagram(bin: &str) {
    let server = udp_server(bin);
    let socket = client(Duration::from_millis(500));
    for _ in 0..50 {
        socket.send_to(b"x", server.addr).unwrap();
    }
    let mut buf = [0u8; 64];
    let mut answers = 0;
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        assert_eq!(&buf[..n], ANSWER);
        answers += 1;
    }
    assert_eq!(answers, 50, "an answer per datagram, no more, no less");
}

/// A datagram of more than 512 bytes gets no answer; the server goes on answering.
pub fn oversized_datagrams_are_ignored(bin: &str) {
    let server = udp_server(bin);
    let socket = client(Duration::from_millis(300));
    assert_eq!(
        ask(&socket, server.addr, &[b'a'; 512]).as_deref(),
        Some(ANSWER)
    );
    assert_eq!(
        ask(&socket, server.addr, &[b'a'; 513]),
        None,
        "513 bytes answered"
    );
    assert_eq!(
        ask(&socket, server.addr, &[b'a'; 9000]),
        None,
        "9000 bytes answered"
    );
    let socket = client(Duration::from_secs(2));
    assert_eq!(ask(&socket, server.addr, b"x").as_deref(), Some(ANSWER));
}

/// 300 clients (a socket each, a port each) are answered, and the server holds the same
/// descriptors and threads after them as before: nothing per client.
pub fn no_state_is_kept_per_client(bin: &str) {
    let server = udp_server(bin);
    let fds = server.open_fds();
    let threads = server.threads_and_children();
    let clients: Vec<UdpSocket> = (0..300).map(|_| client(Duration::from_secs(2))).collect();
    for socket in &clients {
        assert_eq!(ask(socket, server.addr, b"x").as_deref(), Some(ANSWER));
    }
    assert_eq!(server.open_fds(), fds, "descriptors per client");
    assert_eq!(server.threads_and_children(), threads, "threads per client");
}

/// SIGTERM: nothing is in flight that lasts (no connections), so the server exits 0 within a
/// tick.
pub fn sigterm_exits_0_at_once(bin: &str) {
    let mut server = udp_server(bin);
    let socket = client(Duration::from_secs(2));
    assert_eq!(ask(&socket, server.addr, b"x").as_deref(), Some(ANSWER));
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(2))
        .expect("still running");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}
