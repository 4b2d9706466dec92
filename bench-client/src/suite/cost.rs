//! What a server's whole process tree spends inside the measured window.
//!
//! The window runs from just before the first measured request to just after the last
//! answer: start-up, the check, the warm-up and the stop are outside it. Two sources, and each
//! row says which one it used (`cost_source`):
//!
//! - **perf**: two software counters (`task-clock`, `context-switches`) opened on the server
//!   before its first instruction, with `inherit`, so every thread and child it will ever make
//!   is counted, those that end inside the window included (the kernel folds an exiting
//!   child's count into its parent's). Read at both ends of the window: nanosecond CPU time and
//!   every context switch. The counters are opened by the forked child on itself just before
//!   `exec` (enabled by the `exec`) and handed to the suite over a Unix socket, so the server
//!   keeps no descriptor of them.
//! - **proc**: where `perf_event_open` is refused (`perf_event_paranoid`, a seccomp filter).
//!   CPU is `utime + stime + cutime + cstime` summed over the tree's live processes from
//!   `/proc/PID/stat`: complete (a reaped child's CPU is in its parent's `cutime`) but counted in
//!   clock ticks (10 ms each), so short windows are coarse. Context switches come from each
//!   live thread's `/proc/PID/task/TID/status`; those of threads and processes that ended inside
//!   the window are not seen.
//!
//! Either way the split into user and system time comes from `/proc` (clock ticks, scaled to
//! the precise total when perf gave one, as the kernel itself scales its tick samples), and
//! memory is the sum of the resident sets of the tree's processes, sampled every 25 ms (the
//! largest sum is the row's peak).

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Software counters on a server's process tree (see the module documentation).
pub struct Counters {
    task_clock: OwnedFd,
    switches: OwnedFd,
}

/// The two perf counters, as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// CPU time of the tree, in nanoseconds.
    pub cpu_ns: u64,
    /// Context switches of the tree.
    pub switches: u64,
}

impl Counters {
    /// Reads both counters.
    pub fn read(&self) -> Option<CounterValues> {
        Some(CounterValues {
            cpu_ns: read_u64(&self.task_clock)?,
            switches: read_u64(&self.switches)?,
        })
    }
}

fn read_u64(fd: &OwnedFd) -> Option<u64> {
    let mut value = [0u8; 8];
    // SAFETY: reading 8 bytes into a local buffer from a descriptor we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), value.as_mut_ptr().cast(), 8) };
    (n == 8).then(|| u64::from_ne_bytes(value))
}

/// `struct perf_event_attr`, its first version (64 bytes; the kernel accepts every version).
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_ENABLE_ON_EXEC: u64 = 1 << 12;

/// Opens a counter on the calling process, disabled until its next `exec`, inherited by every
/// thread and child. Async-signal-safe: it runs between `fork` and `exec`.
fn open_counter(config: u64) -> RawFd {
    open_counter_on(
        0,
        config,
        FLAG_DISABLED | FLAG_INHERIT | FLAG_ENABLE_ON_EXEC,
    )
}

/// perf_event_open(2) of a software counter on task `tid` (0: the caller), close-on-exec.
/// Async-signal-safe.
fn open_counter_on(tid: libc::pid_t, config: u64, flags: u64) -> RawFd {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config,
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags,
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: perf_event_open(attr, the task, cpu -1 = any, no group, close on exec).
    unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid,
            -1,
            -1,
            libc::c_ulong::from(8u8), // PERF_FLAG_FD_CLOEXEC
        ) as RawFd
    }
}

/// The same two counters attached to a tree that is already running (`bench-client measure`,
/// for a server the lecture script started): one pair on every task alive now, each with
/// `inherit`, so every thread and child those tasks make from now on is counted, those that
/// end included, as in [`Handover`]'s counters. A task born between the look at /proc and the
/// attach would be missed: attach while the server is idle.
pub struct TreeCounters(Vec<Counters>);

