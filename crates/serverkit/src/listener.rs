//! The listening socket every server uses, and the ready line.
//!
//! Options set here once are inherited by every socket `accept` returns (Linux copies them from
//! the listener), so no model pays a syscall per connection for them:
//! `TCP_NODELAY` (answers leave at once) and `SO_RCVTIMEO`/`SO_SNDTIMEO` (a blocking read or
//! write wakes every [`TICK`] to look at its deadlines and the shutdown flag). A test in this
//! module asserts the inheritance.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::cli::{ServerArgs, Transport};

/// What the ready line starts with: `listening on ADDR`.
pub const READY_PREFIX: &str = "listening on ";

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 by default).
pub const BACKLOG: i32 = 4096;

/// How often a blocked read, write or accept wakes to look at deadlines and the shutdown flag.
pub const TICK: Duration = Duration::from_millis(250);

/// Binds the listener described by `args`.
///
/// # Errors
/// Any socket error (address in use, permission denied, ...).
pub fn bind(args: &ServerArgs) -> io::Result<TcpListener> {
    let socket = reserve(args)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Everything [`bind`] does but `listen`: the socket holds the address and receives no
/// connection. The reuseport server's master holds its port this way (port 0 becomes a
/// chosen port), and its workers [`join`] it.
///
/// # Errors
/// Any socket error (address in use, permission denied, ...).
pub fn reserve(args: &ServerArgs) -> io::Result<Socket> {
    if args.transport == Transport::Udp {
        return Err(crate::udp::tcp_only());
    }
    raise_fd_limit();
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "warning: binding {} makes this server reachable from other machines; \
             it is a benchmark target, not a hardened server",
            args.addr
        );
    }
    bound(args.addr, args.reuseport)
}

/// A listener of its own on `addr`, an address [`reserve`]d with `SO_REUSEPORT`: it joins
/// the group of listeners among which the kernel spreads the connections to that address.
///
/// # Errors
/// Any socket error (the address was not reserved with `SO_REUSEPORT`, ...).
pub fn join(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = bound(addr, true)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A socket with the options every listener has, bound to `addr`.
fn bound(addr: SocketAddr, reuseport: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(TICK))?;
    socket.set_write_timeout(Some(TICK))?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Raises the soft limit on open descriptors to the hard limit (as nginx's
/// `worker_rlimit_nofile` or Go's runtime do): the soft default of 1024 would cap a server at
/// about a thousand connections long before its model does. A lowered hard limit (a test, an
/// administrator) is respected.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Prints the ready line `listening on ADDR` on stdout and flushes it. Call it once the server
/// accepts: the suite runner and every test wait for this line to learn the port.
///
/// # Errors
/// If the local address cannot be read or stdout is closed.
pub fn announce(listener: &TcpListener) -> io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    announce_addr(addr)?;
    Ok(addr)
}

/// Prints the ready line for `addr` (for listeners that are not a std [`TcpListener`]).
///
/// # Errors
/// If stdout is closed.
pub fn announce_addr(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{READY_PREFIX}{addr}")?;
    out.flush()
}

/// The other side of [`announce`]: reads a started server's ready line from its stdout and
/// returns the address in it. The rest of stdout is drained in the background, so a server
/// that prints more never blocks on a full pipe.
///
/// # Errors
/// No line within `timeout`, or a line that is not `listening on ADDR`.
pub fn wait_for_ready_line(
    stdout: std::process::ChildStdout,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        while reader.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
            rest.clear();
        }
    });
    let line = rx
        .recv_timeout(timeout)
        .map_err(|_| format!("no ready line within {timeout:?}"))?;
    line.trim()
        .strip_prefix(READY_PREFIX)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("unexpected ready line {:?}", line.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;
    use crate::Protocol;
    use std::net::TcpStream;

    pub(crate) fn args() -> ServerArgs {
        ServerArgs {
            addr: "127.0.0.1:0".parse().unwrap(),
            workload: Workload::Hello,
            protocol: Protocol::Http,
            transport: crate::Transport::Tcp,
            max_conns: 8,
            reuseport: false,
            read_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(5),
            headers: crate::http::Headers::Standard,
        }
    }

    #[test]
    fn listeners_that_join_a_reserved_address_share_its_connections() {
        let reserved = reserve(&ServerArgs {
            reuseport: true,
            ..args()
        })
        .unwrap();
        let addr = reserved.local_addr().unwrap().as_socket().unwrap();
        assert_ne!(addr.port(), 0, "port 0 became a chosen port");
        let group = [join(addr).unwrap(), join(addr).unwrap()];
        let clients: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let mut accepted = 0;
        for listener in &group {
            listener.set_nonblocking(true).unwrap();
            while listener.accept().is_ok() {
                accepted += 1;
            }
        }
        assert_eq!(
            accepted,
            clients.len(),
            "every connection reached a joined listener"
        );
        assert!(
            reserved.accept().is_err(),
            "the reserving socket does not listen"
        );
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_and_timeouts() {
        let listener = bind(&args()).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.nodelay().unwrap(), "TCP_NODELAY not inherited");
        let read = sock
            .read_timeout()
            .unwrap()
            .expect("SO_RCVTIMEO not inherited");
        assert!(
            read >= TICK && read < TICK + Duration::from_millis(20),
            "{read:?}"
        );
        assert_eq!(sock.write_timeout().unwrap(), sock.read_timeout().unwrap());
    }
}
