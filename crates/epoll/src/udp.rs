//! The epoll loop for datagrams (`server-epoll --transport udp`): one socket, level-triggered
//! epoll, and `recvmmsg`/`sendmmsg` moving up to [`BATCH`] datagrams per syscall.
//!
//! With one socket there is nothing to multiplex: what the event loop buys over the iterative
//! `recvfrom`/`sendto` loop (`serverkit::udp::serve_iterative`) is the batch. When datagrams
//! queue up (many clients, or one that does not wait), one `recvmmsg` takes them all and one
//! `sendmmsg` answers them, two syscalls for up to [`BATCH`] requests instead of two per
//! request. At low load each wake-up finds one datagram and the loop pays an `epoll_wait`
//! more than the iterative one.
//!
//! An answer the socket cannot take at once (its send buffer full: `EAGAIN`) is dropped, as
//! the network would drop it: the client counts it lost. `cpu:D` is paid per datagram on the
//! spot, `delay:D` sleeps (there is no per-request state to park: every datagram of a batch
//! waits, the lesson of the one-thread loop).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serverkit::udp::{self, MAX_REQUEST};
use serverkit::{shutdown, Workload};

/// Datagrams moved per `recvmmsg` or `sendmmsg`.
pub const BATCH: usize = 64;

/// A batch's buffers and message headers, made once and reused for every batch.
struct Batch {
    bufs: Vec<[u8; MAX_REQUEST + 1]>,
    peers: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// The answers of a batch: one header per datagram answered, pointing at its peer.
    answers: Vec<libc::mmsghdr>,
    answer_iov: libc::iovec,
}

impl Batch {
    fn new() -> Box<Batch> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid value; their pointers are set before every call.
        let zero_peer: libc::sockaddr_storage = unsafe { zeroed() };
        let zero_msg: libc::mmsghdr = unsafe { zeroed() };
        let zero_iov: libc::iovec = unsafe { zeroed() };
        Box::new(Batch {
            bufs: vec![[0; MAX_REQUEST + 1]; BATCH],
            peers: vec![zero_peer; BATCH],
            iovecs: vec![zero_iov; BATCH],
            msgs: vec![zero_msg; BATCH],
            answers: vec![zero_msg; BATCH],
            answer_iov: libc::iovec {
                iov_base: udp::ANSWER.as_ptr() as *mut libc::c_void,
                iov_len: udp::ANSWER.len(),
            },
        })
    }

    /// Receives what is queued, up to [`BATCH`] datagrams, without waiting; 0 when none is.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_REQUEST + 1,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.peers[i]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_flags = 0;
        }
        // SAFETY: every header points into this batch's own buffers, peers and iovecs, which
        // live as long as `self` and are not moved during the call (the batch is boxed).
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match Errno::result(n) {
            Ok(n) => Ok(n as usize),
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Pays for the first `received` datagrams and answers those that are requests, in one
    /// `sendmmsg` (more if the kernel takes part); an answer it refuses is dropped.
    fn answer(&mut self, socket: &UdpSocket, received: usize, workload: Workload) {
        let mut count = 0;
        for i in 0..received {
            let msg = &self.msgs[i];
            let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            if truncated || udp::answer(msg.msg_len as usize).is_none() {
                continue; // oversized: ignored
            }
            udp::pay(workload);
            let out = &mut self.answers[count].msg_hdr;
            out.msg_name = (&raw mut self.peers[i]).cast();
            out.msg_namelen = msg.msg_hdr.msg_namelen;
            out.msg_iov = &raw mut self.answer_iov;
            out.msg_iovlen = 1;
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the headers `sent..count` point at this batch's peers and at the static
            // answer, which `sendmmsg` only reads.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.answers[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match Errno::result(n) {
                Ok(n) if n > 0 => sent += n as usize,
                Err(Errno::EINTR) => {}
                // EAGAIN, or the first peer's ICMP error (ECONNREFUSED): skip one answer, it
                // is lost; the others still go.
                _ => sent += 1,
            }
        }
    }
}

/// The datagram loop: one socket in an epoll set, and its batch.
pub struct DatagramLoop {
    socket: UdpSocket,
    epoll: Epoll,
    workload: Workload,
    batch: Box<Batch>,
}

impl DatagramLoop {
    /// A loop that will serve `socket`, each datagram costing `workload`: made before the
    /// ready line, so that the server holds every descriptor it will ever hold once it
    /// announces.
    ///
    /// # Errors
    /// If the epoll set cannot be made.
    pub fn new(socket: UdpSocket, workload: Workload) -> io::Result<DatagramLoop> {
        socket.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        Ok(DatagramLoop {
            socket,
            epoll,
            workload,
            batch: Batch::new(),
        })
    }

    /// Serves datagrams until a shutdown is requested.
    ///
    /// # Errors
    /// If `epoll_wait` fails, or `recvmmsg` fails for another reason than an empty queue.
    pub fn run(self) -> io::Result<()> {
        let DatagramLoop {
            socket,
            epoll,
            workload,
            mut batch,
        } = self;
        let mut events = [EpollEvent::empty(); 1];
        while !shutdown::requested() {
            match epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Until the queue is empty: a short batch means it was.
            loop {
                let received = match batch.receive(&socket) {
                    Ok(n) => n,
                    Err(e) if udp::waits(&e) => 0, // ECONNREFUSED from an answer sent earlier
                    Err(_) if shutdown::requested() => return Ok(()),
                    Err(e) => return Err(e),
                };
                batch.answer(&socket, received, workload);
                if received < BATCH {
                    break;
                }
            }
        }
        Ok(())
    }
}
