//! Model test: a master that fails at start-up (it cannot write its ready line) leaves no
//! worker behind. (A file of its own: it makes this test process a subreaper and reaps any
//! child.)

#[test]
fn a_failed_announce_leaves_no_worker_behind() {
    conformance::checks::a_failed_announce_leaves_no_worker_behind(
        env!("CARGO_BIN_EXE_server-reuseport"),
        &["--workers", "3"],
    );
}
