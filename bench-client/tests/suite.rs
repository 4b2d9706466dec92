//! The suite runner on the tiny preset: every server, and servers that misbehave.
//!
//! Needs the workspace's server binaries beside bench-client (`cargo test --workspace` and
//! `make test` build them first).

use std::path::{Path, PathBuf};
use std::process::Command;

use bench_client::output::{read_csv, ResultRow, Status};
use support::{csv_in, script};

mod support;

const MODELS: [&str; 13] = [
    "iterative",
    "fork",
    "threads",
    "pool",
    "prefork",
    "epoll",
    "select",
    "poll",
    "busypoll",
    "sigio",
    "reuseport",
    "mio",
    "tokio",
];

fn bin_dir() -> PathBuf {
    let servers: Vec<String> = MODELS.iter().map(|m| format!("server-{m}")).collect();
    support::bin_dir(&servers.iter().map(String::as_str).collect::<Vec<_>>())
}

fn temp_dir(name: &str) -> PathBuf {
    support::temp_dir("archbench-suite", name)
}

fn run_suite(
    bin: &Path,
    out: &Path,
    extra: &[&str],
) -> (std::process::Output, Vec<ResultRow>, String) {
    run_suite_env(bin, out, extra, &[])
}

fn run_suite_env(
    bin: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Output, Vec<ResultRow>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .envs(env.iter().copied())
        .args([
            "suite",
            "--preset",
            "tiny",
            "--bin-dir",
            bin.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    let rows = read_csv(&csv_in(out)).expect("the CSV is well-formed");
    let markdown = std::fs::read_to_string(out.join("latest.md")).expect("latest.md was written");
    (output, rows, markdown)
}

#[test]
fn tiny_preset_measures_every_model_and_writes_csv_and_markdown() {
    let out = temp_dir("all");
    let (output, rows, markdown) = run_suite(&bin_dir(), &out, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for table in ["tiny-hello", "tiny-delay"] {
        let expected = if table == "tiny-hello" { 20 } else { 4 };
        for model in MODELS {
            let measured: Vec<&ResultRow> = rows
                .iter()
                .filter(|r| r.table == table && r.server == model)
                .collect();
            assert_eq!(measured.len(), 2, "{model} in {table}: two repetitions");
            for row in measured {
                assert_eq!(
                    (row.ok, row.partial),
                    (expected, false),
                    "{model} {table}: {}",
                    row.notes
                );
                assert!(row.server_cpu_s.0.is_some() && row.server_requests.0 == Some(expected));
                assert_eq!(row.status, Status::Ok, "{model}: {}", row.notes);
                assert!(row.server_processes.0.unwrap() >= 1, "{model}");
            }
        }
        // The reference rows, and io_uring (which a kernel or sandbox may refuse), are
        // measured, or say why not.
        for peer in ["node", "nginx", "uring"] {
            let row = rows
                .iter()
                .find(|r| r.table == table && r.server == peer)
                .expect("a row for each peer");
            assert!(
                row.ok == expected || row.notes.starts_with("not measured: "),
                "{peer}: {row:?}"
            );
        }
    }
    let forks = rows
        .iter()
        .filter(|r| r.server == "prefork")
        .map(|r| r.server_processes.0.unwrap())
        .max();
    assert_eq!(forks, Some(33), "prefork: a parent and 32 workers");
    // The report is a function of the rows: written again from the CSV, it is the same.
    let csv = csv_in(&out);
    let again = out.join("again");
    let status = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(["report", "--preset", "tiny", csv.to_str().unwrap(), "--out"])
        .arg(again.join("latest.md"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(again.join("latest.md")).unwrap(),
        markdown
    );
    // So are its plots, byte for byte: a CPU bar chart per cell, embedded in the report.
    for table in ["tiny-hello", "tiny-delay"] {
        let plot = format!("cpu-{table}.svg");
        assert!(markdown.contains(&format!("]({plot})")), "{plot} embedded");
        let first = std::fs::read(out.join(&plot)).expect("the suite wrote the plot");
        assert_eq!(first, std::fs::read(again.join(&plot)).unwrap(), "{plot}");
    }
    assert!(markdown.contains("## hello, 20 requests, 2 at a time"));
    for model in MODELS {
        assert!(
            markdown.contains(&format!("\n| {model} |")),
            "markdown lacks {model}"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// A server directory holding the real iterative server, and two fakes in Python: one that
/// answers the wrong bytes, one that dies after five connections.
fn misbehaving_servers() -> PathBuf {
    let dir = temp_dir("fakes");
    std::os::unix::fs::symlink(
        bin_dir().join("server-iterative"),
        dir.join("server-iterative"),
    )
    .unwrap();
    let fake = |name: &str, body: &str| {
        let script = format!(
            "#!/usr/bin/env python3\nimport os, socket\n\
             s = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen(128)\n\
             print(f'listening on 127.0.0.1:{{s.getsockname()[1]}}', flush=True)\nn = 0\n\
             while True:\n    c, _ = s.accept()\n    n += 1\n{body}\n    c.close()\n"
        );
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    fake("server-epoll", "    c.sendall(b'Goodbye\\n')");
    fake(
        "server-tokio",
        "    if n > 5:\n        os._exit(3)\n    c.sendall(b'HelloWorld\\n')",
    );
    // As the io_uring server where io_uring is refused: one line on stderr, exit 1.
    let refused = dir.join("server-uring");
    let script = "#!/usr/bin/env python3\nimport sys\n\
                  sys.exit('server-uring: io_uring is not available here (refused)')\n";
    std::fs::write(&refused, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&refused, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn failing_check_is_reported_and_a_dying_server_gives_an_error_row() {
    let out = temp_dir("bad");
    let bins = misbehaving_servers();
    let (output, rows, markdown) =
        run_suite(&bins, &out, &["--servers", "iterative,epoll,tokio,uring"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the run completes, and exits 1 because rows failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("rows failed or are partial"));

    let wrong: Vec<&ResultRow> = rows.iter().filter(|r| r.server == "epoll").collect();
    assert_eq!(wrong.len(), 2, "one row per cell, not repeated: {wrong:?}");
    for row in &wrong {
        assert!(
            row.notes.starts_with("not measured: failed the check"),
            "{}",
            row.notes
        );
        assert_eq!((row.ok, row.status), (0, Status::Failed));
    }
    assert!(markdown.contains("epoll: not measured: failed the check"));

    let died = rows
        .iter()
        .find(|r| r.server == "tokio" && r.table == "tiny-hello")
        .unwrap();
    assert!(died.partial, "{died:?}");
    assert_eq!(died.status, Status::Partial);
    assert!(
        died.notes
            .contains("server died during the measurement (exit code 3)"),
        "{}",
        died.notes
    );
    assert!(died.err_connect > 0);

    let refused: Vec<&ResultRow> = rows.iter().filter(|r| r.server == "uring").collect();
    assert_eq!(refused.len(), 2, "one row per cell: {refused:?}");
    for row in refused {
        assert_eq!(row.status, Status::Unavailable);
        assert_eq!(
            row.notes,
            "not measured: exited at start (exit status: 1); \
             stderr: server-uring: io_uring is not available here (refused)"
        );
    }

    let fine = rows
        .iter()
        .filter(|r| r.server == "iterative" && !r.partial)
        .count();
    assert_eq!(
        fine, 4,
        "the real server is measured in every cell and repetition"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&bins).unwrap();
}

/// One repetition of the tiny preset for one server, which must end with exit code 0.
fn run_one_clean(bins: &Path, out: &Path, server: &str, env: &[(&str, &str)]) -> Vec<ResultRow> {
    let (output, rows, _) = run_suite_env(bins, out, &["--servers", server, "--reps", "1"], env);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    rows
}

#[test]
fn start_up_cpu_is_outside_the_measured_window() {
    // "server-epoll" burns 0.6 s of CPU, then becomes the real epoll server.
    let bins = temp_dir("burn-bins");
    let real = bin_dir().join("server-epoll");
    script(
        &bins,
        "server-epoll",
        &format!(
            "import os, sys, time\nend = time.process_time() + 0.6\n\
             while time.process_time() < end:\n    pass\n\
             os.execv({real:?}, [{real:?}] + sys.argv[1:])\n"
        ),
    );
    let out = temp_dir("burn");
    let rows = run_one_clean(&bins, &out, "epoll", &[]);
    for row in &rows {
        let window = row.server_cpu_s.0.expect("measured");
        let life = row.server_life_cpu_s.0.expect("measured");
        assert!(
            life >= 0.55,
            "{}: the start-up burn is in its life ({life} s)",
            row.table
        );
        assert!(
            window < 0.1,
            "{}: {window} s of CPU in the window of {} requests: the start-up leaked in",
            row.table,
            row.ok
        );
        assert_ne!(row.cost_source, "NA");
    }
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&bins).unwrap();
}

#[test]
fn children_born_and_reaped_inside_the_window_are_counted() {
    // "server-fork" forks a child per connection that burns 30 ms of CPU, answers and exits;
    // the parent reaps it before the next accept.
    let bins = temp_dir("children-bins");
    script(
        &bins,
        "server-fork",
        "import os, signal, socket, time\n\
         signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n\
         s = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen(128)\n\
         print(f'listening on 127.0.0.1:{s.getsockname()[1]}', flush=True)\n\
         while True:\n    c, _ = s.accept()\n    pid = os.fork()\n    if pid == 0:\n\
         \x20       end = time.process_time() + 0.03\n\
         \x20       while time.process_time() < end:\n            pass\n\
         \x20       c.sendall(b'HelloWorld\\n')\n        os._exit(0)\n\
         \x20   c.close()\n    os.waitpid(pid, 0)\n",
    );
    // Both sources: perf counters (where the machine allows them) and the /proc fallback.
    for (env, source) in [
        (&[][..], None),
        (&[("ARCHBENCH_NO_PERF", "1")][..], Some("proc")),
    ] {
        let out = temp_dir("children");
        let rows = run_one_clean(&bins, &out, "fork", env);
        for row in &rows {
            let window = row.server_cpu_s.0.expect("measured");
            let expected = 0.03 * row.ok as f64;
            assert!(
                window >= 0.8 * expected,
                "{} ({}): {window} s of CPU for {} children of 30 ms each",
                row.table,
                row.cost_source,
                row.ok
            );
            assert_eq!(row.status, Status::Ok, "{}", row.notes);
            if let Some(source) = source {
                assert_eq!(row.cost_source, source);
            }
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
    std::fs::remove_dir_all(&bins).unwrap();
}

#[test]
fn rows_record_placement_seed_and_provenance() {
    let out = temp_dir("provenance");
    let (output, rows, markdown) = run_suite(
        &bin_dir(),
        &out,
        &[
            "--servers",
            "epoll",
            "--reps",
            "1",
            "--seed",
            "42",
            "--cpus",
            "shared",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = &rows[0];
    assert_eq!((row.seed.0, row.cpus.as_str()), (Some(42), "shared"));
    assert!(
        row.server_build.starts_with("sha256:"),
        "{}",
        row.server_build
    );
    assert!(row.build.contains("rustc"), "{}", row.build);
    assert!(markdown.contains("seed 42") && markdown.contains("`shared`"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn unknown_preset_or_server_is_a_usage_error() {
    for args in [
        &["suite", "--preset", "nope"][..],
        &["paper", "--servers", "apache"],
        &["suite", "--preset", "tiny", "--cpus", "server=0,client=0"],
        &["suite", "--preset", "tiny", "--cpus", "everywhere"],
    ] {
        let stderr = support::usage_error(args);
        assert!(
            stderr.contains("known:") || stderr.contains("--cpus"),
            "{stderr}"
        );
    }
}
