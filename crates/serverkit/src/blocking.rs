//! The accept call and the connection loop every blocking model shares.
//!
//! A blocking model differs from its siblings only in *who* calls [`serve_connection`]: the
//! main thread (iterative), a forked child (fork), a new thread (threads), a pool thread (pool)
//! or a pool process (prefork). The loop itself is the same everywhere, so the tables compare
//! the models and nothing else.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::cli::{Protocol, ServerConfig};
use crate::http::{HttpError, Outbox, RequestBuffer, HELLO_BODY};
use crate::listener::TICK;
use crate::shutdown;

/// Waits for the next connection. `None` once a shutdown was requested.
///
/// The listener's `SO_RCVTIMEO` makes `accept` return every [`TICK`], so the caller can do
/// periodic work (the fork model reaps children there). Running out of descriptors (`EMFILE`)
/// does not spin: the call sleeps a tick and tries again, and existing connections go on.
pub fn accept(listener: &TcpListener) -> Accepted {
    if shutdown::requested() {
        return Accepted::Shutdown;
    }
    match listener.accept() {
        Ok((stream, _)) => Accepted::Conn(stream),
        // EINVAL: the listener was shut down, by our handler or (prefork) a sibling's.
        Err(e) if shutdown::requested() || e.raw_os_error() == Some(libc::EINVAL) => {
            Accepted::Shutdown
        }
        Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => Accepted::Tick,
        Err(e) => {
            // EMFILE/ENFILE/ENOBUFS and friends: the pending connection stays in the backlog;
            // retrying at once would spin on the same error.
            report_accept_error(&e);
            std::thread::sleep(TICK / 5);
            Accepted::Tick
        }
    }
}

/// What [`accept`] returned.
#[derive(Debug)]
pub enum Accepted {
    /// A new connection.
    Conn(TcpStream),
    /// Nothing yet (the tick passed, or a transient error was reported).
    Tick,
    /// Shutdown was requested: stop accepting.
    Shutdown,
}

/// Reports an `accept` failure on stderr, one line a second at most (a server out of
/// descriptors fails every accept it tries).
pub fn report_accept_error(e: &io::Error) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_REPORT_SECS: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // One line a second at most: a server out of descriptors must not flood its log either.
    if LAST_REPORT_SECS.swap(now, Ordering::Relaxed) != now {
        eprintln!("accept: {e} (retrying)");
    }
}

/// True for the error a socket timeout gives (`EAGAIN`, shown as `WouldBlock` or `TimedOut`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Serves one connection to its end, the blocking way. Errors on the connection (reset,
/// broken pipe, timeout) end it quietly: a client that misbehaves costs the server nothing.
pub fn serve_connection(mut stream: TcpStream, config: &ServerConfig) {
    let _ = match config.protocol {
        Protocol::Raw => serve_raw(&mut stream, config),
        Protocol::Http => serve_http(&mut stream, config),
    };
}

fn serve_raw(stream: &mut TcpStream, config: &ServerConfig) -> io::Result<()> {
    config.workload.run_blocking();
    stream.write_all(HELLO_BODY)
}

fn serve_http(stream: &mut TcpStream, config: &ServerConfig) -> io::Result<()> {
    let mut requests = RequestBuffer::new();
    let mut out = Outbox::new();
    // When the current wait began: the idle period, or the first byte of a request head.
    let mut waiting_since = Instant::now();
    loop {
        // Answer every complete request already here, in order (pipelining), then write them
        // in one go.
        let mut close = false;
        while !close {
            match requests.next_request() {
                Ok(Some(request)) => {
                    config.workload.run_blocking();
                    let (response, close_after) = request.response(shutdown::requested());
                    if !out.has_room_for(response) {
                        write_out(stream, &mut out)?;
                    }
                    out.push(response);
                    close = close_after;
                }
                Ok(None) => break,
                Err(e) => {
                    if !out.has_room_for(e.response()) {
                        write_out(stream, &mut out)?;
                    }
                    out.push(e.response());
                    close = true;
                }
            }
        }
        if !out.is_empty() {
            write_out(stream, &mut out)?;
            waiting_since = Instant::now();
        }
        if close || (shutdown::requested() && !requests.has_partial()) {
            return Ok(());
        }

        let had_partial = requests.has_partial();
        match stream.read(requests.spare()) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                requests.filled(n);
                if !had_partial {
                    waiting_since = Instant::now();
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                if let Some(timeout) = expired(&requests, waiting_since, Instant::now(), config) {
                    if timeout == Expired::Read {
                        let _ = stream.write_all(HttpError::Timeout.response());
                    }
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Which deadline of a connection passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request head took longer than the read timeout (answered 408).
    Read,
    /// The connection sat idle longer than the idle timeout (closed quietly).
    Idle,
}

/// Checks a connection's deadline: the read timeout while a request is partly here, the idle
/// timeout between requests. Shared with the event loops.
pub fn expired(
    requests: &RequestBuffer,
    waiting_since: Instant,
    now: Instant,
    config: &ServerConfig,
) -> Option<Expired> {
    let (limit, kind): (Duration, Expired) = if requests.has_partial() {
        (config.read_timeout, Expired::Read)
    } else {
        (config.idle_timeout, Expired::Idle)
    };
    (now.saturating_duration_since(waiting_since) >= limit).then_some(kind)
}

fn write_out(stream: &mut TcpStream, out: &mut Outbox) -> io::Result<()> {
    while !out.is_empty() {
        match stream.write(out.pending()) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => out.sent(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
