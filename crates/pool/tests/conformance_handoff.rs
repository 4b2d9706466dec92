//! The shared conformance suite against the pool with `--accept handoff`: one acceptor thread
//! handing connections to the workers over a channel.
conformance::suite!(
    env!("CARGO_BIN_EXE_server-pool"),
    conformance::Model::Concurrent,
    ["--accept", "handoff"]
);
