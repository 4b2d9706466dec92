//! The shared conformance suite, run against this crate's binary as a subprocess.
conformance::suite!(
    env!("CARGO_BIN_EXE_server-poll"),
    conformance::Model::Concurrent
);
