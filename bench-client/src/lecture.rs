//! The lecture script's measurements (`scripts/lecture.sh`: `serve`, `measure`), made by the
//! suite's own harness so that a student's figure is taken the way the committed ones were.
//!
//! - `bench-client pin server|client -- COMMAND...` runs COMMAND (by `exec`: same process id) on
//!   the server's or the client's cores of the suite's default placement
//!   ([`Placement::default_for`]: the client on the lowest core, the server on the others).
//!   `serve` starts every server this way.
//! - `bench-client measure --pid PID -- COMMAND...` runs COMMAND (a load) on the client's
//!   cores and prints what the server's process tree spent meanwhile: the suite's measured
//!   window ([`Window`]) on perf counters attached to every task of the tree with
//!   `inherit` ([`TreeCounters`]), so threads and children that start and end inside
//!   the window are counted; /proc where perf is refused.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::suite::cost::{self, TreeCounters};
use crate::suite::placement::{allowed_cores, format_list, Placement};
use crate::suite::server::{Peak, Window};

/// Which side of the placement a pinned command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The server's cores (all but the lowest allowed core).
    Server,
    /// The client's core (the lowest allowed one).
    Client,
}

/// The placement the committed figures were taken with, on this machine's cores.
pub fn placement() -> Placement {
    Placement::default_for(&allowed_cores())
}

/// Pins the calling thread to `side`'s cores (nothing when the placement is shared).
///
/// # Errors
/// If `sched_setaffinity` fails.
pub fn pin_self(placement: &Placement, side: Side) -> nix::Result<()> {
    match (side, placement.server_set()) {
        (Side::Server, Some(set)) => {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        }
        (Side::Server, None) => Ok(()),
        (Side::Client, _) => placement.pin_client(),
    }
}

/// `bench-client pin`: replaces this process by `command`, pinned to `side`'s cores. Returns
/// only on failure, with the exit code to use (127: not found, 2: cannot pin).
pub fn pin(side: Side, command: &[String]) -> i32 {
    if let Err(e) = pin_self(&placement(), side) {
        eprintln!("bench-client pin: sched_setaffinity: {e}");
        return 2;
    }
    let err = Command::new(&command[0]).args(&command[1..]).exec();
    eprintln!("bench-client pin: {}: {err}", command[0]);
    127
}

/// Pins every task of the tree rooted at `pid` to the server's cores: a server started by
/// hand, without `pin server`, is measured where the committed figures' servers ran.
fn pin_tree(pid: u32, placement: &Placement) {
    let Some(set) = placement.server_set() else {
        return;
    };
    for tid in cost::tree_tasks(pid) {
        // A task that has just exited is no matter.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set);
    }
}

/// The requests a bench-client load reported: the number before " ok, " on its summary line
/// (`elapsed   1.234 s   5000 ok, 0 errors, ...`).
pub fn requests_in(output: &str) -> Option<u64> {
    output.lines().rev().find_map(|line| {
        let before = &line[..line.find(" ok, ")?];
        before.rsplit(' ').next()?.parse().ok()
    })
}

/// What `measure` prints after the command's own output.
pub fn summary(
    cost: &cost::WindowCost,
    peak: &Peak,
    requests: Option<u64>,
    placement: &Placement,
) -> String {
    let mut out = String::new();
    let cpu_ms = cost.cpu_s * 1e3;
    let split = match (cost.user_s, cost.sys_s) {
        (Some(u), Some(s)) => format!(" (user {:.0}, system {:.0})", u * 1e3, s * 1e3),
        _ => String::new(),
    };
    let source = if cost.source == "perf" {
        "perf counters: exited threads and children included"
    } else {
        "/proc: perf refused here, switches of exited threads not seen, CPU in 10 ms ticks"
    };
    out.push_str(&format!(
        "server: {cpu_ms:.0} ms CPU{split}, {} context switches ({source})\n",
        cost.switches
    ));
    out.push_str(&format!(
        "server: at most {} threads in {} processes, {:.1} MiB resident (summed over processes)\n",
        peak.threads,
        peak.processes,
        peak.rss_kb as f64 / 1024.0
    ));
    match requests.filter(|&n| n > 0) {
        Some(n) => out.push_str(&format!(
            "per request: {:.1} us CPU, {:.2} context switches ({n} requests)\n",
            cost.cpu_s * 1e6 / n as f64,
            cost.switches as f64 / n as f64
        )),
        None => {
            out.push_str("per request: no \"N ok\" line in the output, so no per-request figures\n")
        }
    }
    let cores = match placement {
        Placement::Shared => "server and client share the cores (one core: no split)".to_string(),
        Placement::Split { server, client } => format!(
            "server on core {}, this command on core {} (as the committed figures)",
            format_list(server),
            format_list(client)
        ),
    };
    out.push_str(&format!("placement: {cores}\n"));
    out
}

/// `bench-client measure`: the exit code is the command's (1 if it was killed, 127 if it
/// could not start, 2 if there is no such server).
pub fn measure(pid: u32, command: &[String]) -> i32 {
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        eprintln!("bench-client measure: no process {pid} (serve a server first)");
        return 2;
    }
    let placement = placement();
    pin_tree(pid, &placement);
    if let Err(e) = pin_self(&placement, Side::Client) {
        eprintln!("bench-client measure: sched_setaffinity: {e}");
        return 2;
    }
    let counters = if std::env::var_os("ARCHBENCH_NO_PERF").is_some() {
        None
    } else {
        TreeCounters::attach(pid)
    };
    let read = || counters.as_ref().and_then(TreeCounters::read);
    let window = Window::open(pid, read);
    let child = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = window.close(read);
            eprintln!("bench-client measure: {}: {e}", command[0]);
            return 127;
        }
    };
    // The command's output goes on as it comes; kept to find its request count.
    let mut output = String::new();
    if let Some(stdout) = child.stdout.take() {
        let mut echo = std::io::stdout().lock();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(echo, "{line}");
            output.push_str(&line);
            output.push('\n');
        }
    }
    let status = child.wait();
    let (cost, peak) = window.close(read);
    print!(
        "{}",
        summary(&cost, &peak, requests_in(&output), &placement)
    );
    match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_count_comes_from_the_summary_line() {
        let out = "target    http://127.0.0.1:5/\n\
                   elapsed   1.234 s   5000 ok, 0 errors, 10 connections opened\n";
        assert_eq!(requests_in(out), Some(5000));
        assert_eq!(requests_in("no summary here\n"), None);
    }

    #[test]
    fn the_summary_gives_per_request_figures_and_the_placement() {
        let cost = cost::WindowCost {
            source: "perf",
            cpu_s: 0.5,
            user_s: Some(0.1),
            sys_s: Some(0.4),
            switches: 10_000,
            voluntary: 0,
            involuntary: 0,
        };
        let peak = Peak {
            threads: 11,
            processes: 1,
            rss_kb: 3072,
        };
        let split = Placement::default_for(&[0, 1]);
        let text = summary(&cost, &peak, Some(10_000), &split);
        assert!(
            text.contains(
                "server: 500 ms CPU (user 100, system 400), 10000 context switches (perf"
            ),
            "{text}"
        );
        assert!(
            text.contains("per request: 50.0 us CPU, 1.00 context switches"),
            "{text}"
        );
        assert!(
            text.contains("server on core 1, this command on core 0"),
            "{text}"
        );
        let text = summary(&cost, &peak, None, &Placement::Shared);
        assert!(text.contains("no \"N ok\" line"), "{text}");
    }
}
