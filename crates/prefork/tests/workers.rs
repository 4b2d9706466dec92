//! Model test of the preforked pool's supervision: one worker stopped on its own.

use std::thread;
use std::time::{Duration, Instant};

use conformance::client::{get_once, Conn, GET};
use conformance::Server;

const BIN: &str = env!("CARGO_BIN_EXE_server-prefork");

/// SIGTERM to one worker (as `kill <worker pid>` would): that worker finishes the request it
/// holds and exits, the parent replaces it, and service goes on; nothing spins.
#[test]
fn sigterm_to_one_worker_stops_that_worker_alone() {
    let server = Server::start(BIN, &["--workers", "2", "--workload", "delay:300ms"]);
    let workers = server.children();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let addr = server.addr;
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                let mut conn = Conn::open(addr);
                conn.send(GET);
                conn.response()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on a child of our own child.
    unsafe { libc::kill(workers[0] as libc::pid_t, libc::SIGTERM) };
    for request in in_flight {
        let response = request.join().expect("a request in flight was lost");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"HelloWorld\n"[..])
        );
    }
    let start = Instant::now();
    loop {
        let now = server.children();
        if now.len() == 2 && !now.contains(&workers[0]) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "not replaced: {now:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..6 {
        let response = get_once(addr);
        assert_eq!(response.status, 200);
    }
    let before = server.tree_cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let spent = server.tree_cpu_ticks() - before;
    assert!(
        spent <= 10,
        "{spent} ticks of CPU in an idle second: spinning"
    );
}
