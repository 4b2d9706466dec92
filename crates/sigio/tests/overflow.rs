//! Model tests of the signal queue: the real-time signals carry the load, and when the queue
//! overflows the fallback scan carries it instead, and says so.

use std::thread;

use conformance::client::{get_once, Conn, GET};
use conformance::Server;

const BIN: &str = env!("CARGO_BIN_EXE_server-sigio");

/// Kept-alive, pipelined and new connections from a few clients at once.
fn some_load(server: &Server) {
    let addr = server.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut conn = Conn::open(addr);
                for _ in 0..25 {
                    conn.send(&GET.repeat(2));
                    assert_eq!(conn.response().status, 200);
                    assert_eq!(conn.response().status, 200);
                }
                for _ in 0..10 {
                    assert_eq!(get_once(addr).status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
}

/// With the default queue, light load never overflows it: every event came as a real-time
/// signal naming its descriptor (were `F_SETSIG` not in effect, each would come as SIGIO,
/// an overflow).
#[test]
fn the_real_time_signals_carry_a_light_load() {
    let server = Server::start_capturing_stderr(BIN, &[], None);
    some_load(&server);
    assert!(
        !server.stderr().contains("overflowed"),
        "{}",
        server.stderr()
    );
}

/// With a queue of 0 every readiness signal overflows into SIGIO: the server says so, and the
/// scan of every connection serves the same load.
#[test]
fn an_overflowing_queue_falls_back_to_scanning_and_says_so() {
    let server = Server::start_capturing_stderr(BIN, &["--signal-queue", "0"], None);
    some_load(&server);
    assert!(
        server
            .stderr()
            .contains("the signal queue overflowed (1 times so far): scanning every connection"),
        "{}",
        server.stderr()
    );
}
