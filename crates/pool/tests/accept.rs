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
        // A thread takes its name as it starts running: on a loaded machine a worker may not
        // have run yet (its sibling served the requests), so wait, boundedly, for both names.
        let mut names = thread_names(&server);
        for _ in 0..100 {
            if names.iter().filter(|n| n.starts_with("worker-")).count() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            names = thread_names(&server);
        }
        let count = |name: &str| names.iter().filter(|n| n.starts_with(name)).count();
        assert_eq!(count("worker-"), 2, "{mode}: {names:?}");
        assert_eq!(count("acceptor"), acceptors, "{mode}: {names:?}");
    }
}
