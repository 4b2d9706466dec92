//! What every archbench server shares, written once.
//!
//! A server crate holds one concurrency model and nothing else; everything a request needs
//! besides the model lives here:
//!
//! - [`cli`]: the flags every server takes ([`ServerArgs`]), and one-line usage errors;
//! - [`listener`]: the bound socket (large backlog, `SO_REUSEADDR`, optional `SO_REUSEPORT`,
//!   `TCP_NODELAY` and the socket timeouts set once, inherited by every accepted socket) and the
//!   ready line `listening on ADDR`;
//! - [`http`]: sans-IO request parsing (httparse) and the response bytes, no I/O inside;
//! - [`buffers`]: a connection's request buffer and outbox, and the bounded pool an event loop
//!   lends them from while bytes are in them;
//! - [`connection`]: the one connection protocol (pipelining, close rules, deadlines,
//!   graceful close, shutdown) as a sans-IO state machine that every model drives;
//! - [`date`]: the cached `Date` header;
//! - [`workload`]: what a request costs: `hello`, `delay:D`, `cpu:D`;
//! - [`blocking`]: the accept call, and the loop that drives a connection with blocking calls;
//! - [`nonblocking`]: accepting, reading and driving a connection on non-blocking sockets, for
//!   the single-threaded loops;
//! - [`shutdown`]: SIGINT/SIGTERM handling (stop accepting, finish what is in flight);
//! - [`supervisor`]: a master's worker processes (replace the dead, pass SIGTERM on);
//! - [`timers`]: deadlines and a timerfd, for the event loops.
#![deny(missing_docs)]

pub mod blocking;
pub mod buffers;
pub mod cli;
pub mod connection;
pub mod date;
pub mod framing;
pub mod http;
pub mod listener;
pub mod nonblocking;
pub mod shutdown;
pub mod supervisor;
pub mod timers;
pub mod udp;
pub mod workload;

pub use cli::{Protocol, ServerArgs, ServerConfig, Transport};
pub use workload::Workload;

use std::process::ExitCode;

/// Maps the result of a server's `run` to its exit code: 0 on a clean stop, 2 for a transport
/// the model does not serve ([`udp::tcp_only`], a usage error), 1 with a one-line message on
/// stderr otherwise.
pub fn exit_code(name: &str, result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if udp::is_tcp_only(&e) => {
            eprintln!("error: {name}: {e} (see --help)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
