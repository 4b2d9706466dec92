//! Tokio async: connections are tasks on tokio's work-stealing runtime; `--workers` threads
//! run them, each an event loop over epoll, stealing tasks from each other when idle.
//!
//! Not in the paper; today's default for a Rust server. **Cost:** a task (one allocation) per
//! connection and the runtime's scheduling; the code reads like the blocking loop, yet a task
//! waiting on a socket or a timer holds no thread. **Where it breaks:** a task that computes
//! (`cpu:D`) holds its worker thread for D, like the epoll loop, but only that one worker:
//! with N workers, N CPU-bound requests run at once. Tokio's timers have millisecond
//! granularity, so `delay:100ms` takes between 100 and 101 ms. **Watch in the benchmark:**
//! scales past one core where the epoll loop cannot.
//!
//! Each task drives the same sans-IO [`Connection`] state machine as every other model, with
//! `.await` where a blocking model blocks: a read or write races its deadline, `delay` is a
//! tokio timer. Concurrent connections are capped by a semaphore (`--max-conns`); at shutdown
//! the accept loop stops, and taking back every permit waits for the connections in flight.
//! The cached `Date` header lives in each worker thread (each is an event loop of its own).
//!
//! **Memory per idle connection** is the task (its future and tokio's header), the socket's
//! registration with the runtime, and no buffer: a task waits for its socket to be *readable*
//! (`readable().await`, which holds nothing), then borrows a set of buffers from its worker
//! thread's pool to `try_read` into, and gives it back once the connection holds no bytes
//! (serverkit's [`Connection::next_lent`]). The idiomatic `stream.read(&mut buf).await` would
//! hold a buffer for as long as the client stays silent: 10 KiB per idle client.
//!
//! ```text
//! server-tokio --workers 2 --workload delay:100ms
//! ```

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use serverkit::buffers::BufferPool;
use serverkit::connection::{Action, Connection};
use serverkit::date::DateCache;
use serverkit::listener::TICK;
use serverkit::workload::burn_cpu;
use serverkit::{listener, shutdown, ServerArgs, ServerConfig, Workload};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, timeout_at};

/// Tokio server: a task per connection on a multi-threaded runtime.
#[derive(Parser)]
#[command(name = "server-tokio", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Runtime worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
}

fn main() -> ExitCode {
    let cli: Cli = serverkit::cli::parse();
    serverkit::exit_code("server-tokio", start(&cli))
}

fn start(cli: &Cli) -> io::Result<()> {
    let listener = listener::bind(&cli.server)?;
    listener.set_nonblocking(true)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = cli.workers {
        runtime.worker_threads(workers as usize);
    }
    let runtime = runtime.enable_all().build()?;
    let config = cli.server.config();
    let max_conns = cli.server.max_conns as usize;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        // Tokio's own signal handling; installed before the ready line, so a SIGTERM sent
        // right after it is never lost.
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        listener::announce_addr(listener.local_addr()?)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(max_conns));
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore closed"),
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: wait a little instead of spinning on the error.
                        serverkit::blocking::report_accept_error(&e);
                        tokio::time::sleep(TICK / 5).await;
                        continue;
                    }
                },
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            };
            tokio::spawn(serve_connection(stream, config, stop_rx.clone(), permit));
        }
        drop(listener);
        // The flag the connections look at between steps; the channel wakes the idle ones.
        shutdown::request();
        let _ = stop_tx.send(true);
        // Every permit back means every connection task has ended.
        let _ = slots.acquire_many(max_conns as u32).await;
        Ok(())
    })
}

