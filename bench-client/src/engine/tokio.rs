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

use super::batch::{Batch, Step};
use super::{ErrorClass, LoadSpec, Shared, ThreadStats};

/// A task's connection: the stream (none between connections), how many it opened, and its
/// read buffer.
struct Conn {
    stream: Option<TcpStream>,
    opened: u64,
    buf: Vec<u8>,
}

/// An I/O error that ended a batch's connection.
struct IoFailure {
    connected: bool,
    error: io::Error,
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
    let stats = Rc::new(RefCell::new(ThreadStats::for_thread(shared)));
    let spec = Arc::new(spec.clone());
    let requests: Rc<[u8]> = spec.request_bytes().repeat(spec.batch() as usize).into();
    for global in spec.slots_of_thread(thread) {
        let first_due = start
            + spec.interval().map_or(Duration::ZERO, |i| {
                i.mul_f64(global as f64 / spec.concurrency as f64)
            });
        local.spawn_local(slot_task(
            Arc::clone(&spec),
            Arc::clone(shared),
            Rc::clone(&stats),
            Rc::clone(&requests),
            first_due,
        ));
    }
    runtime.block_on(local);
    // Timed like the epoll engine: the run ends with its last request, not with the runtime's
    // teardown below.
    let ended = Instant::now();
    let cpu = super::thread_cpu_time();
    drop(runtime);
    let stats =
        Rc::try_unwrap(stats).map_err(|_| io::Error::other("tasks outlived the runtime"))?;
    let mut stats = stats.into_inner();
    stats.finish(ended);
    stats.cpu = cpu; // the run's, without the teardown
    Ok(stats)
}

/// How a batch's wait ended.
enum Outcome {
    /// Every request answered or failed; the connection may be kept.
    Done(Result<bool, IoFailure>),
    /// Not within the timeout.
    TimedOut,
    /// The run's duration is over.
    RunOver,
}

async fn slot_task(
    spec: Arc<LoadSpec>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ThreadStats>>,
    requests: Rc<[u8]>,
    mut due: Instant,
) {
    let mut conn = Conn {
        stream: None,
        opened: 0,
        buf: vec![0u8; 4096],
    };
    let mut batch = Batch::new(spec.response_reader(), due);
    let request_len = requests.len() / spec.batch() as usize;
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
        let size = shared.claim(started, spec.batch());
        if size == 0 {
            stats.borrow_mut().not_sent += spec.unsent_from(scheduled, shared.stop_at);
            return;
        }
        batch.begin(size, scheduled, started);
        let attempt = one_batch(
            &spec,
            &shared,
            &mut conn,
            &requests[..size as usize * request_len],
            &mut batch,
            &stats,
        );
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(spec.timeout, attempt) => match outcome {
                Ok(done) => Outcome::Done(done),
                Err(_) => Outcome::TimedOut,
            },
            _ = sleep_until_end(end) => Outcome::RunOver,
        };
        let mut stats = stats.borrow_mut();
        match outcome {
            Outcome::Done(Ok(keep)) => {
                if !(keep && spec.keep_alive) {
                    conn.stream = None;
                }
            }
            Outcome::Done(Err(IoFailure { connected, error })) => {
                batch.fail_io(&mut stats, &shared, connected, &error);
                conn.stream = None;
            }
            Outcome::TimedOut => {
                batch.fail_rest(&mut stats, &shared, ErrorClass::Timeout);
                conn.stream = None;
            }
            Outcome::RunOver => {
                // Duration over: what is in flight is abandoned, and the schedule's remainder
                // never sent; both are counted.
                stats.abandoned += batch.unanswered();
                stats.not_sent += spec.unsent_from(due, shared.stop_at);
                return;
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

/// Writes the batch and reads its answers, at the same time (a server answers the first
/// requests of a long batch before it has read the last ones); returns whether the connection
/// may be kept.
async fn one_batch(
    spec: &LoadSpec,
    shared: &Shared,
    conn: &mut Conn,
    requests: &[u8],
    batch: &mut Batch,
    stats: &Rc<RefCell<ThreadStats>>,
) -> Result<bool, IoFailure> {
    let Conn {
        stream,
        opened,
        buf,
    } = conn;
    if stream.is_none() {
        let connected = connect(spec, *opened).await.map_err(|error| IoFailure {
            connected: false,
            error,
        })?;
        *opened += 1;
        stats.borrow_mut().connections += 1;
        *stream = Some(connected);
    }
    let io = |error| IoFailure {
        connected: true,
        error,
    };
    let (mut reader, mut writer) = stream.as_mut().expect("connected above").split();
    let answers = async {
        loop {
            let n = reader.read(buf).await.map_err(io)?;
            let now = Instant::now();
            let mut stats = stats.borrow_mut();
            let step = if n == 0 {
                batch.eof(&mut stats, shared, now)
            } else {
                batch.feed(&buf[..n], &mut stats, shared, now)
            };
            if let Step::Done { keep_alive } = step {
                return Ok(keep_alive);
            }
        }
    };
    if spec.raw {
        return answers.await;
    }
    tokio::pin!(answers);
    let mut written = false;
    loop {
        tokio::select! {
            sent = writer.write_all(requests), if !written => {
                sent.map_err(io)?;
                written = true;
            }
            done = &mut answers => return done,
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
