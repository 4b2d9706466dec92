//! The thread-per-connection server caps its live connection threads (`--max-conns`).

#[test]
fn threads_are_capped_by_max_conns() {
    let (threads, _) =
        conformance::checks::max_conns_caps_what_clients_get(env!("CARGO_BIN_EXE_server-threads"));
    assert_eq!(
        threads, 3,
        "the main thread and at most 2 connection threads, and the cap was reached"
    );
}
