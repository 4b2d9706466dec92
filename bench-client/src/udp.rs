//! `bench-client load --udp`: the raw protocol over datagrams (a datagram out, `HelloWorld\n`
//! back), closed loop or open loop, with loss counted as loss.
//!
//! No connection means no promise: a request or its answer may be dropped (a full receive
//! buffer, on either side), and nothing resends it. Every request therefore has a deadline
//! (`--timeout`): an answer that has not come by then counts the request **lost**, and the
//! request is never sent again. The result reports sent, answered and lost separately.
//!
//! - **Closed loop** (`-c N`): N threads, each with its own socket, send one datagram and wait
//!   for its answer or its deadline, then send the next. A socket whose request was lost is
//!   replaced by a new one (a new port), so that a late answer is never taken for the next
//!   request's.
//! - **Open loop** (`--rate R`): one thread sends at the scheduled times on one socket
//!   whatever comes back; another receives. The server does not say which request an answer
//!   is for (`HelloWorld\n` carries nothing), so an answer is matched to the oldest request
//!   still inside its deadline (answers come back in order on loopback; where one is lost,
//!   the next answer's latency is counted from the lost one's send, an over-estimate).
//!   Latency runs from the scheduled time.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The answer every request datagram gets.
pub const ANSWER: &[u8] = b"HelloWorld\n";

/// What the request datagram holds (the server answers any datagram of up to 512 bytes).
const REQUEST: &[u8] = b"hello\n";

/// One UDP load run.
#[derive(Debug, Clone)]
pub struct UdpSpec {
    /// The server's address.
    pub target: SocketAddr,
    /// Requests to send in all (`None`: until `duration`).
    pub requests: Option<u64>,
    /// How long to send (`None`: until `requests`).
    pub duration: Option<Duration>,
    /// Closed loop: requests in flight at once, one per thread.
    pub concurrency: usize,
    /// Open loop: requests per second (`None`: closed loop).
    pub rate: Option<f64>,
    /// How long an answer may take before its request counts as lost.
    pub timeout: Duration,
}

/// What a UDP run measured.
#[derive(Debug, Clone, Serialize)]
pub struct UdpResult {
    /// Requests sent.
    pub sent: u64,
    /// Answers received (`HelloWorld\n`) within their request's deadline.
    pub answered: u64,
    /// Requests with no answer by their deadline (never resent).
    pub lost: u64,
    /// Datagrams received that were not `HelloWorld\n`, or came after their deadline.
    pub stray: u64,
    /// `lost / sent`.
    pub loss_ratio: f64,
    /// Seconds from the first send to the last deadline or answer.
    pub elapsed_s: f64,
    /// Seconds from the first send to the last.
    pub send_window_s: f64,
    /// Answers per second of the sending window.
    pub answers_per_s: f64,
    /// Latency of the answered requests, milliseconds: mean, p50, p99, max.
    pub latency_ms: [f64; 4],
}

/// Runs `spec` against its target.
///
/// # Errors
/// If a socket cannot be made or a send fails for another reason than a full buffer.
pub fn run(spec: &UdpSpec) -> std::io::Result<UdpResult> {
    match spec.rate {
        Some(rate) => open_loop(spec, rate),
        None => closed_loop(spec),
    }
}

/// Counts of one thread (or of the run, once merged).
struct Tally {
    sent: u64,
    answered: u64,
    lost: u64,
    stray: u64,
    hist: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            sent: 0,
            answered: 0,
            lost: 0,
            stray: 0,
            // Microseconds, up to an hour, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }

    fn answer(&mut self, latency: Duration) {
        self.answered += 1;
        let _ = self.hist.record((latency.as_micros() as u64).max(1));
    }

    fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.lost += other.lost;
        self.stray += other.stray;
        let _ = self.hist.add(&other.hist);
    }

    fn result(&self, elapsed: Duration, window: Duration) -> UdpResult {
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = if self.hist.is_empty() {
            [0.0; 4]
        } else {
            [
                self.hist.mean() / 1000.0,
                ms(self.hist.value_at_quantile(0.5)),
                ms(self.hist.value_at_quantile(0.99)),
                ms(self.hist.max()),
            ]
        };
        UdpResult {
            sent: self.sent,
            answered: self.answered,
            lost: self.lost,
            stray: self.stray,
            loss_ratio: if self.sent == 0 {
                0.0
            } else {
                self.lost as f64 / self.sent as f64
            },
            elapsed_s: elapsed.as_secs_f64(),
            send_window_s: window.as_secs_f64(),
            answers_per_s: self.answered as f64 / window.as_secs_f64().max(1e-9),
            latency_ms,
        }
    }
}

/// A client socket on the loopback (or any) side facing `target`.
fn socket_for(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    UdpSocket::bind(local)
}

/// Whether a run that started at `start` and has sent `sent` requests is over.
fn done(spec: &UdpSpec, start: Instant, sent: u64) -> bool {
    spec.requests.is_some_and(|n| sent >= n) || spec.duration.is_some_and(|d| start.elapsed() >= d)
}

fn closed_loop(spec: &UdpSpec) -> std::io::Result<UdpResult> {
    let start = Instant::now();
    let threads = spec.concurrency.max(1);
    // Requests are shared out: thread i sends its share of -n.
    let share = |i: usize| {
        spec.requests
            .map(|n| n / threads as u64 + u64::from((i as u64) < n % threads as u64))
    };
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let spec = UdpSpec {
                requests: share(i),
                ..spec.clone()
            };
            thread::spawn(move || closed_loop_thread(&spec, start))
        })
        .collect();
    let mut total = Tally::new();
    for handle in handles {
        let tally = handle.join().expect("a load thread panicked")?;
        total.merge(&tally);
    }
    let elapsed = start.elapsed();
    Ok(total.result(elapsed, elapsed))
}

