//! Hostile clients run beside the normal load of a `hostile` cell.
//!
//! - `Slowloris(K)`: K connections that each send half a request head and then hold the
//!   connection, as the slowloris attack does, until the cell ends. Each holds whatever the
//!   model gives a connection (a thread, a process, a pool slot) until the server's read
//!   timeout (10 s by default, longer than a cell).
//! - `Malformed`: one client sending requests that are not HTTP, one connection each, reading
//!   the `400`, as fast as it can.
//! - `Resets`: one client sending a request and resetting the connection (SO_LINGER 0) before
//!   the answer, as fast as it can.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What misbehaves beside the normal load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adversary {
    /// Nothing: the clean run the others are compared with.
    None,
    /// K connections holding half a request each.
    Slowloris(usize),
    /// A stream of malformed requests.
    Malformed,
    /// A stream of clients that reset before their answer.
    Resets,
}

impl Adversary {
    /// Short name for reports.
    pub fn label(&self) -> String {
        match self {
            Adversary::None => "clean".into(),
            Adversary::Slowloris(k) => format!("slowloris {k}"),
            Adversary::Malformed => "malformed".into(),
            Adversary::Resets => "resets".into(),
        }
    }
}

/// A running adversary; stop it with [`Attack::stop`].
pub struct Attack {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    held: Vec<TcpStream>,
    /// Connections opened (slowloris) or requests sent (streams).
    pub actions: Arc<AtomicU64>,
}

/// Starts `adversary` against `addr`.
pub fn start(adversary: Adversary, addr: SocketAddr) -> Attack {
    let stop = Arc::new(AtomicBool::new(false));
    let actions = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    let worker = match adversary {
        Adversary::None => None,
        Adversary::Slowloris(k) => {
            for _ in 0..k {
                let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                else {
                    continue;
                };
                if stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: slowloris\r\nX-Slow: ")
                    .is_ok()
                {
                    actions.fetch_add(1, Ordering::Relaxed);
                    held.push(stream);
                }
            }
            None
        }
        Adversary::Malformed | Adversary::Resets => {
            let (stop, actions) = (Arc::clone(&stop), Arc::clone(&actions));
            Some(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if one_hostile_request(adversary, addr) {
                        actions.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }))
        }
    };
    Attack {
        stop,
        worker,
        held,
        actions,
    }
}

fn one_hostile_request(adversary: Adversary, addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    match adversary {
        Adversary::Malformed => {
            if stream
                .write_all(b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n")
                .is_err()
            {
                return false;
            }
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            true
        }
        _ => {
            let sent = stream
                .write_all(b"GET / HTTP/1.1\r\nHost: reset\r\n\r\n")
                .is_ok();
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            sent // dropped here: RST instead of FIN
        }
    }
}

impl Attack {
    /// Stops the adversary and closes what it holds.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        self.held.clear();
        self.actions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A listener that records what each connection sent, answering nothing but closing.
    fn recorder() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 512];
                    while let Ok(n) = stream.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&chunk[..n]);
                        if got.ends_with(b"\r\n\r\n") {
                            break;
                        }
                    }
                    let _ = tx.send(got);
                });
            }
        });
        (addr, rx)
    }

    #[test]
    fn slowloris_holds_k_half_requests() {
        let (addr, rx) = recorder();
        let attack = start(Adversary::Slowloris(5), addr);
        for _ in 0..5 {
            let got = rx.recv_timeout(Duration::from_secs(2)).unwrap();
            assert!(
                got.starts_with(b"GET / HTTP/1.1\r\n") && !got.ends_with(b"\r\n\r\n"),
                "{got:?}"
            );
        }
        assert_eq!(attack.stop(), 5);
    }

    #[test]
    fn streams_keep_sending_until_stopped() {
        for (adversary, expect) in [
            (Adversary::Malformed, &b"\x16\x03"[..]),
            (Adversary::Resets, &b"GET / "[..]),
        ] {
            let (addr, rx) = recorder();
            let attack = start(adversary, addr);
            let first = rx.recv_timeout(Duration::from_secs(2)).unwrap();
            assert!(first.starts_with(expect), "{adversary:?}: {first:?}");
            std::thread::sleep(Duration::from_millis(300));
            assert!(attack.stop() >= 2, "{adversary:?} sent too little");
        }
    }
}
