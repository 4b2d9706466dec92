//! Iterative server: one connection at a time, start to finish, on the main thread.
//!
//! The paper's A.1 and the baseline of every table. **Cost:** nothing beyond the work itself,
//! no process, thread or event machinery, so on `hello` with a new connection per request it
//! is hard to beat. **Where it breaks:** everything waits behind the current connection. Five
//! clients each asking for `delay:100ms` take 5 x 100 ms; one keep-alive client (or one slow
//! client) holds the server until it leaves or times out. **Watch in the benchmark:** Table 2
//! sits at 10 s where every concurrent model is at 2 s.
//!
//! `--transport udp` is the same loop over datagrams, and the natural UDP server: a
//! `recvfrom` and a `sendto` per request on one socket, no connection to wait behind
//! (`serverkit::udp::serve_iterative`).
//!
//! ```text
//! server-iterative --workload delay:100ms
//! curl -s http://127.0.0.1:PORT/
//! ```

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serverkit::blocking::{self, Accepted};
use serverkit::connection::Connection;
use serverkit::date::SharedDate;
use serverkit::{listener, shutdown, udp, ServerArgs, ServerConfig, Transport};

/// The cached `Date` header: one process, one thread, so one cache that nothing else touches.
static DATE: SharedDate = SharedDate::new();

/// Iterative server: serves one connection at a time.
#[derive(Parser)]
#[command(name = "server-iterative", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-iterative", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    if args.transport == Transport::Udp {
        let socket = udp::bind(args)?;
        shutdown::install(&socket)?;
        listener::announce_addr(socket.local_addr()?)?;
        return udp::serve_iterative(&socket, args.workload);
    }
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    listener::announce(&listener)?;
    run(&listener, &args.config());
    Ok(())
}

/// The whole model: accept, serve to the end, accept the next.
fn run(listener: &TcpListener, config: &ServerConfig) {
    // One connection's state, reused for each connection in turn.
    let mut conn = Connection::new(*config, Instant::now());
    loop {
        match blocking::accept(listener) {
            Accepted::Conn(stream) => blocking::serve_connection(stream, &mut conn, &DATE),
            Accepted::Tick => {}
            Accepted::Shutdown => return,
        }
    }
}