/// One closed-loop client: send, wait for the answer or the deadline, again.
fn closed_loop_thread(spec: &UdpSpec, start: Instant) -> std::io::Result<Tally> {
    let mut tally = Tally::new();
    let mut socket = socket_for(spec.target)?;
    let mut buf = [0u8; 64];
    while !done(spec, start, tally.sent) {
        let sent_at = Instant::now();
        socket.send_to(REQUEST, spec.target)?;
        tally.sent += 1;
        let deadline = sent_at + spec.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tally.lost += 1;
                socket = socket_for(spec.target)?; // a late answer must not meet the next request
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == spec.target && &buf[..n] == ANSWER => {
                    tally.answer(sent_at.elapsed());
                    break;
                }
                Ok(_) => tally.stray += 1,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // ICMP port unreachable from an earlier send: no server there. The request is
                // lost (its deadline will say so); do not spin on the error.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    thread::sleep(left.min(Duration::from_millis(10)))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(tally)
}

/// Requests sent and not yet answered, oldest first: their scheduled times.
type Outstanding = Arc<Mutex<VecDeque<Instant>>>;

fn open_loop(spec: &UdpSpec, rate: f64) -> std::io::Result<UdpResult> {
    let socket = socket_for(spec.target)?;
    // A generous receive buffer: the client's own drops would count as the server's loss.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let receiver_socket = socket.try_clone()?;
    let outstanding: Outstanding = Arc::default();
    let sending = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let receiver = {
        let (outstanding, sending, spec) = (outstanding.clone(), sending.clone(), spec.clone());
        thread::spawn(move || receive_open(&receiver_socket, &spec, &outstanding, &sending))
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut sent = 0u64;
    while !done(spec, start, sent) {
        let due = start + interval.mul_f64(sent as f64);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        outstanding.lock().expect("not poisoned").push_back(due);
        match socket.send_to(REQUEST, spec.target) {
            Ok(_) => {}
            // The client's own send buffer full, or an ICMP error: the request is lost.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::ConnectionRefused | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        sent += 1;
    }
    let window = start.elapsed();
    sending.store(false, Ordering::SeqCst);
    let mut tally = receiver.join().expect("the receiver panicked")?;
    tally.sent = sent;
    let elapsed = start.elapsed();
    Ok(tally.result(elapsed, window))
}

/// The open loop's receiver: matches each answer to the oldest request inside its deadline,
/// counts the ones past it lost, and stops once sending has stopped and every request is
/// answered or past its deadline.
fn receive_open(
    socket: &UdpSocket,
    spec: &UdpSpec,
    outstanding: &Outstanding,
    sending: &AtomicBool,
) -> std::io::Result<Tally> {
    let mut tally = Tally::new();
    let mut buf = [0u8; 64];
    loop {
        let received = match socket.recv_from(&mut buf) {
            Ok((n, from)) => Some(from == spec.target && &buf[..n] == ANSWER),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let mut queue = outstanding.lock().expect("not poisoned");
        while queue.front().is_some_and(|sent| now > *sent + spec.timeout) {
            queue.pop_front();
            tally.lost += 1;
        }
        match received {
            Some(true) => match queue.pop_front() {
                Some(sent) => tally.answer(now.saturating_duration_since(sent)),
                None => tally.stray += 1, // its request was already counted lost
            },
            Some(false) => tally.stray += 1,
            None => {}
        }
        if !sending.load(Ordering::SeqCst) && queue.is_empty() {
            return Ok(tally);
        }
    }
}

/// The human summary of a UDP run; its second line reads as TCP's (`elapsed ... N ok, ...`),
/// which is what `bench-client measure` looks for.
pub fn summary(spec: &UdpSpec, result: &UdpResult) -> String {
    let mode = match spec.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => format!("closed loop, {} in flight", spec.concurrency),
    };
    let [mean, p50, p99, max] = result.latency_ms;
    format!(
        "UDP {target}, {mode}, timeout {timeout:?}\n\
         elapsed   {elapsed:.3} s   {answered} ok, {lost} lost ({loss:.3} %), {stray} late, \
         {sent} sent\n\
         {rps:.0} answers/s\n\
         latency ms: mean {mean:.3}, p50 {p50:.3}, p99 {p99:.3}, max {max:.3}\n",
        target = spec.target,
        timeout = spec.timeout,
        sent = result.sent,
        answered = result.answered,
        lost = result.lost,
        loss = result.loss_ratio * 100.0,
        stray = result.stray,
        rps = result.answers_per_s,
        elapsed = result.elapsed_s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny UDP echo of `HelloWorld\n` that drops every `drop_every`-th datagram.
    fn lossy_server(drop_every: u64) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut seen = 0u64;
            while let Ok((_, peer)) = socket.recv_from(&mut buf) {
                seen += 1;
                if seen % drop_every != 0 {
                    let _ = socket.send_to(ANSWER, peer);
                }
            }
        });
        addr
    }

    fn spec(target: SocketAddr, rate: Option<f64>) -> UdpSpec {
        UdpSpec {
            target,
            requests: Some(200),
            duration: Some(Duration::from_secs(20)),
            concurrency: 4,
            rate,
            timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn closed_loop_counts_every_drop_as_lost_and_never_resends() {
        let result = run(&spec(lossy_server(10), None)).unwrap();
        assert_eq!(result.sent, 200, "sent once each");
        assert_eq!(result.answered + result.lost, 200);
        assert_eq!(result.lost, 20, "{result:?}");
    }

    #[test]
    fn open_loop_counts_every_drop_as_lost() {
        let result = run(&spec(lossy_server(10), Some(2000.0))).unwrap();
        assert_eq!(result.sent, 200);
        assert_eq!(result.answered + result.lost, 200, "{result:?}");
        assert_eq!(result.lost, 20, "{result:?}");
    }

    #[test]
    fn no_server_is_all_loss() {
        // A port nobody listens on: every request is lost, none retried.
        let unused = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut spec = spec(unused, None);
        spec.requests = Some(8);
        spec.timeout = Duration::from_millis(50);
        let result = run(&spec).unwrap();
        assert_eq!((result.sent, result.lost, result.answered), (8, 8, 0));
    }
}