impl TreeCounters {
    /// Attaches to every task of the tree rooted at `pid`. `None` when perf is refused (or the
    /// tree is gone).
    pub fn attach(pid: u32) -> Option<TreeCounters> {
        let mut all = Vec::new();
        for tid in tree_tasks(pid) {
            let open = |config| {
                let fd = open_counter_on(tid, config, FLAG_INHERIT);
                // SAFETY: a new descriptor, ours alone.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            };
            // A task that exited since the look is skipped; a refusal is for all tasks.
            match (
                open(PERF_COUNT_SW_TASK_CLOCK),
                open(PERF_COUNT_SW_CONTEXT_SWITCHES),
            ) {
                (Some(task_clock), Some(switches)) => all.push(Counters {
                    task_clock,
                    switches,
                }),
                _ if std::path::Path::new(&format!("/proc/{tid}")).exists() => return None,
                _ => {}
            }
        }
        (!all.is_empty()).then_some(TreeCounters(all))
    }

    /// The sum over the tasks' counters.
    pub fn read(&self) -> Option<CounterValues> {
        self.0.iter().try_fold(CounterValues::default(), |sum, c| {
            let v = c.read()?;
            Some(CounterValues {
                cpu_ns: sum.cpu_ns + v.cpu_ns,
                switches: sum.switches + v.switches,
            })
        })
    }
}

/// The two ends of the hand-over: the child sends its counters on `child`, the suite receives
/// them on `parent`.
pub struct Handover {
    parent: OwnedFd,
    child: OwnedFd,
}

impl Handover {
    /// A Unix socket pair for one server start.
    pub fn new() -> std::io::Result<Handover> {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into the array.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and ours.
        unsafe {
            Ok(Handover {
                parent: OwnedFd::from_raw_fd(fds[0]),
                child: OwnedFd::from_raw_fd(fds[1]),
            })
        }
    }

    /// The child's end, for [`open_and_send`] in a `pre_exec` hook.
    pub fn child_fd(&self) -> RawFd {
        self.child.as_raw_fd()
    }

    /// After the spawn: the counters the child sent, if it could open them.
    pub fn receive(self) -> Option<Counters> {
        drop(self.child);
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; the pointers below point at locals that outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: as above; MSG_DONTWAIT because the child sent before its exec, or never.
        let n = unsafe {
            libc::recvmsg(
                self.parent.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if n != 1 {
            return None;
        }
        // SAFETY: the kernel filled the control buffer; CMSG_* walk it within its length.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null()
                || (*cmsg).cmsg_level != libc::SOL_SOCKET
                || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            {
                return None;
            }
            let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                / std::mem::size_of::<RawFd>();
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            let fds: Vec<OwnedFd> = (0..count)
                .map(|i| OwnedFd::from_raw_fd(data.add(i).read_unaligned()))
                .collect();
            let [task_clock, switches]: [OwnedFd; 2] = fds.try_into().ok()?;
            Some(Counters {
                task_clock,
                switches,
            })
        }
    }
}

/// In the forked child, before `exec`: opens the two counters on itself and sends them to the
/// suite; sends nothing when perf is refused. Async-signal-safe (no allocation).
pub fn open_and_send(child_end: RawFd) {
    let fds = [
        open_counter(PERF_COUNT_SW_TASK_CLOCK),
        open_counter(PERF_COUNT_SW_CONTEXT_SWITCHES),
    ];
    if fds.iter().any(|&fd| fd < 0) {
        for fd in fds.into_iter().filter(|&fd| fd >= 0) {
            // SAFETY: closing descriptors this child just opened.
            unsafe { libc::close(fd) };
        }
        return;
    }
    let mut byte = [1u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: plain data and pointers to locals; CMSG_* stay inside `control`, which is large
    // enough for two descriptors (checked by the CMSG_SPACE below).
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of_val(&fds) as u32) as usize;
        if space > std::mem::size_of_val(&control) {
            return;
        }
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(&fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), 2);
        libc::sendmsg(child_end, &msg, 0);
        // The counters are close-on-exec: the server keeps none of them.
    }
}

/// One look at a process tree in /proc.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeSample {
    /// User clock ticks: live processes' own and their reaped children's.
    pub user_ticks: u64,
    /// System clock ticks, likewise.
    pub sys_ticks: u64,
    /// (voluntary, involuntary) context switches of each live thread, by thread id.
    pub switches: HashMap<u32, (u64, u64)>,
    /// Resident set summed over the processes, KiB.
    pub rss_kb: u64,
    /// Live threads.
    pub threads: u64,
    /// Live processes.
    pub processes: u64,
}

/// The processes of the tree rooted at `pid`: it and its descendants (through every thread's
/// children), as /proc shows them now.
pub fn tree_pids(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        found.push(p);
        for task in tasks.flatten() {
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    found
}

/// Every task (thread) of the tree rooted at `pid`, by thread id, as /proc shows them now.
pub fn tree_tasks(pid: u32) -> Vec<libc::pid_t> {
    tree_pids(pid)
        .into_iter()
        .filter_map(|p| fs::read_dir(format!("/proc/{p}/task")).ok())
        .flat_map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse().ok())
        })
        .collect()
}

