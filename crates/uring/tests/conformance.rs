//! The shared conformance suite, run against this crate's binary as a subprocess; skipped, with
//! the server's own reason, where the kernel or a sandbox refuses io_uring.
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_server-uring");

fn io_uring_refused() -> Option<String> {
    static REFUSAL: OnceLock<Option<String>> = OnceLock::new();
    REFUSAL
        .get_or_init(|| conformance::server::refusal(BIN, "io_uring is not available"))
        .clone()
}

conformance::suite!(BIN, conformance::Model::Concurrent, skip_if: io_uring_refused);
