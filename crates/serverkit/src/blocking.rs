//! The accept call and the connection loop every blocking model shares.
//!
//! A blocking model differs from its siblings only in *who* calls [`serve_connection`]: the
//! main thread (iterative), a forked child (fork), a new thread (threads), a pool thread (pool)
//! or a pool process (prefork). The loop itself is the same everywhere, and the protocol it
//! runs is [`crate::connection`]'s, the event loops' too, so the tables compare the models
//! and nothing else.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Instant;

use crate::connection::{Action, Connection};
use crate::date::SharedDate;
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

/// Serves one connection to its end, the blocking way: each [`Action`] of the connection's
/// state machine is one blocking call. Errors on the connection (reset, broken pipe) end it
/// quietly: a client that misbehaves costs the server nothing.
///
/// The socket's timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`, both a [`TICK`], inherited from the
/// listener) wake a blocked read or write every tick, so the loop sees its deadlines and the
/// shutdown flag; under load the calls return long before. `conn` is the connection state,
/// reset here: a model that serves one connection after another passes the same one each
/// time. `dates` is where this process or thread keeps its cached `Date`; the loop keeps a
/// copy until it goes stale.
pub fn serve_connection(mut stream: TcpStream, conn: &mut Connection, dates: &SharedDate) {
    let mut now = Instant::now();
    let mut date = dates.current(now);
    conn.reset(now);
    loop {
        if shutdown::requested() {
            conn.shutdown(now);
        }
        if date.is_stale(now) {
            date = dates.current(now);
        }
        match conn.next(now, &date) {
            Action::Read { .. } => {
                let result = stream.read(conn.read_buf());
                now = Instant::now();
                match result {
                    Ok(n) => conn.read(n, now),
                    Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
            Action::Write { .. } => match stream.write(conn.to_write()) {
                Ok(0) => return,
                Ok(n) => conn.wrote(n, now),
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                    now = Instant::now();
                }
                Err(_) => return,
            },
            Action::Work(workload) => {
                workload.run_blocking();
                now = Instant::now();
                conn.worked();
            }
            Action::CloseWrite => {
                let _ = stream.shutdown(Shutdown::Write);
            }
            Action::Close => return,
        }
    }
}
