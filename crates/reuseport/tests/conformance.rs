//! The shared conformance suite, run against this crate's binary as a subprocess, with two
//! workers whatever the machine (the checks that count descriptors or connections need a
//! number that does not depend on its cores).
conformance::suite!(
    env!("CARGO_BIN_EXE_server-reuseport"),
    conformance::Model::Concurrent,
    ["--workers", "2"]
);
