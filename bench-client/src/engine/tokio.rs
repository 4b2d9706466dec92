//! The alternative engine: a current-thread tokio runtime per thread, a task per connection.
//!
//! Same contract as [`super::epoll`] (budget, schedule, timeout, error kinds); kept so the
//! choice of default engine can be measured again (`bench-client load --engine tokio`).
//! The tasks of one thread share that thread's [`ThreadStats`] through an `Rc<RefCell<_>>`:
//! they never run at the same time, and a histogram per task would cost megabytes each.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{count_io_error, LoadSpec, Shared, ThreadStats};
use crate::response::{Bad, Progress, ResponseReader};

enum Failure {
    Io { connected: bool, error: io::Error },
    Bad(Bad),
}

/// Runs thread `thread`'s share of the load on a current-thread runtime.
///
/// # Errors
/// If the runtime cannot be built.
pub fn run_thread(
    spec: &LoadSpec,
    shared: &Arc<Shared>,
    thread: usize,
    start: Instant,
) -> io::Result<ThreadStats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(ThreadStats::new()));
    let spec = Arc::new(spec.clone());
    let request: Rc<[u8]> = spec.target.request(spec.keep_alive).into();
    for global in spec.slots_of_thread(thread) {
        let first_due = start
            + spec.interval().map_or(Duration::ZERO, |i| {
                i.mul_f64(global as f64 / spec.concurrency as f64)
            });
        local.spawn_local(slot_task(
            Arc::clone(&spec),
            Arc::clone(shared),
            Rc::clone(&stats),
            Rc::clone(&request),
            first_due,
        ));
    }
    runtime.block_on(local);
    // Timed like the epoll engine: the run ends with its last request, not with the runtime's
    // teardown below.
    let ended = Instant::now();
    drop(runtime);
    let stats =
        Rc::try_unwrap(stats).map_err(|_| io::Error::other("tasks outlived the runtime"))?;
    let mut stats = stats.into_inner();
    stats.ended = Some(ended);
    Ok(stats)
}

async fn slot_task(
    spec: Arc<LoadSpec>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ThreadStats>>,
    request: Rc<[u8]>,
    mut due: Instant,
) {
    let mut stream: Option<TcpStream> = None;
    let mut reader = ResponseReader::new(spec.raw);
    let mut buf = vec![0u8; 4096];
    let mut opened = 0u64;
    let end = shared.stop_at.map(tokio::time::Instant::from_std);
    loop {
        let scheduled = match spec.interval() {
            Some(interval) => {
                if shared.stop_at.is_some_and(|stop| due >= stop) {
                    return;
                }
                tokio::time::sleep_until(due.into()).await;
                let scheduled = due;
                due += interval;
                scheduled
            }
            None => Instant::now(),
        };
        let started = Instant::now();
        if !shared.claim(started) {
            if let (Some(interval), Some(stop)) = (spec.interval(), shared.stop_at) {
                stats.borrow_mut().not_sent += super::unsent(scheduled, interval, stop);
            }
            return;
        }
        reader.reset();
        let attempt = one_request(
            &spec,
            &mut stream,
            &request,
            &mut reader,
            &mut buf,
            &mut opened,
            &stats,
        );
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(spec.timeout, attempt) => outcome,
            _ = sleep_until_end(end) => {
                // Duration over: this request is abandoned, and the schedule's remainder
                // never sent; both are counted.
                let mut stats = stats.borrow_mut();
                stats.abandoned += 1;
                if let (Some(interval), Some(stop)) = (spec.interval(), shared.stop_at) {
                    stats.not_sent += super::unsent(due, interval, stop);
                }
                return;
            }
        };
        let mut stats = stats.borrow_mut();
        match outcome {
            Ok(Ok(keep)) => {
                stats.record_ok(scheduled, started, Instant::now());
                shared.finished_one(true);
                if !(keep && spec.keep_alive) {
                    stream = None;
                }
            }
            Ok(Err(Failure::Io { connected, error })) => {
                count_io_error(&mut stats, &shared, connected, &error, scheduled);
                stream = None;
            }
            Ok(Err(Failure::Bad(bad))) => {
                stats.errors.count_bad(bad);
                stats.record_failure(scheduled);
                shared.finished_one(false);
                stream = None;
            }
            Err(_) => {
                stats.errors.timeout += 1;
                stats.record_failure(scheduled);
                shared.finished_one(false);
                stream = None;
            }
        }
    }
}

async fn sleep_until_end(end: Option<tokio::time::Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

async fn one_request(
    spec: &LoadSpec,
    stream: &mut Option<TcpStream>,
    request: &[u8],
    reader: &mut ResponseReader,
    buf: &mut [u8],
    opened: &mut u64,
    stats: &Rc<RefCell<ThreadStats>>,
) -> Result<bool, Failure> {
    if stream.is_none() {
        let connected = connect(spec, *opened).await.map_err(|error| Failure::Io {
            connected: false,
            error,
        })?;
        *opened += 1;
        stats.borrow_mut().connections += 1;
        *stream = Some(connected);
    }
    let s = stream.as_mut().expect("connected above");
    let io = |error| Failure::Io {
        connected: true,
        error,
    };
    if !spec.raw {
        s.write_all(request).await.map_err(io)?;
    }
    loop {
        let n = s.read(buf).await.map_err(io)?;
        let progress = if n == 0 {
            reader.eof()
        } else {
            reader.feed(&buf[..n])
        };
        match progress {
            Progress::More => {}
            Progress::Done { keep_alive } => return Ok(keep_alive),
            Progress::Failed(bad) => return Err(Failure::Bad(bad)),
        }
    }
}

async fn connect(spec: &LoadSpec, k: u64) -> io::Result<TcpStream> {
    let addr = spec.target.addr;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = spec.source_addr(k) {
        socket.bind(source)?;
    }
    socket.connect(addr).await
}
