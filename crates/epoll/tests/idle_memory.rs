//! An idle keep-alive connection holds no buffers (issue 13): 2,000 of them grow the server's
//! anonymous memory by its table slots, not by 10 KiB of buffers each.

/// The slot is 160 bytes; with the buffers held it was 10,457 bytes per connection. The bound
/// is generous (a debug build, a busy machine's allocator) and still fails by ten times on
/// the old server.
const BOUND: f64 = 1024.0;

#[test]
fn idle_connections_hold_no_buffers() {
    let bin = env!("CARGO_BIN_EXE_server-epoll");
    if let Some(per) = conformance::memory::idle_growth_per_connection(bin, &[], 2000) {
        assert!(per < BOUND, "{per:.0} bytes per idle connection");
    }
}
