//! `server-epoll`: the epoll event loop of this crate's library (`src/lib.rs`: the model, its
//! cost, where it breaks, what to watch) on one listener, in one process.
//!
//! ```text
//! server-epoll --workload delay:100ms
//! ```

use std::io;
use std::process::ExitCode;

use clap::Parser;
use server_epoll::udp::DatagramLoop;
use server_epoll::EventLoop;
use serverkit::{listener, shutdown, ServerArgs, Transport};

/// Epoll event-loop server: one thread, many connections.
#[derive(Parser)]
#[command(name = "server-epoll", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-epoll", start(&cli.server))
}

fn start(args: &ServerArgs) -> io::Result<()> {
    if args.transport == Transport::Udp {
        let socket = serverkit::udp::bind(args)?;
        shutdown::install(&socket)?;
        let addr = socket.local_addr()?;
        let datagram_loop = DatagramLoop::new(socket, args.workload)?;
        listener::announce_addr(addr)?;
        return datagram_loop.run();
    }
    let listener = listener::bind(args)?;
    shutdown::install(&listener)?;
    let addr = listener.local_addr()?;
    let event_loop = EventLoop::new(listener, args.config(), args.max_conns as usize)?;
    listener::announce_addr(addr)?;
    event_loop.run()
}
