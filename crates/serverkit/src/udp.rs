//! UDP: the paper's raw protocol without a connection. A datagram in, `HelloWorld\n` out, to
//! the address it came from.
//!
//! What the models share is here: the socket ([`bind`]), what a datagram is answered with
//! ([`answer`]), and the iterative loop ([`serve_iterative`]), which is the natural UDP server:
//! one socket serves every client, a `recvfrom` and a `sendto` per request, and nothing to
//! accept, no descriptor and no state per client. The epoll server's datagram loop batches
//! the same work with `recvmmsg`/`sendmmsg` (`crates/epoll/src/udp.rs`).
//!
//! **Why the other models refuse `--transport udp`** (exit 2, [`tcp_only`]): a process or a
//! thread *per connection* (fork, threads) or a pool that hands out *connections* (pool,
//! prefork) has nothing to hand out: there are no connections, only datagrams, each a whole
//! request on the one socket. A process per datagram would pay a fork to send 11 bytes; the
//! readiness loops (select, poll, busypoll, sigio, mio) would wait on one descriptor, which
//! is the iterative loop with extra steps. UDP's parallelism is `SO_REUSEPORT` (a socket per
//! core) or several threads on one socket, not a worker per client.
//!
//! **What UDP gives up:** the kernel keeps no connection, so it also keeps no promise. A
//! datagram that finds the receive buffer full (`SO_RCVBUF`) is dropped and counted in
//! `/proc/net/snmp` (`Udp: RcvbufErrors`); nobody resends it. A client must time out and count
//! it lost (`bench-client load --udp`). There is no flow control: a client sending faster than
//! the server answers loses datagrams instead of being slowed down.
//!
//! **Oversized datagrams are ignored**: a datagram of more than [`MAX_REQUEST`] bytes gets no
//! answer (a refusal would be an answer to whatever source address the datagram claims, and
//! UDP source addresses are not checked by anyone).

use std::io;
use std::net::UdpSocket;

use socket2::{Domain, Socket, Type};

use crate::cli::ServerArgs;
use crate::listener::TICK;
use crate::shutdown;
use crate::workload::{burn_cpu, Workload};

/// The answer to every request datagram.
pub const ANSWER: &[u8] = b"HelloWorld\n";

/// The largest request datagram answered, in bytes. A buffer one byte larger tells a longer
/// datagram (the kernel truncates it to the buffer) from one that fits.
pub const MAX_REQUEST: usize = 512;

/// What `exit_code` recognizes as "this model serves TCP only".
#[derive(Debug)]
struct TcpOnly;

impl std::fmt::Display for TcpOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "--transport udp: this model serves TCP only (a worker per connection has no \
             connection to work for; UDP is served by server-iterative and server-epoll)",
        )
    }
}

impl std::error::Error for TcpOnly {}

/// The error a TCP-only model's listener returns for `--transport udp`: `exit_code` turns it
/// into one line and exit code 2.
pub fn tcp_only() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, TcpOnly)
}

/// True for the error of [`tcp_only`].
pub fn is_tcp_only(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TcpOnly>())
}

/// Binds the UDP socket described by `args` (`SO_REUSEADDR`; `SO_RCVTIMEO` a [`TICK`], so a
/// blocking `recvfrom` looks at the shutdown flag that often).
///
/// # Errors
/// Any socket error (address in use, permission denied, ...).
pub fn bind(args: &ServerArgs) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(args.addr), Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    if args.reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.set_read_timeout(Some(TICK))?;
    socket.bind(&args.addr.into())?;
    Ok(socket.into())
}

/// The answer to a datagram of `len` bytes read into a buffer of `MAX_REQUEST + 1`, or `None`
/// for one too long (it is ignored). An empty datagram is a request too.
pub fn answer(len: usize) -> Option<&'static [u8]> {
    (len <= MAX_REQUEST).then_some(ANSWER)
}

/// Pays a request's cost on the spot: `cpu` burns, `delay` sleeps (the one thread waits, as
/// the iterative TCP server's does).
pub fn pay(workload: Workload) {
    match workload {
        Workload::Hello => {}
        Workload::Cpu(d) => burn_cpu(d),
        Workload::Delay(d) => std::thread::sleep(d),
    }
}

/// The iterative UDP server: `recvfrom`, pay the workload, `sendto`, until a shutdown is
/// requested. A failed `sendto` (the client's port closed, `ECONNREFUSED` from an ICMP error)
/// costs that answer only.
///
/// # Errors
/// If `recvfrom` fails for another reason than a timeout or a signal.
pub fn serve_iterative(socket: &UdpSocket, workload: Workload) -> io::Result<()> {
    let mut buf = [0u8; MAX_REQUEST + 1];
    while !shutdown::requested() {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                if let Some(answer) = answer(len) {
                    pay(workload);
                    let _ = socket.send_to(answer, peer);
                }
            }
            Err(e) if waits(&e) => {}
            Err(_) if shutdown::requested() => {} // the handler shut the socket down
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// True for the errors a blocking UDP read returns when it only timed out, was interrupted,
/// or carries a previous `sendto`'s ICMP error (`ECONNREFUSED`: a client that left).
pub fn waits(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
    )
}