/// Serves one connection, then gives its slot under `--max-conns` back (`permit`); whatever
/// buffers it still holds at the end (a client gone mid-request) go back to the pool of the
/// worker it ends on.
///
/// This future is the task, and most of what an idle connection costs, so it is kept small: a
/// plain function returning it rather than an `async fn` (which would keep its arguments in
/// the future beside the locals they are moved into), and spawned as it is (an `async` block
/// around it that `.await`s it would hold it twice).
fn serve_connection(
    mut stream: TcpStream,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> {
    let mut conn = Connection::pooled(config, Instant::now());
    async move {
        drive(&mut stream, &mut conn, &mut stop).await;
        with_pool(|pool| conn.give_back(pool));
        drop(permit);
    }
}

/// Drives one connection's state machine with `.await`s: a read or a write waits for the
/// socket or the deadline the state machine gave, whichever comes first. Buffers come from
/// the worker's pool only while bytes are in them.
async fn drive(stream: &mut TcpStream, conn: &mut Connection, stop: &mut watch::Receiver<bool>) {
    let mut now = Instant::now();
    let mut stopping = false;
    loop {
        if !stopping && shutdown::requested() {
            stopping = true;
            conn.shutdown(now);
        }
        // The worker's date, looked up each turn rather than kept across an `.await`: that
        // would put a copy in every connection's task.
        let action = {
            let date = worker_date(now);
            with_pool(|pool| conn.next_lent(now, &date, pool))
        };
        match action {
            Action::Read { deadline } => {
                tokio::select! {
                    // Readiness first, holding no buffer while the client is silent (and
                    // no waiter either: `poll_read_ready` keeps the waker in the socket's
                    // registration, where `readable()` would add 150 bytes to the task).
                    ready = poll_fn(|cx| stream.poll_read_ready(cx)) => {
                        now = Instant::now();
                        if ready.is_err() {
                            return;
                        }
                        with_pool(|pool| conn.lend(pool));
                        match stream.try_read(conn.read_buf()) {
                            Ok(n) => conn.read(n, now),
                            // A stale readiness: the next turn gives the set back.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => return,
                        }
                    }
                    _ = sleep_until(deadline.into()) => now = Instant::now(),
                    _ = stop.changed(), if !stopping => now = Instant::now(),
                }
            }
            // Try the write first: the socket almost always takes it, and then no timer is set.
            Action::Write { deadline } => match stream.try_write(conn.to_write()) {
                Ok(n) => conn.wrote(n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if timeout_at(deadline.into(), stream.writable())
                        .await
                        .is_ok_and(|r| r.is_err())
                    {
                        return;
                    }
                    now = Instant::now();
                }
                Err(_) => return,
            },
            Action::Work(workload) => {
                pay(workload).await;
                now = Instant::now();
                conn.worked();
            }
            Action::CloseWrite => {
                let _ = stream.shutdown().await; // shutdown(SHUT_WR) for a TcpStream
            }
            Action::Close => return,
        }
    }
}

/// Runs `f` on the buffer pool of the worker thread this task runs on now: each worker is an
/// event loop with a pool of its own, so no lock is shared between them. A set taken on one
/// worker and given back on another (the task was stolen meanwhile) joins the other's pool.
fn with_pool<R>(f: impl FnOnce(&mut BufferPool) -> R) -> R {
    thread_local! {
        static POOL: RefCell<BufferPool> = RefCell::new(BufferPool::new());
    }
    POOL.with_borrow_mut(f)
}

/// The cached `Date` header of the worker thread this task runs on now: each worker is an
/// event loop with a cache of its own, so no lock is shared between them.
fn worker_date(now: Instant) -> DateCache {
    thread_local! {
        static DATE: Cell<Option<DateCache>> = const { Cell::new(None) };
    }
    DATE.with(|cached| match cached.get() {
        Some(date) if !date.is_stale(now) => date,
        _ => {
            let date = DateCache::at(now);
            cached.set(Some(date));
            date
        }
    })
}

/// Pays a request's cost the async way: a timer for `delay`; `cpu` burns on this worker thread.
async fn pay(workload: Workload) {
    match workload {
        Workload::Hello => {}
        Workload::Delay(d) => tokio::time::sleep(d).await,
        Workload::Cpu(d) => burn_cpu(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection's task holds besides tokio's own header and the socket's
    /// registration: its future, which no buffer is part of.
    #[test]
    fn a_connection_task_is_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
            let (client, accepted) = tokio::join!(client, listener.accept());
            let (_client, (stream, _)) = (client.unwrap(), accepted.unwrap());
            let (_stop_tx, stop_rx) = watch::channel(false);
            let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let task = serve_connection(stream, ServerConfig::default(), stop_rx, permit);
            let size = std::mem::size_of_val(&task);
            // 568 bytes when written (a Sleep, a watch's `changed()`, the connection's 128-byte
            // state, the socket); `stream.read(&mut buf)` with the buffer in it was 10 KiB.
            assert!(size <= 640, "{size} bytes");
        });
    }
}
