//! A scriptable test server: thread per connection, counts what the client does, and
//! misbehaves on request.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the server answers each request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// 200 `HelloWorld\n`, keep-alive unless the request says close.
    Hello,
    /// Like Hello, after a pause.
    Delay(Duration),
    /// 500.
    Status500,
    /// Half a response, then a reset (SO_LINGER 0).
    ResetMidResponse,
    /// Half a response, then a clean close.
    EarlyClose,
    /// A head that starts as HTTP and is not.
    Garbage,
    /// Never answer.
    Stall,
    /// Like Hello, but the whole server pauses once for this long at request number `at`.
    StallOnce { at: u64, pause: Duration },
    /// Raw protocol: `HelloWorld\n` on connect, then close.
    Raw,
    /// Like Hello, but the k-th answer on each connection says `Connection: close`, and the
    /// server then closes (gracefully: its answers are not lost to a reset), whatever requests
    /// it has not answered yet.
    CloseAfter(u64),
}

#[derive(Default)]
pub struct Counters {
    pub peers: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Most whole requests the server held unanswered at once after a read: the depth the
    /// client pipelines to.
    pub max_pipelined: AtomicU64,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let pause_gate = Arc::new(Mutex::new(()));
        let (c, s) = (Arc::clone(&counters), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                // Answers to pipelined requests leave one write each: without this, Nagle's
                // algorithm holds the second until the client's delayed ACK (~40 ms).
                let _ = stream.set_nodelay(true);
                c.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(peer) = stream.peer_addr() {
                    c.peers.lock().unwrap().insert(peer.ip());
                }
                let (c, gate) = (Arc::clone(&c), Arc::clone(&pause_gate));
                thread::spawn(move || serve(stream, behaviour, &c, &gate));
            }
        });
        TestServer {
            addr,
            counters,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHelloWorld\n";
const OK_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nHelloWorld\n";

fn serve(mut stream: TcpStream, behaviour: Behaviour, c: &Counters, gate: &Mutex<()>) {
    if behaviour == Behaviour::Raw {
        let _ = stream.write_all(b"HelloWorld\n");
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut answered = 0;
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let whole = buf.windows(4).filter(|w| w == b"\r\n\r\n").count();
            c.max_pipelined.fetch_max(whole as u64, Ordering::SeqCst);
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        answered += 1;
        let last = matches!(behaviour, Behaviour::CloseAfter(k) if answered >= k);
        let close = head.contains("connection: close") || last;
        let number = c.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let result = match behaviour {
            Behaviour::Hello | Behaviour::Raw | Behaviour::CloseAfter(_) => Ok(()),
            Behaviour::Delay(d) => {
                thread::sleep(d);
                Ok(())
            }
            Behaviour::StallOnce { at, pause } => {
                if number == at {
                    let _held = gate.lock().unwrap();
                    thread::sleep(pause);
                } else {
                    drop(gate.lock().unwrap());
                }
                Ok(())
            }
            Behaviour::Status500 => {
                let _ = stream.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nno\n");
                Err(())
            }
            Behaviour::ResetMidResponse => {
                let _ = stream.write_all(&OK[..20]);
                thread::sleep(Duration::from_millis(5));
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                Err(())
            }
            Behaviour::EarlyClose => {
                let _ = stream.write_all(&OK[..20]);
                Err(())
            }
            Behaviour::Garbage => {
                // An HTTP-looking start, then nonsense: a bad answer, not the other protocol
                // (which stops the run: see `a_raw_server_is_refused_on_its_first_answer`).
                let _ = stream.write_all(b"HTTP/1.1 2xx garbage\r\n\r\n");
                Err(())
            }
            Behaviour::Stall => {
                thread::sleep(Duration::from_secs(3));
                Err(())
            }
        };
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            return;
        }
        if stream.write_all(if close { OK_CLOSE } else { OK }).is_err() {
            return;
        }
        if last {
            return linger(stream);
        }
        if close {
            return;
        }
    }
}

/// Closes after the peer has seen everything written: FIN first, then unread input drained
/// (a close with input unread would send a reset, which can destroy answers in flight).
fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 4096];
    for _ in 0..1000 {
        if matches!(stream.read(&mut sink), Ok(0) | Err(_)) {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The directory of the bench-client under test, where `cargo build --workspace` puts the
/// server binaries too; panics naming any of `servers` (`server-epoll`, ...) missing there.
pub fn bin_dir(servers: &[&str]) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_bench-client"))
        .parent()
        .unwrap()
        .to_path_buf();
    for server in servers {
        assert!(
            dir.join(server).is_file(),
            "{server} is not built in {}: run `cargo build --workspace` (make test does)",
            dir.display()
        );
    }
    dir
}

/// A new, empty directory for one test.
pub fn temp_dir(prefix: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The CSV a suite run wrote into `dir`.
pub fn csv_in(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .expect("a CSV was written")
}

/// Writes an executable Python script named `name` into `dir`.
pub fn script(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/usr/bin/env python3\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs bench-client with `args`, which must be a usage error: exit code 2, and on stderr
/// either clap's whole message (a malformed command line: it names the argument and ends with
/// its pointer to --help) or one line of ours (a check after parsing). Returns stderr.
pub fn usage_error(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    let from_clap = stderr
        .trim_end()
        .ends_with("For more information, try '--help'.");
    if !from_clap {
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.trim_end().ends_with("(see --help)"), "{stderr}");
    }
    stderr
}
