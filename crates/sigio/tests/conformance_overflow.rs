//! The shared conformance suite again, with a signal queue of 0 (`RLIMIT_SIGPENDING`): every
//! readiness signal overflows into SIGIO, so the server is served by its fallback alone, the
//! scan of every connection. (Real kernel behaviour, not a simulation: the queue is full
//! from the start.)
conformance::suite!(
    env!("CARGO_BIN_EXE_server-sigio"),
    conformance::Model::Concurrent,
    ["--signal-queue", "0"]
);
