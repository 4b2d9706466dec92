//! The scale preset at a tiny scale: levels of tens of connections, windows of a few hundred
//! milliseconds, two servers. Needs the workspace's server binaries beside bench-client
//! (`cargo test --workspace` and `make test` build them first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bench_client::output::{read_csv, ResultRow, Status};
use support::csv_in;

mod support;

fn bin_dir() -> PathBuf {
    support::bin_dir(&["server-epoll", "server-threads", "server-select"])
}

fn temp_dir(name: &str) -> PathBuf {
    support::temp_dir("archbench-scale", name)
}

/// `suite --preset scale` into `out`; its output, rows and report.
fn run_scale(out: &Path, args: &[&str]) -> (Output, Vec<ResultRow>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(["suite", "--preset", "scale", "--bin-dir"])
        .arg(bin_dir())
        .arg("--out")
        .arg(out)
        .args(["--cpus", "shared", "--seed", "7"])
        .args(args)
        .output()
        .unwrap();
    let rows = read_csv(&csv_in(out)).expect("the CSV is well-formed");
    let markdown = std::fs::read_to_string(out.join("latest.md")).expect("latest.md was written");
    (output, rows, markdown)
}

fn row<'a>(rows: &'a [ResultRow], table: &str, server: &str) -> &'a ResultRow {
    rows.iter()
        .find(|r| r.table == table && r.server == server)
        .unwrap_or_else(|| panic!("no row for {server} in {table}"))
}

