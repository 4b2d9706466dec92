//! The suite runner on the tiny preset: every server, and servers that misbehave.
//!
//! Needs the workspace's server binaries beside bench-client (`cargo test --workspace` and
//! `make test` build them first).

use std::path::{Path, PathBuf};
use std::process::Command;

use bench_client::output::{read_csv, ResultRow};

const MODELS: [&str; 9] = [
    "iterative",
    "fork",
    "threads",
    "pool",
    "prefork",
    "epoll",
    "sigio",
    "reuseport",
    "tokio",
];

fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_bench-client"))
        .parent()
        .unwrap()
        .to_path_buf();
    for model in MODELS {
        assert!(
            dir.join(format!("server-{model}")).is_file(),
            "server-{model} is not built in {}: run `cargo build --workspace` (make test does)",
            dir.display()
        );
    }
    dir
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archbench-suite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_suite(
    bin: &Path,
    out: &Path,
    extra: &[&str],
) -> (std::process::Output, Vec<ResultRow>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bench-client"))
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
    let csv = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .expect("a CSV was written");
    let rows = read_csv(&csv).expect("the CSV is well-formed");
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
                assert!(row.server_cpu_user_s.0.is_some() && row.server_requests.0.is_some());
                assert!(row.server_processes.0.unwrap() >= 1, "{model}");
            }
        }
        // The reference rows are measured, or say why not.
        for peer in ["node", "nginx"] {
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
    dir
}

#[test]
fn failing_check_is_reported_and_a_dying_server_gives_an_error_row() {
    let out = temp_dir("bad");
    let bins = misbehaving_servers();
    let (output, rows, markdown) = run_suite(&bins, &out, &["--servers", "iterative,epoll,tokio"]);
    assert!(
        output.status.success(),
        "the run completes: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let wrong: Vec<&ResultRow> = rows.iter().filter(|r| r.server == "epoll").collect();
    assert_eq!(wrong.len(), 2, "one row per cell, not repeated: {wrong:?}");
    for row in &wrong {
        assert!(
            row.notes.starts_with("not measured: failed the check"),
            "{}",
            row.notes
        );
        assert_eq!(row.ok, 0);
    }
    assert!(markdown.contains("epoll: not measured: failed the check"));

    let died = rows
        .iter()
        .find(|r| r.server == "tokio" && r.table == "tiny-hello")
        .unwrap();
    assert!(died.partial, "{died:?}");
    assert!(
        died.notes
            .contains("server died during the measurement (exit code 3)"),
        "{}",
        died.notes
    );
    assert!(died.err_connect > 0);

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

#[test]
fn unknown_preset_or_server_is_a_usage_error() {
    for args in [
        &["suite", "--preset", "nope"][..],
        &["paper", "--servers", "apache"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bench-client"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("known:"), "{stderr}");
    }
}
