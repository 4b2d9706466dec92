//! Model test: a preforked pool whose parent fails at start-up leaves no worker behind. (A
//! file of its own: it makes this test process a subreaper and reaps any child.)

use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_server-prefork");

/// A parent that cannot write its ready line takes its workers down with it: no orphan is
/// left serving a port nobody knows.
#[test]
fn a_failed_announce_leaves_no_worker_behind() {
    use std::process::{Command, Stdio};
    // Orphans are re-parented to the nearest subreaper: make that this test process, so any
    // worker left behind shows up among our children.
    // SAFETY: prctl with an integer argument; affects only this process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let mut child = Command::new(BIN)
        .args(["--addr", "127.0.0.1:0", "--workers", "3"])
        .stdin(Stdio::null())
        .stdout(conformance::server::failing_stdout())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let me = std::process::id();
    let start = Instant::now();
    loop {
        // Reap anything re-parented to us that has exited, then look at what is left.
        // SAFETY: waitpid on any child, not blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let left: Vec<String> = std::fs::read_dir(format!("/proc/{me}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect();
        if left.is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(3) {
            for pid in &left {
                // SAFETY: kill(2) on our own (adopted) children, to clean up.
                unsafe { libc::kill(pid.parse().unwrap_or(0), libc::SIGKILL) };
            }
            panic!("workers left behind: {left:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
