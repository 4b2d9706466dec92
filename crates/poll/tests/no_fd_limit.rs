//! What `poll` has over `select`: no descriptor limit. More connections at once than an
//! `fd_set` has bits (1024) are all served, and all kept.

use std::time::Duration;

use conformance::client::{answered_or_closed, connect};
use conformance::server::raise_fd_limit;
use conformance::Server;

/// Connections the test opens and holds: more than `select` could watch.
const CONNECTIONS: usize = 1024 + 100;

#[test]
fn more_connections_than_fd_setsize_are_all_served() {
    if let Err(why) = raise_fd_limit(CONNECTIONS as u64 + 64) {
        eprintln!("skipped: {why}");
        return;
    }
    let mut server = Server::start_capturing_stderr(
        env!("CARGO_BIN_EXE_server-poll"),
        &["--max-conns", "4096"],
        None,
    );
    let mut held: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let mut stream = connect(server.addr);
            assert!(answered_or_closed(&mut stream), "connection {i} refused");
            stream
        })
        .collect();
    assert!(server.open_fds() > CONNECTIONS, "{}", server.open_fds());
    for stream in [0, CONNECTIONS / 2, CONNECTIONS - 1] {
        assert!(answered_or_closed(&mut held[stream]), "connection {stream}");
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(server.stderr().is_empty(), "{}", server.stderr());
}
