//! The select server's lesson, tested: more connections at once than an `fd_set` has bits. Those
//! whose descriptor would be past `FD_SETSIZE` are refused cleanly (closed at once, counted,
//! reported on stderr once a second at most), and the server keeps serving the others.

use std::time::{Duration, Instant};

use conformance::client::{answered_or_closed, connect};
use conformance::server::raise_fd_limit;
use conformance::Server;

const BIN: &str = env!("CARGO_BIN_EXE_server-select");

/// Bits in an `fd_set`.
const FD_SETSIZE: usize = 1024;

/// Connections the test opens and holds: well past what fits.
const CONNECTIONS: usize = FD_SETSIZE + 100;

#[test]
fn connections_past_fd_setsize_are_refused_and_the_others_served() {
    if let Err(why) = raise_fd_limit(CONNECTIONS as u64 + 64) {
        eprintln!("skipped: {why}");
        return;
    }
    // The cap out of the way: what refuses here must be select's limit, not --max-conns.
    let mut server = Server::start_capturing_stderr(BIN, &["--max-conns", "4096"], None);
    let start = Instant::now();
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..CONNECTIONS {
        let mut stream = connect(server.addr);
        if answered_or_closed(&mut stream) {
            served.push(stream);
        } else {
            refused += 1;
        }
    }
    // Descriptors 0-2, the listener and the timerfd are the server's own; the rest of the set
    // is connections.
    assert!(
        (FD_SETSIZE - 16..FD_SETSIZE - 4).contains(&served.len()),
        "{} of {CONNECTIONS} served at once",
        served.len()
    );
    assert_eq!(served.len() + refused, CONNECTIONS);
    assert!(
        server.open_fds() <= FD_SETSIZE,
        "the refused connections' descriptors were not closed: {} open",
        server.open_fds()
    );
    // The connections it holds are still served, the oldest and the newest.
    assert!(answered_or_closed(served.first_mut().unwrap()));
    assert!(answered_or_closed(served.last_mut().unwrap()));
    // Room again once some leave: a new connection is served.
    served.truncate(served.len() - 10);
    let recovered = Instant::now();
    loop {
        let mut stream = connect(server.addr);
        if answered_or_closed(&mut stream) {
            break;
        }
        refused += 1;
        assert!(
            recovered.elapsed() < Duration::from_secs(5),
            "still refusing 5 s after connections left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reported, but not once per refusal.
    let stderr = server.stderr();
    let reports = stderr.matches("past select's FD_SETSIZE (1024)").count();
    let seconds = start.elapsed().as_secs() as usize;
    assert!(
        reports >= 1 && reports <= seconds + 1,
        "{reports} reports of {refused} refusals in {seconds} s: {stderr}"
    );
    // Counted: the total at exit.
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exited");
    assert_eq!(status.code(), Some(0));
    let stderr = server.stderr();
    assert!(
        stderr.contains(&format!("refused {refused} connections past FD_SETSIZE")),
        "{stderr}"
    );
}