/// Reads the tree rooted at `pid`. `with_switches` also reads every thread's status (used at
/// the ends of the window, not while sampling).
pub fn sample_tree(pid: u32, with_switches: bool) -> TreeSample {
    let page_kb = (page_size() / 1024).max(1);
    let mut sample = TreeSample::default();
    for p in tree_pids(pid) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(ticks) = parse_stat_ticks(&stat) else {
            continue;
        };
        sample.processes += 1;
        sample.user_ticks += ticks.0 + ticks.2;
        sample.sys_ticks += ticks.1 + ticks.3;
        if let Some(rss_pages) = fs::read_to_string(format!("/proc/{p}/statm"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        {
            sample.rss_kb += rss_pages * page_kb;
        }
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            sample.threads += 1;
            if with_switches {
                if let (Some(tid), Ok(status)) = (
                    task.file_name().to_str().and_then(|t| t.parse().ok()),
                    fs::read_to_string(task.path().join("status")),
                ) {
                    sample.switches.insert(tid, parse_switches(&status));
                }
            }
        }
    }
    sample
}

/// Proportional set size summed over the tree rooted at `pid`, KiB, from each process's
/// `/proc/PID/smaps_rollup`: a page shared by k processes counts 1/k in each, so the sum is
/// what the tree holds, whatever it shares between its processes (a resident-set sum counts
/// such a page once per process). `None` when no process of the tree could be read.
pub fn pss_tree_kb(pid: u32) -> Option<u64> {
    let each: Vec<u64> = tree_pids(pid)
        .into_iter()
        .filter_map(|p| {
            let text = fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
            parse_pss_kb(&text)
        })
        .collect();
    (!each.is_empty()).then(|| each.iter().sum())
}

