//! The shutdown handler gives `errno` back as it found it. (A file of its own: the handler sets
//! the process-wide shutdown flag.)

use std::os::fd::AsRawFd;

use nix::errno::Errno;

#[test]
fn the_signal_handler_preserves_errno() {
    // A descriptor that is not a socket: the handler's shutdown(2) on it fails (ENOTSOCK),
    // which would overwrite errno if the handler did not restore it.
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    serverkit::shutdown::set_listener_fd(file.as_raw_fd());
    Errno::set_raw(libc::EAGAIN);
    serverkit::shutdown::request();
    assert_eq!(Errno::last_raw(), libc::EAGAIN);
    assert!(serverkit::shutdown::requested());
    serverkit::shutdown::set_listener_fd(-1);
}
