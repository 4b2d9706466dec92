//! The `bench-client` binary: outputs, exit codes, messages.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use bench_client::output::{read_csv, ResultRow};
use bench_client::timeline::Entry;
use support::{Behaviour, TestServer};

fn bench_client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(args)
        .output()
        .expect("run bench-client")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archbench-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn csv_and_json_carry_the_same_figures() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("csvjson");
    let csv = dir.join("runs.csv");
    let csv_arg = csv.to_str().unwrap();
    let out = bench_client(&[
        "load",
        "-n",
        "300",
        "-c",
        "3",
        "-k",
        "--json",
        "--csv",
        csv_arg,
        &server.url(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_json: ResultRow = serde_json::from_slice(&out.stdout).expect("stdout is one JSON row");
    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows, vec![from_json.clone()]);
    assert_eq!(
        (from_json.ok, from_json.connections, from_json.concurrency),
        (300, 3, 3)
    );
    assert_eq!(from_json.conn_mode, "keep-alive");
    assert!(from_json.rps > 0.0 && from_json.lat_p50_ms.0.is_some());

    // A second run appends a row under the same header.
    let out = bench_client(&["load", "-n", "10", "--csv", csv_arg, &server.url()]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert_eq!(text.matches("run_id").count(), 1);
    assert_eq!(read_csv(&csv).unwrap()[1].ok, 10);
}

#[test]
fn summary_names_the_figures() {
    let server = TestServer::start(Behaviour::Hello);
    let out = bench_client(&["load", "-n", "100", "-c", "2", &server.addr.to_string()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["req/s", "p50", "p99.9", "max", "100 ok, 0 errors", "CPU"] {
        assert!(text.contains(word), "summary lacks {word:?}:\n{text}");
    }
}

#[test]
fn errors_give_exit_1_and_are_reported_by_kind() {
    let server = TestServer::start(Behaviour::Status500);
    let out = bench_client(&["load", "-n", "5", "-c", "1", &server.url()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("status 5"), "{text}");
}

#[test]
fn an_unreachable_target_gets_a_clear_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bench_client(&["load", "-n", "5", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("cannot connect") && stderr.contains("is the server running?"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    for args in [
        &["load", "--no-such-flag", "127.0.0.1:1"][..],
        &["load", "-c", "0", "127.0.0.1:1"],
        &["load", "--rate", "-5", "127.0.0.1:1"],
        &["load", "-d", "5", "127.0.0.1:1"],
        &["load", "https://127.0.0.1:1/"],
        &["load", "--protocol", "raw", "-k", "127.0.0.1:1"],
        &["load", "-k", "--pipeline", "0", "127.0.0.1:1"],
        &["load", "-k", "--pipeline", "1025", "127.0.0.1:1"],
        &["load", "--pipeline", "16", "127.0.0.1:1"],
        &[
            "load",
            "--pipeline",
            "16",
            "--protocol",
            "raw",
            "127.0.0.1:1",
        ],
    ] {
        let out = bench_client(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn saved_histograms_merge() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("hist");
    let (a, b) = (dir.join("a.hist"), dir.join("b.hist"));
    for (path, n) in [(&a, "120"), (&b, "80")] {
        let out = bench_client(&[
            "load",
            "-n",
            n,
            "--save-hist",
            path.to_str().unwrap(),
            &server.url(),
        ]);
        assert!(out.status.success());
    }
    let out = bench_client(&["merge", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("requests  200\n"), "{text}");
    assert!(text.contains("p99"));
    let bad = dir.join("bad.hist");
    std::fs::write(&bad, b"not a histogram").unwrap();
    let out = bench_client(&["merge", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sigint_ends_the_run_as_partial_and_still_writes_it() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("sigint");
    let csv = dir.join("runs.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args([
            "load",
            "-d",
            "30s",
            "-c",
            "2",
            "-k",
            "--csv",
            csv.to_str().unwrap(),
            &server.url(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "took {:?} to stop",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "a partial run is not a success");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("PARTIAL") && text.contains("SIGINT"),
        "{text}"
    );
    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].partial && rows[0].ok > 0, "{:?}", rows[0]);
    assert!(rows[0].elapsed_s < 5.0);
}

#[test]
fn the_default_spin_does_not_burn_cpu_while_waiting() {
    // In its own process: the CPU figure is the client process's (in-process tests share it).
    let server = TestServer::start(Behaviour::Delay(std::time::Duration::from_millis(100)));
    let out = bench_client(&["load", "-n", "10", "-c", "2", "--json", &server.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: ResultRow = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row.ok, 10);
    // A client that spun while waiting would use close to 100 %; an idle one a few percent,
    // more on a machine busy with other work (CI builds beside it): the bound leaves room.
    assert!(
        row.client_cpu_pct < 20.0,
        "client used {:.1}% CPU waiting on a 100 ms server",
        row.client_cpu_pct
    );
}

#[test]
fn warmup_requests_are_sent_but_not_counted() {
    let server = TestServer::start(Behaviour::Hello);
    let out = bench_client(&[
        "load",
        "-n",
        "100",
        "--warmup",
        "50",
        "--json",
        &server.url(),
    ]);
    assert!(out.status.success());
    let row: ResultRow = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row.ok, 100, "only the measured requests count");
    assert_eq!(
        server
            .counters
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        150
    );
}

#[test]
fn a_pipelined_run_writes_its_timeline_in_the_json_and_the_csv() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("timeline");
    let csv = dir.join("seconds.csv");
    let out = bench_client(&[
        "load",
        "-d",
        "2s",
        "-c",
        "2",
        "-k",
        "--pipeline",
        "8",
        "--json",
        "--timeline",
        csv.to_str().unwrap(),
        &server.url(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row: ResultRow = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(row.conn_mode, "pipeline-8");
    assert_eq!(
        server
            .counters
            .max_pipelined
            .load(std::sync::atomic::Ordering::SeqCst),
        8
    );
    let from_json: Vec<Entry> = serde_json::from_value(json["timeline"].clone()).unwrap();
    let from_csv: Vec<Entry> = csv::Reader::from_path(&csv)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(from_json, from_csv);
    assert_eq!(from_csv.len(), 2, "{from_csv:?}");
    assert_eq!(from_csv.iter().map(|e| e.ok).sum::<u64>(), row.ok);
    assert!(row.ok > 0);
    let header = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        header.lines().next().unwrap(),
        "second,duration_s,partial,ok,errors,rps,p50_ms,p99_ms"
    );

    // The summary says how req/s spread over the seconds.
    let out = bench_client(&["load", "-d", "2s", "-c", "2", "-k", &server.url()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("per sec   req/s min") && text.contains("over 2 whole seconds"),
        "{text}"
    );
}