/// The `Pss:` line of a `smaps_rollup`, KiB.
pub fn parse_pss_kb(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == "Pss:")
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// Memory per connection, in bytes: what the tree holds with `conns` connections open
/// (`loaded_kb`) over what it held before they opened (`base_kb`), divided among them. It
/// may come out negative when the tree gave back more than the connections took (a share of
/// a library page moving to another process); it is reported as measured. `None` without
/// connections.
pub fn mem_per_conn_b(base_kb: u64, loaded_kb: u64, conns: u64) -> Option<f64> {
    (conns > 0).then(|| (loaded_kb as f64 - base_kb as f64) * 1024.0 / conns as f64)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Clock ticks per second (`USER_HZ`).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// utime, stime, cutime, cstime from a /proc/PID/stat line (fields 14-17; the command name in
/// parentheses may hold spaces, so fields are counted after its closing parenthesis).
pub fn parse_stat_ticks(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so field N is at index N - 3.
    let at = |n: usize| {
        fields
            .get(n - 3)?
            .parse::<i64>()
            .ok()
            .map(|v| v.max(0) as u64)
    };
    Some((at(14)?, at(15)?, at(16)?, at(17)?))
}

fn parse_switches(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// What the tree spent between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowCost {
    /// `perf` or `proc`.
    pub source: &'static str,
    /// CPU seconds, all of the tree.
    pub cpu_s: f64,
    /// User CPU seconds (the /proc split, scaled to `cpu_s`), if any ticks were seen.
    pub user_s: Option<f64>,
    /// System CPU seconds, likewise.
    pub sys_s: Option<f64>,
    /// Every context switch (perf), or those of live threads (proc).
    pub switches: u64,
    /// Voluntary context switches of the threads alive at the end of the window.
    pub voluntary: u64,
    /// Involuntary context switches of the threads alive at the end of the window.
    pub involuntary: u64,
}

/// The window's cost from the samples (and counters, when perf gave them) at its two ends.
pub fn window(
    before: &TreeSample,
    after: &TreeSample,
    counters: Option<(CounterValues, CounterValues)>,
    hz: f64,
) -> WindowCost {
    let user_ticks = after.user_ticks.saturating_sub(before.user_ticks) as f64;
    let sys_ticks = after.sys_ticks.saturating_sub(before.sys_ticks) as f64;
    let (mut voluntary, mut involuntary) = (0, 0);
    for (tid, &(v1, i1)) in &after.switches {
        let (v0, i0) = before.switches.get(tid).copied().unwrap_or((0, 0));
        voluntary += v1.saturating_sub(v0);
        involuntary += i1.saturating_sub(i0);
    }
    let ticks_s = (user_ticks + sys_ticks) / hz;
    let (source, cpu_s, switches) = match counters {
        Some((c0, c1)) => (
            "perf",
            c1.cpu_ns.saturating_sub(c0.cpu_ns) as f64 / 1e9,
            c1.switches.saturating_sub(c0.switches),
        ),
        None => ("proc", ticks_s, voluntary + involuntary),
    };
    let split = (user_ticks + sys_ticks > 0.0).then(|| {
        let scale = cpu_s / (user_ticks + sys_ticks);
        (user_ticks * scale, sys_ticks * scale)
    });
    WindowCost {
        source,
        cpu_s,
        user_s: split.map(|s| s.0),
        sys_s: split.map(|s| s.1),
        switches,
        voluntary,
        involuntary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "42 (my (odd) server) S 1 42 42 0 -1 4194304 100 0 0 0 7 3 11 5 20 0 1 0";
        assert_eq!(parse_stat_ticks(line), Some((7, 3, 11, 5)));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    fn sample(user: u64, sys: u64, switches: &[(u32, (u64, u64))]) -> TreeSample {
        TreeSample {
            user_ticks: user,
            sys_ticks: sys,
            switches: switches.iter().copied().collect(),
            ..TreeSample::default()
        }
    }

    #[test]
    fn the_window_subtracts_what_came_before_it() {
        // Start-up burnt 500 ticks; the window adds 30 user and 10 system ticks, a thread
        // that lived through it switched 5 + 1 times, a new one 2 + 0 times, and a thread
        // that ended inside it is not seen (proc).
        let before = sample(500, 20, &[(1, (100, 10)), (2, (7, 7))]);
        let after = sample(530, 30, &[(1, (105, 11)), (3, (2, 0))]);
        let w = window(&before, &after, None, 100.0);
        assert_eq!(w.source, "proc");
        assert!((w.cpu_s - 0.4).abs() < 1e-9, "{w:?}");
        assert!((w.user_s.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!((w.voluntary, w.involuntary, w.switches), (7, 1, 8));
    }

    #[test]
    fn perf_gives_the_total_and_proc_the_split() {
        let before = sample(500, 20, &[]);
        let after = sample(503, 21, &[]);
        let c0 = CounterValues {
            cpu_ns: 9_000_000_000,
            switches: 1000,
        };
        let c1 = CounterValues {
            cpu_ns: 9_036_000_000,
            switches: 1250,
        };
        let w = window(&before, &after, Some((c0, c1)), 100.0);
        assert_eq!(w.source, "perf");
        assert!((w.cpu_s - 0.036).abs() < 1e-12);
        assert!((w.user_s.unwrap() - 0.027).abs() < 1e-12);
        assert!((w.sys_s.unwrap() - 0.009).abs() < 1e-12);
        assert_eq!(w.switches, 250);
        // No ticks seen at all: no split is claimed.
        let w = window(&before, &before, Some((c0, c1)), 100.0);
        assert_eq!((w.user_s, w.sys_s), (None, None));
    }

    #[test]
    fn this_process_tree_can_be_read() {
        let s = sample_tree(std::process::id(), true);
        assert!(s.processes >= 1 && s.threads >= 1 && s.rss_kb > 0, "{s:?}");
        assert!(!s.switches.is_empty());
        let pss = pss_tree_kb(std::process::id()).expect("smaps_rollup is readable");
        assert!(
            pss > 0 && pss <= s.rss_kb,
            "PSS {pss} KiB, RSS {} KiB",
            s.rss_kb
        );
    }

    #[test]
    fn pss_comes_from_its_own_line() {
        let rollup = "55d0c0a00000-7ffd5e9f1000 ---p 00000000 00:00 0  [rollup]\n\
                      Rss:                2048 kB\nPss:                1234 kB\n\
                      Pss_Anon:            800 kB\nPss_File:            434 kB\n";
        assert_eq!(parse_pss_kb(rollup), Some(1234));
        assert_eq!(parse_pss_kb("Rss: 12 kB\n"), None);
    }

    #[test]
    fn memory_per_connection_is_the_growth_over_the_baseline_shared_out() {
        // 10,000 idle connections took the tree from 4,000 KiB to 104,000 KiB: 100,000 KiB
        // among them is 10,240 bytes each.
        assert_eq!(mem_per_conn_b(4_000, 104_000, 10_000), Some(10_240.0));
        // 518 KiB more over 1,000 connections: 530.432 bytes each.
        let b = mem_per_conn_b(2_000, 2_518, 1_000).unwrap();
        assert!((b - 530.432).abs() < 1e-9, "{b}");
        // The tree shrank: reported as measured, not hidden.
        assert_eq!(mem_per_conn_b(2_000, 1_990, 10), Some(-1024.0));
        assert_eq!(mem_per_conn_b(2_000, 3_000, 0), None);
    }
}
