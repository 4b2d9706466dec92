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

/// Runs bench-client, which must succeed (its stderr in the failure message).
fn succeed(args: &[&str]) -> Output {
    let out = bench_client(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    let out = succeed(&[
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
    succeed(&["load", "-n", "10", "--csv", csv_arg, &server.url()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert_eq!(text.matches("run_id").count(), 1);
    assert_eq!(read_csv(&csv).unwrap()[1].ok, 10);
}

#[test]
fn summary_names_the_figures() {
    let server = TestServer::start(Behaviour::Hello);
    let out = succeed(&["load", "-n", "100", "-c", "2", &server.addr.to_string()]);
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
fn bad_usage_is_exit_2_and_names_the_flag() {
    // Malformed command lines: clap's whole message, naming the argument (and suggesting a
    // near name); checks after parsing: one line of ours naming the flag. Nothing runs: the
    // target (port 1) is never contacted, or the message would be about connecting.
    let t = "127.0.0.1:1";
    let cases: &[(&[&str], &[&str])] = &[
        (&["load", "--no-such-flag", t], &["--no-such-flag"]),
        (&["load", "--threds", "2", t], &["--threds", "--threads"]),
        (&["load"], &["<TARGET>"]),
        (&["load", "-n", t], &["--requests"]),
        (&["load", "-c", "0", t], &["--concurrency"]),
        (&["load", "--rate", "-5", t], &["-5", "-- -5"]),
        (&["load", "-d", "5", t], &["--duration", "no unit"]),
        (&["load", "-d", "0s", t], &["--duration", "zero"]),
        (&["load", "-d", "200h", t], &["--duration", "168 hours"]),
        (&["load", "--timeout", "0s", t], &["--timeout", "zero"]),
        (&["load", "--warmup", "0", t], &["--warmup"]),
        (&["load", "https://127.0.0.1:1/"], &["<TARGET>", "https"]),
        (&["load", "::1:8080"], &["<TARGET>", "brackets"]),
        (&["load", "http://127.0.0.1:99999/"], &["<TARGET>", "65535"]),
        (&["load", "-m", "GE T", t], &["--method"]),
        (&["load", "-H", "no colon", t], &["--header"]),
        (&["load", "--expect-status", "99", t], &["--expect-status"]),
        (
            &["load", "-b", "x", "--body-file", "f", t],
            &["--body", "--body-file"],
        ),
        (
            &["load", "--json", "--latency", t],
            &["--json", "--latency"],
        ),
        (&["load", "-q", "--live", t], &["--quiet", "--live"]),
        (&["load", "-n", "5", "-c", "50", t], &["-c 50", "-n 5"]),
        (&["load", "--protocol", "raw", "-k", t], &["-k"]),
        (
            &["load", "--protocol", "raw", "-m", "POST", t],
            &["--method"],
        ),
        (
            &["load", "--protocol", "raw", "-H", "A: b", t],
            &["--header"],
        ),
        (
            &["load", "--protocol", "raw", "--expect-status", "200", t],
            &["--expect-status"],
        ),
        (
            &["load", "--body-file", "/nonexistent/body", t],
            &["--body-file"],
        ),
        (
            &["load", "--csv", "/proc/archbench/runs.csv", t],
            &["--csv"],
        ),
        (
            &["load", "-o", "/proc/archbench/run.json", t],
            &["--output"],
        ),
        (
            &["load", "--timeline", "/proc/archbench/t.csv", t],
            &["--timeline"],
        ),
        (&["load", "-k", "--pipeline", "0", t], &["--pipeline"]),
        (&["load", "-k", "--pipeline", "1025", t], &["--pipeline"]),
        (&["load", "--pipeline", "16", t], &["--pipeline", "-k"]),
        (
            &["load", "--pipeline", "16", "--protocol", "raw", t],
            &["--pipeline"],
        ),
        (&["completions", "tcsh"], &["<SHELL>", "bash"]),
    ];
    for (args, names) in cases {
        let stderr = support::usage_error(args);
        for name in *names {
            assert!(
                stderr.contains(name),
                "{args:?} does not name {name}: {stderr}"
            );
        }
        assert!(!stderr.contains("cannot connect"), "{args:?} ran: {stderr}");
    }
}

#[test]
fn a_csv_with_another_header_is_refused_before_the_run() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("csvcheck");
    let csv = dir.join("other.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    let stderr = support::usage_error(&[
        "load",
        "-n",
        "5",
        "--csv",
        csv.to_str().unwrap(),
        &server.url(),
    ]);
    assert!(
        stderr.contains("--csv") && stderr.contains("different header"),
        "{stderr}"
    );
    assert_eq!(
        server
            .counters
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), "a,b\n1,2\n");
}

#[test]
fn long_durations_are_accepted() {
    // Accepted (exit 1 for the unreachable target, not 2 for the flag): no one-hour cap.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for d in ["90m", "48h"] {
        let out = bench_client(&["load", "-d", d, &format!("127.0.0.1:{port}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "-d {d}: {stderr}");
        assert!(stderr.contains("cannot connect"), "{stderr}");
    }
}

/// A server answering 204, 301 and 404 in turn (whatever the request), keeping every request's
/// bytes (head and body, by its Content-Length).
struct StatusServer {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl StatusServer {
    fn start() -> StatusServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            let answers: [&[u8]; 3] = [
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 301 Moved Permanently\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
            ];
            let mut next = 0;
            for stream in listener.incoming().take(64) {
                let Ok(stream) = stream else { continue };
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request = Vec::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        request.extend_from_slice(line.as_bytes());
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if request.is_empty() {
                        break;
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    request.extend_from_slice(&body);
                    let close = String::from_utf8_lossy(&request).contains("Connection: close");
                    seen.lock().unwrap().push(request);
                    writer.write_all(answers[next % 3]).unwrap();
                    next += 1;
                    if close {
                        break;
                    }
                }
            }
        });
        StatusServer { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}/p?q=1#fragment", self.addr)
    }
}

#[test]
fn statuses_are_counted_and_shown_everywhere() {
    let server = StatusServer::start();
    // Default: 2xx and 3xx are answers, 404 a status error; every status counted.
    let out = bench_client(&["load", "-n", "30", "-c", "1", "-k", "--json", &server.url()]);
    assert_eq!(out.status.code(), Some(1), "errors: exit 1");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["status_codes"],
        serde_json::json!({"204": 10, "301": 10, "404": 10})
    );
    assert_eq!(
        (json["ok"].as_u64(), json["err_status"].as_u64()),
        (Some(20), Some(10))
    );
    assert_eq!(json["expect_status"], "2xx,3xx");
    // The 404's body was read (Content-Length) and the connection kept: 10 closes after it.
    assert_eq!(json["err_malformed"].as_u64(), Some(0));

    // 404 expected too: all answers, exit 0; the terminal shows the distribution.
    let out = bench_client(&[
        "load",
        "-n",
        "30",
        "-c",
        "1",
        "-k",
        "--expect-status",
        "2xx,3xx,404",
        &server.url(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("status    204: 10, 301: 10, 404: 10  (answers: 2xx,3xx,404)"),
        "{text}"
    );
    assert!(text.contains("30 ok, 0 errors"), "{text}");
}

#[test]
fn method_headers_and_body_are_sent_as_asked() {
    let server = StatusServer::start();
    succeed(&[
        "load",
        "-n",
        "2",
        "-c",
        "1",
        "-k",
        "-m",
        "POST",
        "-H",
        "X-Trace: 7",
        "-H",
        "Accept: */*",
        "-b",
        "hello",
        "-T",
        "text/plain",
        "--expect-status",
        "2xx,3xx",
        &server.url(),
    ]);
    let requests = server.requests.lock().unwrap();
    let first = String::from_utf8_lossy(&requests[0]);
    let host = format!("Host: {}\r\n", server.addr);
    for part in [
        "POST /p?q=1 HTTP/1.1\r\n",
        host.as_str(),
        "X-Trace: 7\r\n",
        "Accept: */*\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Length: 5\r\n",
    ] {
        assert!(first.contains(part), "{part:?} missing from {first:?}");
    }
    assert!(first.ends_with("\r\n\r\nhello"), "{first:?}");
    assert!(!first.contains("fragment"), "the fragment is never sent");
    drop(requests);

    // --body-file: the file's bytes, whatever they hold.
    let dir = temp_dir("body");
    let file = dir.join("body.bin");
    std::fs::write(&file, b"\x00\x01binary\r\n").unwrap();
    let server = StatusServer::start();
    succeed(&[
        "load",
        "-n",
        "1",
        "-c",
        "1",
        "-m",
        "PUT",
        "--body-file",
        file.to_str().unwrap(),
        &server.url(),
    ]);
    let requests = server.requests.lock().unwrap();
    assert!(
        requests[0].ends_with(b"Content-Length: 10\r\nConnection: close\r\n\r\n\x00\x01binary\r\n")
    );
}

#[test]
fn json_has_numbers_and_nulls_and_the_csv_keeps_na() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("nulls");
    let (csv, json_file) = (dir.join("runs.csv"), dir.join("run.json"));
    let out = succeed(&[
        "load",
        "-n",
        "50",
        "-c",
        "2",
        "-k",
        "--json",
        "--csv",
        csv.to_str().unwrap(),
        "-o",
        json_file.to_str().unwrap(),
        &server.url(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let from_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(json["ok"], from_file["ok"]);
    // Missing numbers are null, never the string "NA"; present ones are numbers.
    for missing in ["rate", "seed", "duration_s", "server_cpu_s", "steal_pct"] {
        assert!(json[missing].is_null(), "{missing}: {}", json[missing]);
    }
    for present in [
        "rps",
        "lat_p50_ms",
        "lat_min_ms",
        "lat_stdev_ms",
        "client_cpu_pct",
    ] {
        assert!(json[present].is_number(), "{present}: {}", json[present]);
    }
    assert_eq!(json["latency_percentiles"].as_array().unwrap().len(), 8);
    assert!(json["bytes_read"].as_u64().unwrap() >= 50 * 11);
    // Rounded: no binary noise in the figures.
    let rps = json["rps"].to_string();
    assert!(rps.split('.').nth(1).is_none_or(|d| d.len() <= 3), "{rps}");
    // The JSON reads back as the row the CSV holds, where NA stays NA.
    let row: ResultRow = serde_json::from_value(json).unwrap();
    assert_eq!(read_csv(&csv).unwrap(), vec![row]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.lines().nth(1).unwrap().contains(",NA,"), "{text}");
    // No lock file left beside the CSV.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn the_other_protocol_is_refused_in_one_line_without_waiting() {
    // raw against an HTTP server: the pre-flight's probe; HTTP against a raw server: the first
    // answer. Either way well within the default 10 s timeout per request.
    let http = TestServer::start(Behaviour::Hello);
    let raw = TestServer::start(Behaviour::Raw);
    for (args, words) in [
        (
            vec![
                "load",
                "--protocol",
                "raw",
                "-n",
                "20",
                "-c",
                "2",
                &http.addr.to_string(),
            ],
            "leave out --protocol raw",
        ),
        (
            vec!["load", "-n", "20", "-c", "2", &raw.url()],
            "use --protocol raw",
        ),
    ] {
        let started = std::time::Instant::now();
        let stderr = support::usage_error(&args);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        http.counters
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the probe's one request"
    );
    // The right protocol still runs.
    succeed(&[
        "load",
        "--protocol",
        "raw",
        "-n",
        "20",
        "-c",
        "2",
        &raw.addr.to_string(),
    ]);
}

#[test]
fn latency_spectrum_histogram_live_and_quiet() {
    let server = TestServer::start(Behaviour::Hello);
    let out = succeed(&[
        "load",
        "-d",
        "1200ms",
        "-c",
        "2",
        "-k",
        "--latency",
        "--histogram",
        "--live",
        &server.url(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "latency   min ",
        " stdev ",
        "transfer  ",
        "status    200: ",
        "  Latency Distribution (HdrHistogram - Recorded Latency)",
        "  Detailed Percentile spectrum:",
        "#[Mean    =",
        "Response time histogram (ms):",
    ] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with("live         1 s")),
        "{stderr}"
    );

    let dir = temp_dir("quiet");
    let json = dir.join("run.json");
    let out = succeed(&[
        "load",
        "-n",
        "20",
        "-q",
        "-o",
        json.to_str().unwrap(),
        &server.url(),
    ]);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let row: ResultRow = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(row.ok, 20);
}

#[test]
fn every_resolved_address_is_tried_in_order() {
    // localhost may resolve to ::1 before 127.0.0.1; the server listens on the latter only.
    let server = TestServer::start(Behaviour::Hello);
    let url = format!("http://localhost:{}/", server.addr.port());
    let out = succeed(&["load", "-n", "5", "-c", "1", "--json", &url]);
    let row: ResultRow = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row.ok, 5);
}

#[test]
fn provenance_comes_from_the_build_not_the_current_directory() {
    let server = TestServer::start(Behaviour::Hello);
    let out = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(["load", "-n", "5", "--json", &server.url()])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success());
    let row: ResultRow = serde_json::from_slice(&out.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(row.git_rev, bench_client::meta::GIT_REV);
    assert!(
        row.git_rev.starts_with(&head),
        "{} built from {head}",
        row.git_rev
    );
    let profile = if cfg!(debug_assertions) {
        "debug, rustc"
    } else {
        "release, rustc"
    };
    assert!(row.build.starts_with(profile), "{}", row.build);
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    for (shell, marker) in [
        ("bash", "_bench__client()"),
        ("zsh", "#compdef bench-client"),
        ("fish", "complete -c bench-client"),
    ] {
        let out = bench_client(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker) && text.contains("expect-status"),
            "{shell}: {}",
            &text[..200.min(text.len())]
        );
    }
    let dir = temp_dir("man");
    succeed(&["man", "--out", dir.to_str().unwrap()]);
    let load = std::fs::read_to_string(dir.join("bench-client-load.1")).unwrap();
    assert!(
        load.contains(".TH bench-client-load") && load.contains("expect\\-status"),
        "{load}"
    );
    assert!(dir.join("bench-client.1").is_file());
}

#[test]
fn merge_says_what_is_wrong_with_a_file_in_words() {
    let dir = temp_dir("badhist");
    let bad = dir.join("bad.hist");
    std::fs::write(&bad, b"not a histogram").unwrap();
    let out = bench_client(&["merge", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not a latency histogram saved by --save-hist"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Error {") && !stderr.contains("kind:"),
        "a Debug value: {stderr}"
    );
}

#[test]
fn saved_histograms_merge() {
    let server = TestServer::start(Behaviour::Hello);
    let dir = temp_dir("hist");
    let (a, b) = (dir.join("a.hist"), dir.join("b.hist"));
    for (path, n) in [(&a, "120"), (&b, "80")] {
        succeed(&[
            "load",
            "-n",
            n,
            "--save-hist",
            path.to_str().unwrap(),
            &server.url(),
        ]);
    }
    let out = succeed(&["merge", a.to_str().unwrap(), b.to_str().unwrap()]);
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
    let out = succeed(&["load", "-n", "10", "-c", "2", "--json", &server.url()]);
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
    let out = succeed(&[
        "load",
        "-n",
        "100",
        "--warmup",
        "50",
        "--json",
        &server.url(),
    ]);
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
    let out = succeed(&[
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