fn svgs(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "svg"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_scale_preset_sweeps_every_level_and_reports_it() {
    let out = temp_dir("e2e");
    let (output, rows, markdown) = run_scale(
        &out,
        &[
            "--servers",
            "epoll,threads",
            "--levels",
            "1,100",
            "--duration",
            "300ms",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        rows.len(),
        2 * (3 * 2 + 1),
        "two servers, three sweeps at two levels, the pipelined one from 100"
    );
    for r in &rows {
        assert_eq!(
            r.status,
            Status::Ok,
            "{} {}: {}",
            r.server,
            r.table,
            r.notes
        );
        assert!(r.ok > 0 && r.server_cpu_s.0.is_some(), "{r:?}");
        let (base, loaded) = (r.server_pss_base_kb.0.unwrap(), r.server_pss_kb.0.unwrap());
        assert!(base > 0 && loaded > 0, "{} {}: PSS read", r.server, r.table);
        let conns = r.idle_held.0.unwrap_or(r.concurrency as u64) as f64;
        let per = r.mem_per_conn_b.0.unwrap();
        assert!(
            (per - (loaded as f64 - base as f64) * 1024.0 / conns).abs() < 1e-6,
            "memory per connection is the growth over the baseline shared out: {r:?}"
        );
    }
    for server in ["epoll", "threads"] {
        let idle = row(&rows, "scale-idle-100", server);
        assert_eq!(
            (idle.idle_conns.0, idle.idle_held.0),
            (Some(100), Some(100))
        );
        assert_eq!(
            (idle.concurrency, idle.rate.0),
            (10, Some(1000.0)),
            "the light load"
        );
        let per_request = row(&rows, "scale-per-request-100", server);
        assert_eq!(per_request.conn_mode, "per-request");
        assert_eq!(per_request.concurrency, 100);
        assert_eq!(row(&rows, "scale-keep-alive-1", server).concurrency, 1);
        let pipelined = row(&rows, "scale-pipelined-100", server);
        assert_eq!(
            (pipelined.conn_mode.as_str(), pipelined.concurrency),
            ("pipeline-16", 100)
        );
    }
    // A thread per connection: the idle ones are threads of the server.
    let threads = row(&rows, "scale-idle-100", "threads");
    assert!(threads.server_threads.0.unwrap() >= 100, "{threads:?}");
    assert_eq!(
        row(&rows, "scale-idle-100", "epoll").server_threads.0,
        Some(1)
    );
    // Memory: 100 threads hold more than the event loop's 100 connections (each a stack).
    let mem = |server| {
        row(&rows, "scale-idle-100", server)
            .mem_per_conn_b
            .0
            .unwrap()
    };
    assert!(
        mem("threads") > mem("epoll"),
        "{} vs {}",
        mem("threads"),
        mem("epoll")
    );

    assert!(markdown.contains("## Where each model stops scaling"));
    assert!(markdown.contains("| epoll | epoll event loop, one thread | all, to 100"));
    for plot in [
        "scale-rps-keep-alive.svg",
        "scale-p99-per-request.svg",
        "scale-rps-pipelined.svg",
        "scale-memory-idle.svg",
        "scale-cpu-idle.svg",
        "cpu-scale-idle-100.svg",
    ] {
        assert!(
            markdown.contains(&format!("]({plot})")),
            "{plot} is embedded"
        );
        let svg = std::fs::read_to_string(out.join(plot)).expect("the plot was written");
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{plot}: {e}"));
    }
    // The report and its plots are a function of the rows.
    let again = out.join("again");
    let status = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(["report", "--preset", "scale"])
        .arg(csv_in(&out))
        .arg("--out")
        .arg(again.join("latest.md"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(again.join("latest.md")).unwrap(),
        markdown
    );
    assert_eq!(svgs(&again), svgs(&out), "the same plots, byte for byte");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_level_a_server_cannot_hold_is_a_row_that_says_so_and_the_run_goes_on() {
    // A cap of 20 connections: 50 kept-alive connections cannot all be served (those past
    // the cap wait in the backlog and time out), 50 idle ones cannot all be held.
    let out = temp_dir("cap");
    let began = Instant::now();
    let (output, rows, markdown) = run_scale(
        &out,
        &[
            "--servers",
            "epoll",
            "--server-args",
            "--max-conns 20",
            "--levels",
            "10,50,100",
            "--duration",
            "400ms",
            "--reps",
            "2",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "a level not held is a finding, not a failure: {stderr}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "bounded: {:?}",
        began.elapsed()
    );
    assert_eq!(
        rows.len(),
        2 * 10,
        "every cell and repetition has a row (three sweeps at three levels, pipelined at 100)"
    );
    let deep = row(&rows, "scale-pipelined-100", "epoll");
    assert_eq!(deep.status, Status::Limit, "{deep:?}");
    assert!(
        deep.server_cpu_s.0.is_some(),
        "its sweep's first level: measured"
    );
    // The level not held is measured again in the next repetition; the next level is not.
    let again = rows
        .iter()
        .find(|r| r.table == "scale-keep-alive-50" && r.repetition == 2)
        .unwrap();
    assert_eq!(again.status, Status::Limit);
    assert!(again.server_cpu_s.0.is_some(), "{}", again.notes);
    assert!(rows
        .iter()
        .filter(|r| r.table == "scale-keep-alive-100")
        .all(|r| r.notes.starts_with("not run: ")));
    assert_eq!(
        row(&rows, "scale-keep-alive-10", "epoll").status,
        Status::Ok
    );
    let over = row(&rows, "scale-keep-alive-50", "epoll");
    assert_eq!(over.status, Status::Limit, "{over:?}");
    assert!(
        over.notes.starts_with("could not hold this level: ") && over.notes.contains("timed out"),
        "{}",
        over.notes
    );
    let after = row(&rows, "scale-keep-alive-100", "epoll");
    assert_eq!(after.status, Status::Limit);
    assert!(
        after.notes.starts_with("not run: could not hold 50 (")
            && after.notes.matches("could not hold").count() == 1,
        "{}",
        after.notes
    );
    assert!(after.server_cpu_s.0.is_none(), "not run, not measured");
    let idle = row(&rows, "scale-idle-50", "epoll");
    assert_eq!(idle.status, Status::Limit, "{idle:?}");
    assert_eq!(idle.idle_held.0, Some(20), "{}", idle.notes);
    assert!(
        idle.notes.contains("held 20 of 50 idle connections"),
        "{}",
        idle.notes
    );
    // The sweep went on: the per-request sweep is measured (the cap queues, it does not
    // refuse), and the report says where the server stopped.
    assert!(row(&rows, "scale-per-request-10", "epoll")
        .status
        .measured());
    assert!(
        markdown.contains("| epoll | epoll event loop, one thread | 10 (not 50)"),
        "{markdown}"
    );
    assert!(markdown.contains("- **epoll** at 50: held 20 of 50 idle connections"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn select_cannot_hold_more_descriptors_than_fd_setsize() {
    let out = temp_dir("select");
    let (output, rows, _) = run_scale(
        &out,
        &[
            "--servers",
            "select",
            "--levels",
            "1100",
            "--duration",
            "300ms",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let idle = row(&rows, "scale-idle-1100", "select");
    assert_eq!(idle.status, Status::Limit, "{idle:?}");
    let held = idle.idle_held.0.unwrap();
    assert!(
        (1000..1024).contains(&held),
        "select holds what fits under FD_SETSIZE: {held}"
    );
    assert!(
        idle.notes.contains("closed by the server"),
        "{}",
        idle.notes
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn levels_belong_to_the_scale_preset_and_are_checked() {
    for args in [
        &["suite", "--preset", "tiny", "--levels", "1,2"][..],
        &["suite", "--preset", "scale", "--levels", "0"],
        &["suite", "--preset", "scale", "--levels", "ten"],
        &["suite", "--preset", "scale", "--duration", "soon"],
    ] {
        let stderr = support::usage_error(args);
        assert!(
            stderr.contains("--levels") || stderr.contains("--duration"),
            "{stderr}"
        );
    }
}

#[test]
fn the_memory_guard_stops_a_server_whole() {
    use bench_client::suite::{placement::Placement, server};
    let places = server::Locations {
        bin_dir: bin_dir(),
        repo_root: None,
    };
    let running = server::start(
        &server::Launch::Binary("server-epoll", &[]),
        &[],
        server::ConnLimits::default(),
        serverkit::Workload::Hello,
        serverkit::Protocol::Http,
        &places,
        &Placement::Shared,
    )
    .expect("server-epoll starts");
    // A floor above any machine's memory: the guard kills the server at once.
    let guard = running.guard_memory(u64::MAX);
    let began = Instant::now();
    while !guard.tripped() && began.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(guard.finish(), "the guard killed it");
    // SIGKILL is sent; the process ends a moment later (on a loaded machine, a long one): wait,
    // boundedly, until it is a zombie, so that `stop` finds it gone rather than racing it.
    let stat = format!("/proc/{}/stat", running.pid());
    for _ in 0..500 {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        if state
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z'))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let exit = running.stop();
    assert!(exit.died_early, "{exit:?}");
    assert_eq!(exit.signal, Some(libc::SIGKILL));
}

#[test]
fn processes_left_behind_by_a_server_are_killed_with_its_group() {
    // "server-fork" starts a child that ignores SIGTERM and outlives the parent, which
    // answers the check and exits 0 on SIGTERM.
    let bins = temp_dir("group-bins");
    let pid_file = bins.join("child.pid");
    let body = format!(
        "import os, signal, socket, time\n\
         if os.fork() == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         \x20   open({pid:?}, 'w').write(str(os.getpid()))\n    time.sleep(600)\n    os._exit(0)\n\
         signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n\
         s = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen(128)\n\
         print(f'listening on 127.0.0.1:{{s.getsockname()[1]}}', flush=True)\n\
         while True:\n    c, _ = s.accept()\n    c.sendall(b'HelloWorld\\n')\n    c.close()\n",
        pid = pid_file.to_str().unwrap()
    );
    support::script(&bins, "server-fork", &body);
    let out = temp_dir("group");
    let output = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args([
            "suite",
            "--preset",
            "tiny",
            "--servers",
            "fork",
            "--reps",
            "1",
        ])
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let rows = read_csv(&csv_in(&out)).unwrap();
    assert!(
        rows.iter().all(|r| r
            .notes
            .contains("processes of its group outlived it (killed)")),
        "{rows:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for whoever adopted it to reap it.
    let dead = || {
        std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let began = Instant::now();
    while !dead() && began.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dead(), "the child {child} was killed with its group");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&bins).unwrap();
}
