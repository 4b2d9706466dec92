//! What an idle keep-alive connection costs a server in memory, read from /proc: the property
//! issue 13 asks of the event loops (`scripts/idle_memory.py` measures every model with it).

use crate::client::{Conn, GET};
use crate::server::{children_of, raise_fd_limit, say_skipped};
use crate::Server;

/// The anonymous memory (`Pss_Anon` in `/proc/PID/smaps_rollup`: heap, stacks, anonymous
/// mappings) of `pid` and every process under it, in kB. Shared libraries are left out: their
/// share moves whenever another process maps them.
pub fn tree_pss_anon_kb(pid: u32) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(pid) = stack.pop() {
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        total += rollup
            .lines()
            .find_map(|line| line.strip_prefix("Pss_Anon:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        stack.extend(children_of(pid));
    }
    total
}

/// Starts `bin` (with `args`, room for `conns` connections and a 600 s idle timeout), warms it
/// up with 200 requests on one connection, then opens `conns` keep-alive connections that
/// each get one answer and stay open, idle. Returns how much the server's anonymous memory
/// grew per idle connection, in bytes; `None` (said on stderr) where the descriptor limit
/// cannot hold them.
///
/// # Panics
/// If the server does not start or a connection is not answered.
pub fn idle_growth_per_connection(bin: &str, args: &[&str], conns: usize) -> Option<f64> {
    if let Err(reason) = raise_fd_limit(conns as u64 * 2 + 200) {
        say_skipped("idle memory", &reason);
        return None;
    }
    let cap = (conns + 100).to_string();
    let flags = [&["--max-conns", &cap, "--idle-timeout", "600s"], args].concat();
    let server = Server::start(bin, &flags);
    let mut warm = Conn::open(server.addr);
    for _ in 0..200 {
        warm.send(GET);
        assert_eq!(warm.response().status, 200);
    }
    drop(warm);
    let before = tree_pss_anon_kb(server.pid());
    let mut held = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut conn = Conn::open(server.addr);
        conn.send(GET);
        assert_eq!(conn.response().status, 200);
        held.push(conn);
    }
    let after = tree_pss_anon_kb(server.pid());
    Some(after.saturating_sub(before) as f64 * 1024.0 / conns as f64)
}
