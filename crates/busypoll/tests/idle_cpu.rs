//! The busy-polling server's lesson, measured: at zero load it still wants a whole core.
//!
//! How much CPU it *gets* depends on the machine: on two cores shared with a build or other
//! tests it may get half of one. What does not depend on the machine is that it never waits
//! for anything: over a second of zero load it is, all the time, either running or ready to
//! run and queued for a core. The kernel counts both per task (`/proc/PID/schedstat`: time on
//! a CPU, time waiting on a run queue), so the test asserts on their sum, which a server that
//! sleeps (or blocks in `epoll_wait`, as an event loop does when idle: about 0 % of the time)
//! cannot reach, and leniently on the time on a CPU alone. It prints both.

use std::thread;
use std::time::{Duration, Instant};

use conformance::client::{answered_or_closed, connect};
use conformance::Server;

const BIN: &str = env!("CARGO_BIN_EXE_server-busypoll");

/// Nanoseconds `pid` has spent on a CPU and waiting on a run queue, if the kernel says.
fn run_and_queued_ns(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

#[test]
fn at_zero_load_it_never_waits_and_burns_cpu() {
    let server = Server::start(BIN, &[]);
    // One kept-alive connection, answered, then idle: each pass reads it too.
    let mut idle = connect(server.addr);
    assert!(answered_or_closed(&mut idle));
    thread::sleep(Duration::from_millis(200));

    let Some((run0, queued0)) = run_and_queued_ns(server.pid()) else {
        // No schedstat (a kernel without CONFIG_SCHED_INFO): the CPU time alone, leniently.
        let before = server.cpu_ticks();
        thread::sleep(Duration::from_secs(1));
        let ticks = server.cpu_ticks() - before;
        eprintln!("no /proc/PID/schedstat; idle server-busypoll: {ticks} % of a core");
        assert!(ticks >= 50, "{ticks} ticks of CPU in 1 s of zero load");
        return;
    };
    let start = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let (run1, queued1) = run_and_queued_ns(server.pid()).expect("schedstat");
    let wall = start.elapsed().as_nanos() as f64;
    let on_cpu = (run1 - run0) as f64 / wall;
    let runnable = (run1 - run0 + queued1 - queued0) as f64 / wall;
    eprintln!(
        "idle server-busypoll: on a CPU {:.0} % of the time, runnable {:.0} % of the time",
        on_cpu * 100.0,
        runnable * 100.0
    );
    // The counters move at scheduler ticks and switches: a few ms of slack each end.
    assert!(
        runnable >= 0.8,
        "runnable only {:.0} % of a second at zero load: it waited for something",
        runnable * 100.0
    );
    assert!(
        on_cpu >= 0.2,
        "on a CPU only {:.0} % of a second at zero load",
        on_cpu * 100.0
    );
    assert!(answered_or_closed(&mut idle), "still serving");
}
