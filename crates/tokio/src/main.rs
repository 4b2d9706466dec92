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
//! The connection logic is the blocking loop's, written with `.await`: the same sans-IO
//! [`RequestBuffer`] and [`Outbox`], the same timeouts. Concurrent connections are capped by a
//! semaphore (`--max-conns`); at shutdown the accept loop stops, and taking back every permit
//! waits for the connections in flight.
//!
//! ```text
//! server-tokio --workers 2 --workload delay:100ms
//! ```

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use serverkit::blocking::{expired, Expired};
use serverkit::http::{HttpError, Outbox, RequestBuffer, HELLO_BODY};
use serverkit::listener::TICK;
use serverkit::workload::burn_cpu;
use serverkit::{listener, Protocol, ServerArgs, ServerConfig, Workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};

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
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                let _ = serve_connection(stream, config, stop).await;
                drop(permit);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        // Every permit back means every connection task has ended.
        let _ = slots.acquire_many(max_conns as u32).await;
        Ok(())
    })
}

async fn serve_connection(
    mut stream: TcpStream,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    if config.protocol == Protocol::Raw {
        pay(config.workload).await;
        return stream.write_all(HELLO_BODY).await;
    }
    let mut requests = RequestBuffer::new();
    let mut out = Outbox::new();
    let mut waiting_since = Instant::now();
    loop {
        let mut close = false;
        while !close {
            match requests.next_request() {
                Ok(Some(request)) => {
                    pay(config.workload).await;
                    let (response, close_after) = request.response(*stop.borrow());
                    if !out.has_room_for(response) {
                        write_out(&mut stream, &mut out).await?;
                    }
                    out.push(response);
                    close = close_after;
                }
                Ok(None) => break,
                Err(e) => {
                    if !out.has_room_for(e.response()) {
                        write_out(&mut stream, &mut out).await?;
                    }
                    out.push(e.response());
                    close = true;
                }
            }
        }
        if !out.is_empty() {
            let written =
                tokio::time::timeout(config.read_timeout, write_out(&mut stream, &mut out));
            written
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            waiting_since = Instant::now();
        }
        if close || (*stop.borrow() && !requests.has_partial()) {
            return Ok(());
        }
        let had_partial = requests.has_partial();
        tokio::select! {
            read = stream.read(requests.spare()) => match read? {
                0 => return Ok(()),
                n => {
                    requests.filled(n);
                    if !had_partial {
                        waiting_since = Instant::now();
                    }
                }
            },
            _ = tokio::time::sleep(TICK) => {
                if let Some(timeout) = expired(&requests, waiting_since, Instant::now(), &config) {
                    if timeout == Expired::Read {
                        let _ = stream.write_all(HttpError::Timeout.response()).await;
                    }
                    return Ok(());
                }
            }
            _ = stop.changed() => {}
        }
    }
}

/// Pays a request's cost the async way: a timer for `delay`; `cpu` burns on this worker thread.
async fn pay(workload: Workload) {
    match workload {
        Workload::Hello => {}
        Workload::Delay(d) => tokio::time::sleep(d).await,
        Workload::Cpu(d) => burn_cpu(d),
    }
}

async fn write_out(stream: &mut TcpStream, out: &mut Outbox) -> io::Result<()> {
    while !out.is_empty() {
        match stream.write(out.pending()).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => out.sent(n),
        }
    }
    Ok(())
}
