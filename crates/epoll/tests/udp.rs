//! The UDP checks (`--transport udp`), run against this crate's binary as a subprocess.
conformance::udp_suite!(env!("CARGO_BIN_EXE_server-epoll"));
