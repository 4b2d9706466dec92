//! An idle keep-alive connection holds no buffers (issue 13): 2,000 of them grow the server's
//! anonymous memory by their tasks and socket registrations, not by 10 KiB of buffers each.

/// About 1,400 bytes when written (the task and the socket's registration in tokio);
/// `stream.read(&mut buf)` with the buffers in the task was 11,796 bytes. Generous for a debug
/// build on a busy machine, and still far below the old server.
const BOUND: f64 = 2560.0;

#[test]
fn idle_connections_hold_no_buffers() {
    let bin = env!("CARGO_BIN_EXE_server-tokio");
    let args = ["--workers", "1"];
    if let Some(per) = conformance::memory::idle_growth_per_connection(bin, &args, 2000) {
        assert!(per < BOUND, "{per:.0} bytes per idle connection");
    }
}
