//! The shared conformance suite, run against this crate's binary as a subprocess.
conformance::suite!(
    env!("CARGO_BIN_EXE_server-mio"),
    conformance::Model::Concurrent
);
