//! SIGINT/SIGTERM: stop accepting, finish the requests in flight, exit 0.
//!
//! The handler does two async-signal-safe things: it sets a flag, and it calls `shutdown(2)` on
//! the listening socket. On Linux that wakes every thread and process blocked in `accept` on
//! that socket at once (accept fails with `EINVAL`), so no model needs a watcher thread, which
//! matters for the fork model: it must not have threads when it forks. Connection loops look at
//! [`requested`] between requests and at every read tick, answer what they hold and close.
//! Event loops see their `epoll_wait` return `EINTR` and look at the flag there. (The
//! signal-driven server installs none of this: it blocks SIGTERM and takes it from the
//! `sigtimedwait` that brings its other signals.)
//!
//! SIGPIPE needs nothing: the Rust runtime ignores it before `main`, so a client that vanishes
//! mid-response gives a write error (`EPIPE`) on that connection, never a dead server.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static LISTENER_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_signal: libc::c_int) {
    // The interrupted code may be about to read `errno` (a failed call it just made): a
    // handler that calls anything that can fail must give it back as it found it.
    let saved_errno = Errno::last_raw();
    REQUESTED.store(true, Ordering::SeqCst);
    let fd = LISTENER_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown(2) is async-signal-safe; `fd` is the listener registered by
        // `install`, still open while the server runs (processes that must leave it alone
        // call `forget_listener`).
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
    Errno::set_raw(saved_errno);
}

/// Installs the SIGINT/SIGTERM handler for a server listening on `listener`.
///
/// The handler is installed without `SA_RESTART`, so a blocking `waitpid`, `epoll_wait` or read
/// returns `EINTR` and its loop can look at [`requested`].
///
/// # Errors
/// If `sigaction` fails.
pub fn install(listener: &impl AsRawFd) -> io::Result<()> {
    LISTENER_FD.store(listener.as_raw_fd(), Ordering::SeqCst);
    install_handler()
}

/// Installs the SIGINT/SIGTERM handler for a process that accepts nothing (a master that only
/// supervises its workers): the signal sets the flag and interrupts its blocking call
/// (`waitpid`) with `EINTR`.
///
/// # Errors
/// If `sigaction` fails.
pub fn install_without_listener() -> io::Result<()> {
    LISTENER_FD.store(-1, Ordering::SeqCst);
    install_handler()
}

fn install_handler() -> io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches atomics and calls an async-signal-safe syscall.
        unsafe { sigaction(signal, &action) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// Makes the handler leave the listener alone, so the signal only sets the flag (seen within a
/// [`TICK`](crate::listener::TICK) by the loops). For a forked child that closed its copy, so
/// the descriptor number, reused for something else, is never shut down by mistake; and for a
/// prefork worker, whose listener is shared: shutting it down would stop every sibling, when
/// a SIGTERM sent to one worker should stop that one alone.
pub fn forget_listener() {
    LISTENER_FD.store(-1, Ordering::SeqCst);
}

/// True once SIGINT or SIGTERM arrived (or [`request`] was called).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Asks for a shutdown as if a signal had come (used by tests and by models that stop early).
pub fn request() {
    on_signal(0);
}

/// Registers `listener` as the socket the handler shuts down, without installing anything;
/// for tests of the handler.
#[doc(hidden)]
pub fn set_listener_fd(fd: i32) {
    LISTENER_FD.store(fd, Ordering::SeqCst);
}
