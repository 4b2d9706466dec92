//! Model test of `--accept`: who calls `accept`.

use conformance::client::get_once;
use conformance::Server;

const BIN: &str = env!("CARGO_BIN_EXE_server-pool");

/// Names of the server's threads.
fn thread_names(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    names.sort();
    names
}

/// `shared`: the workers accept, there is no acceptor; `handoff`: one acceptor beside them.
#[test]
fn handoff_adds_one_acceptor_thread_and_serves_the_same() {
    for (mode, acceptors) in [("shared", 0), ("handoff", 1)] {
        let server = Server::start(BIN, &["--workers", "2", "--accept", mode]);
        for _ in 0..10 {
            assert_eq!(get_once(server.addr).status, 200);
        }
        // A thread names itself when it first runs: on a busy machine one worker may not have
        // run yet (the other served every request), so wait a moment for both names.
        let started = std::time::Instant::now();
        let mut names = thread_names(&server);
        while names.iter().filter(|n| n.starts_with("worker-")).count() < 2
            && started.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            names = thread_names(&server);
        }
        let count = |name: &str| names.iter().filter(|n| n.starts_with(name)).count();
        assert_eq!(count("worker-"), 2, "{mode}: {names:?}");
        assert_eq!(count("acceptor"), acceptors, "{mode}: {names:?}");
    }
}
