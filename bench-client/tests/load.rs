//! The engines against the scriptable test server: counts, concurrency, latency, error kinds,
//! coordinated omission. Every check runs on both engines.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bench_client::load::{self, EngineKind, LoadResult};
use bench_client::LoadSpec;
use support::{Behaviour, TestServer};

/// Picks one error kind's count.
type Kind = fn(&bench_client::ErrorCounts) -> u64;

const ENGINES: [EngineKind; 2] = [EngineKind::Epoll, EngineKind::Tokio];

fn spec(server: &TestServer, n: u64, c: usize) -> LoadSpec {
    LoadSpec {
        target: server.url().parse().unwrap(),
        requests: Some(n),
        duration: None,
        concurrency: c,
        threads: 1,
        keep_alive: false,
        rate: None,
        raw: false,
        timeout: Duration::from_secs(5),
        busy_poll: false,
        spin: Duration::ZERO,
        source_addrs: 0,
        pipeline: 1,
        request: bench_client::request::RequestSpec::default(),
    }
}

fn run(spec: &LoadSpec, engine: EngineKind) -> LoadResult {
    load::run(spec, engine, load::Show::default()).expect("engine runs")
}

/// The result row of a run, with default labels.
fn row_of(spec: &LoadSpec, result: &LoadResult) -> bench_client::output::ResultRow {
    load::row(
        spec,
        result,
        &load::Labels::default(),
        &bench_client::meta::Machine::describe(),
    )
}

/// Open loop: every request the schedule had due is answered, failed, never sent or abandoned,
/// and their sum is in `expected`.
fn assert_accounted(
    s: &bench_client::engine::ThreadStats,
    expected: std::ops::RangeInclusive<u64>,
    engine: EngineKind,
) {
    let accounted = s.ok + s.errors.total() + s.not_sent + s.abandoned;
    assert!(
        expected.contains(&accounted),
        "{engine:?}: {} ok, {} errors, {} not sent, {} abandoned",
        s.ok,
        s.errors.total(),
        s.not_sent,
        s.abandoned
    );
}

#[test]
fn n_is_exact_and_a_connection_per_request_without_k() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Hello);
        let spec = LoadSpec {
            threads: 2,
            ..spec(&server, 503, 7)
        };
        let result = run(&spec, engine);
        assert_eq!(result.stats.ok, 503, "{engine:?}");
        assert_eq!(result.stats.errors.total(), 0, "{engine:?}");
        assert_eq!(
            server.counters.requests.load(Ordering::SeqCst),
            503,
            "{engine:?}"
        );
        assert_eq!(
            server.connections(),
            503,
            "{engine:?}: one connection per request"
        );
        assert_eq!(result.stats.connections, 503);
        assert_eq!(result.stats.latency.len(), 503);
    }
}

#[test]
fn keep_alive_opens_exactly_c_connections() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Hello);
        let spec = LoadSpec {
            keep_alive: true,
            threads: 2,
            ..spec(&server, 1000, 5)
        };
        let result = run(&spec, engine);
        assert_eq!(result.stats.ok, 1000, "{engine:?}");
        assert_eq!(server.counters.requests.load(Ordering::SeqCst), 1000);
        assert_eq!(
            server.connections(),
            5,
            "{engine:?}: keep-alive reuses c connections"
        );
        // Every status tallied, every byte counted (threads merged): each answer is
        // `HTTP/1.1 200 OK` (17 bytes with its CRLF), `Content-Length: 11` (20), the blank line
        // (2) and `HelloWorld\n` (11), 50 bytes.
        let statuses: Vec<_> = result.stats.statuses.iter().collect();
        assert_eq!(statuses, [(200, 1000)], "{engine:?}");
        assert_eq!(result.stats.bytes_read, 1000 * 50, "{engine:?}");
    }
}

#[test]
fn at_most_c_requests_are_in_flight() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Delay(Duration::from_millis(10)));
        let result = run(
            &LoadSpec {
                keep_alive: true,
                ..spec(&server, 60, 4)
            },
            engine,
        );
        assert_eq!(result.stats.ok, 60);
        assert_eq!(
            server.counters.max_in_flight.load(Ordering::SeqCst),
            4,
            "{engine:?}"
        );
    }
}

#[test]
fn busy_poll_gives_the_same_counts() {
    let server = TestServer::start(Behaviour::Hello);
    let spec = LoadSpec {
        keep_alive: true,
        busy_poll: true,
        ..spec(&server, 500, 4)
    };
    let result = run(&spec, EngineKind::Epoll);
    assert_eq!((result.stats.ok, result.stats.errors.total()), (500, 0));
    assert_eq!(server.connections(), 4);
}

#[test]
fn p50_against_a_50ms_server_is_50ms() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Delay(Duration::from_millis(50)));
        let result = run(&spec(&server, 40, 4), engine);
        let p50 = result.stats.latency.value_at_quantile(0.5) as f64 / 1000.0;
        assert!((50.0..56.0).contains(&p50), "{engine:?}: p50 {p50} ms");
    }
}

#[test]
fn each_error_kind_is_counted() {
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for engine in ENGINES {
        let refused = LoadSpec {
            target: format!("127.0.0.1:{refused_port}").parse().unwrap(),
            ..spec(&TestServer::start(Behaviour::Hello), 6, 2)
        };
        let errors = run(&refused, engine).stats.errors;
        assert_eq!(
            (errors.connect, errors.total()),
            (6, 6),
            "{engine:?} refused: {errors:?}"
        );

        let cases: [(Behaviour, Kind); 5] = [
            (Behaviour::ResetMidResponse, |e| e.reset),
            (Behaviour::Status500, |e| e.status),
            (Behaviour::EarlyClose, |e| e.closed),
            (Behaviour::Garbage, |e| e.malformed),
            (Behaviour::Stall, |e| e.timeout),
        ];
        for (behaviour, kind) in cases {
            let server = TestServer::start(behaviour);
            let spec = LoadSpec {
                timeout: Duration::from_millis(200),
                ..spec(&server, 6, 2)
            };
            let result = run(&spec, engine);
            let errors = result.stats.errors;
            assert_eq!(result.stats.ok, 0, "{engine:?} {behaviour:?}");
            assert_eq!(
                (kind(&errors), errors.total()),
                (6, 6),
                "{engine:?} {behaviour:?}: {errors:?}"
            );
        }
    }
}

#[test]
fn open_loop_corrects_for_coordinated_omission() {
    for engine in ENGINES {
        let pause = Duration::from_millis(500);
        let server = TestServer::start(Behaviour::StallOnce { at: 50, pause });
        let spec = LoadSpec {
            requests: None,
            duration: Some(Duration::from_secs(2)),
            rate: Some(100.0),
            keep_alive: true,
            ..spec(&server, 0, 1)
        };
        let result = run(&spec, engine);
        let corrected = result.stats.latency.value_at_quantile(0.99) as f64 / 1000.0;
        let uncorrected = result.stats.latency_uncorrected.value_at_quantile(0.99) as f64 / 1000.0;
        assert!(
            (190..=201).contains(&(result.stats.ok as i64)),
            "{engine:?}: {} ok",
            result.stats.ok
        );
        assert!(
            corrected >= 400.0,
            "{engine:?}: corrected p99 {corrected} ms hides the stall"
        );
        assert!(
            uncorrected < 50.0,
            "{engine:?}: uncorrected p99 {uncorrected} ms"
        );
        assert!(
            result.stats.latency.max() >= 490_000,
            "the stalled request itself"
        );
    }
}

#[test]
fn open_loop_counts_what_a_slow_server_kept_it_from_sending() {
    for engine in ENGINES {
        // One connection, 100 req/s for 1 s, against a server that takes 100 ms a request:
        // about 10 are answered, the schedule's other ~90 are never sent, and the one in
        // flight at the end is abandoned. Nothing vanishes uncounted.
        let server = TestServer::start(Behaviour::Delay(Duration::from_millis(100)));
        let spec = LoadSpec {
            requests: None,
            duration: Some(Duration::from_secs(1)),
            rate: Some(100.0),
            keep_alive: true,
            ..spec(&server, 0, 1)
        };
        let result = run(&spec, engine);
        let s = &result.stats;
        assert_accounted(s, 98..=101, engine);
        assert!(s.not_sent >= 80, "{engine:?}: {} not sent", s.not_sent);
        assert!(s.abandoned <= 1, "{engine:?}");
        let row = row_of(&spec, &result);
        assert!(
            row.notes.contains("under 95% of --rate"),
            "{engine:?}: {}",
            row.notes
        );
    }
}

#[test]
fn failed_requests_are_in_the_all_requests_latency_only() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Status500);
        let result = run(&spec(&server, 20, 2), engine);
        assert_eq!(result.stats.errors.status, 20, "{engine:?}");
        assert!(result.stats.latency.is_empty(), "{engine:?}");
        assert_eq!(result.stats.latency_all.len(), 20, "{engine:?}");
    }
}

#[test]
fn raw_protocol_reads_hello_until_close() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Raw);
        let result = run(
            &LoadSpec {
                raw: true,
                ..spec(&server, 50, 5)
            },
            engine,
        );
        assert_eq!(
            (result.stats.ok, result.stats.errors.total()),
            (50, 0),
            "{engine:?}"
        );
        assert_eq!(server.connections(), 50);
    }
}

#[test]
fn a_duration_run_stops_on_time() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Hello);
        let spec = LoadSpec {
            requests: None,
            duration: Some(Duration::from_millis(500)),
            keep_alive: true,
            ..spec(&server, 0, 2)
        };
        let started = std::time::Instant::now();
        let result = run(&spec, engine);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{engine:?}: {:?}",
            started.elapsed()
        );
        assert_eq!(result.elapsed, Duration::from_millis(500));
        assert!(result.stats.ok > 100, "{engine:?}");
        assert!(result.partial.is_none());
    }
}

#[test]
fn a_dead_target_ends_the_run_as_partial() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = LoadSpec {
        target: format!("127.0.0.1:{port}").parse().unwrap(),
        requests: None,
        duration: Some(Duration::from_secs(30)),
        ..spec(&TestServer::start(Behaviour::Hello), 0, 4)
    };
    let started = std::time::Instant::now();
    let result = run(&spec, EngineKind::Epoll);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up late: {:?}",
        started.elapsed()
    );
    let reason = result.partial.expect("marked partial");
    assert!(reason.contains("stopped accepting"), "{reason}");
    assert!(result.stats.errors.connect >= bench_client::engine::GIVE_UP_AFTER_FAILED_CONNECTS);
}

#[test]
fn source_addrs_spread_connections_over_loopback_addresses() {
    let server = TestServer::start(Behaviour::Hello);
    let result = run(
        &LoadSpec {
            source_addrs: 4,
            ..spec(&server, 40, 2)
        },
        EngineKind::Epoll,
    );
    assert_eq!(result.stats.ok, 40);
    let peers: Vec<String> = server
        .counters
        .peers
        .lock()
        .unwrap()
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(peers, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]);
}

fn pipelined(server_url: &str, n: u64, c: usize, depth: usize) -> LoadSpec {
    LoadSpec {
        target: server_url.parse().unwrap(),
        keep_alive: true,
        pipeline: depth,
        requests: Some(n),
        concurrency: c,
        ..spec(&TestServer::start(Behaviour::Hello), n, c)
    }
}

#[test]
fn pipelined_batches_are_written_at_once_and_answered_before_the_next() {
    for engine in ENGINES {
        for (n, c, threads) in [(1000, 3, 1), (100, 1, 1), (1000, 4, 2)] {
            let server = TestServer::start(Behaviour::Hello);
            let spec = LoadSpec {
                threads,
                ..pipelined(&server.url(), n, c, 16)
            };
            let result = run(&spec, engine);
            let case = format!("{engine:?} -n {n} -c {c} -t {threads}");
            assert_eq!(
                (result.stats.ok, result.stats.errors.total()),
                (n, 0),
                "{case}"
            );
            assert_eq!(result.stats.latency.len(), n, "{case}");
            assert_eq!(
                server.counters.requests.load(Ordering::SeqCst),
                n,
                "{case}: the last batch takes what is left"
            );
            assert_eq!(server.connections(), c as u64, "{case}");
            assert_eq!(
                server.counters.max_pipelined.load(Ordering::SeqCst),
                16,
                "{case}: 16 requests in one write, the next batch only once they are answered"
            );
        }
    }
}

fn server_bin(name: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_bench-client"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{name} is not built in {}: run `cargo build --workspace` (make test does)",
        dir.display()
    );
    bin.to_string_lossy().into_owned()
}

#[test]
fn pipelining_against_server_epoll_answers_every_request() {
    let server = conformance::Server::start(&server_bin("server-epoll"), &[]);
    let url = format!("http://{}/", server.addr);
    for engine in ENGINES {
        // 1003 is no multiple of 16; 1024 deep, a batch's answers (about 130 KiB) come back while
        // it is still being written.
        for (n, c, depth) in [(1003, 4, 16), (5000, 2, 1024)] {
            let spec = pipelined(&url, n, c, depth);
            let started = std::time::Instant::now();
            let result = run(&spec, engine);
            let case = format!("{engine:?} -n {n} -c {c} --pipeline {depth}");
            assert_eq!(
                (result.stats.ok, result.stats.errors.total()),
                (n, 0),
                "{case}: {:?}",
                result.stats.errors
            );
            assert_eq!(result.stats.connections, c as u64, "{case}");
            assert!(started.elapsed() < Duration::from_secs(20), "{case}");
        }
    }
}

#[test]
fn a_server_closing_mid_batch_fails_the_unanswered_requests_at_once() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::CloseAfter(3));
        let spec = LoadSpec {
            timeout: Duration::from_secs(2),
            ..pipelined(&server.url(), 80, 2, 8)
        };
        let started = std::time::Instant::now();
        let result = run(&spec, engine);
        let e = result.stats.errors;
        assert_eq!(
            (result.stats.ok, e.closed, e.total()),
            (30, 50, 50),
            "{engine:?}: each batch of 8 gets 3 answers, the 3rd with Connection: close: {e:?}"
        );
        assert_eq!(
            result.stats.connections, 10,
            "{engine:?}: a new one per batch"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{engine:?}: waited for answers that never come: {:?}",
            started.elapsed()
        );
        assert_eq!(result.stats.latency_all.len(), 80, "{engine:?}");
    }
}

#[test]
fn a_stalled_batch_times_out_whole() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Stall);
        let spec = LoadSpec {
            timeout: Duration::from_millis(200),
            ..pipelined(&server.url(), 8, 1, 4)
        };
        let result = run(&spec, engine);
        let e = result.stats.errors;
        assert_eq!((e.timeout, e.total()), (8, 8), "{engine:?}: {e:?}");
        assert!(result.elapsed < Duration::from_secs(2), "{engine:?}");
    }
}

#[test]
fn open_loop_pipelining_schedules_batches_at_the_request_rate() {
    for engine in ENGINES {
        // 400 req/s over 2 connections in batches of 4: a batch every 20 ms on each.
        let server = TestServer::start(Behaviour::Hello);
        let spec = LoadSpec {
            requests: None,
            duration: Some(Duration::from_secs(1)),
            rate: Some(400.0),
            ..pipelined(&server.url(), 0, 2, 4)
        };
        let result = run(&spec, engine);
        let s = &result.stats;
        assert_accounted(s, 392..=404, engine);
        assert!(s.ok >= 360, "{engine:?}: {} ok", s.ok);
        assert_eq!(server.connections(), 2, "{engine:?}");
        assert_eq!(
            server.counters.max_pipelined.load(Ordering::SeqCst),
            4,
            "{engine:?}"
        );
    }
}

#[test]
fn the_timeline_has_a_row_per_second_that_adds_up_to_the_run() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Delay(Duration::from_millis(50)));
        let spec = LoadSpec {
            requests: None,
            duration: Some(Duration::from_secs(3)),
            keep_alive: true,
            ..spec(&server, 0, 4)
        };
        let result = run(&spec, engine);
        let timeline = &result.timeline;
        assert_eq!(timeline.len(), 3, "{engine:?}: {timeline:?}");
        assert!(timeline.iter().all(|e| !e.partial && e.duration_s == 1.0));
        assert_eq!(
            timeline.iter().map(|e| e.ok).sum::<u64>(),
            result.stats.ok,
            "{engine:?}"
        );
        assert_eq!(timeline.iter().map(|e| e.errors).sum::<u64>(), 0);
        for entry in timeline {
            assert!(entry.ok > 0, "{engine:?}: {entry:?}");
            let p50 = entry.p50_ms.0.expect("answers, so a median");
            assert!(p50 >= 50.0, "{engine:?}: {entry:?}");
            assert!(entry.p99_ms.0.unwrap() >= p50);
        }

        // A count that ends mid-second: the last row says how long it really was.
        let result = run(&spec_n_slow(&server, 30), engine);
        let timeline = &result.timeline;
        let last = timeline.last().expect("a row");
        assert_eq!(timeline.iter().map(|e| e.ok).sum::<u64>(), 30, "{engine:?}");
        assert!(
            last.partial && last.duration_s < 1.0,
            "{engine:?}: {timeline:?}"
        );
        assert!(
            (timeline.len() as f64 - 1.0 + last.duration_s - result.elapsed.as_secs_f64()).abs()
                < 1e-6
        );
    }
}

/// 30 requests one at a time: against a 50 ms server, about 1.5 s.
fn spec_n_slow(server: &TestServer, n: u64) -> LoadSpec {
    LoadSpec {
        keep_alive: true,
        ..spec(server, n, 1)
    }
}

#[test]
fn client_cpu_is_the_load_threads_own_even_in_a_run_of_a_few_ms() {
    // A thread of the same process spins flat out beside a run of a few milliseconds: the
    // process's CPU (RUSAGE_SELF) would be over 100 % of the run and call it client-bound;
    // the load threads' own clocks say what the client did, which was mostly waiting.
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Delay(Duration::from_millis(5)));
        let spinning = Arc::new(AtomicBool::new(true));
        let spinner = {
            let spinning = Arc::clone(&spinning);
            std::thread::spawn(move || {
                while spinning.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let spec = LoadSpec {
            keep_alive: true,
            ..spec(&server, 4, 1)
        };
        let result = run(&spec, engine);
        spinning.store(false, Ordering::Relaxed);
        spinner.join().unwrap();
        assert_eq!(result.stats.ok, 4, "{engine:?}");
        assert!(
            result.elapsed < Duration::from_millis(500),
            "{engine:?}: a short run, {:?}",
            result.elapsed
        );
        let row = row_of(&spec, &result);
        assert!(
            !row.client_bound && row.client_cpu_pct < 50.0,
            "{engine:?}: {:.1}% of {:?} ({:?} of CPU)",
            row.client_cpu_pct,
            result.elapsed,
            result.client_cpu
        );
    }
}

#[test]
fn the_preflight_connects_to_the_first_address_that_accepts() {
    let server = TestServer::start(Behaviour::Hello);
    let dead: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut target: bench_client::target::Target = server.url().parse().unwrap();
    target.addrs = vec![dead, server.addr];
    target.addr = dead;
    let spec = LoadSpec {
        target,
        ..spec(&server, 1, 1)
    };
    assert_eq!(load::preflight(&spec), Ok(server.addr));
    let mut spec = spec;
    spec.target.addrs = vec![dead];
    match load::preflight(&spec) {
        Err(load::Refusal::Unreachable(why)) => {
            assert!(why.contains(&dead.to_string()), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_http_run_against_a_raw_server_stops_on_its_first_answer() {
    for engine in ENGINES {
        let server = TestServer::start(Behaviour::Raw);
        let spec = LoadSpec {
            requests: None,
            duration: Some(Duration::from_secs(20)),
            ..spec(&server, 0, 4)
        };
        let started = std::time::Instant::now();
        let result = run(&spec, engine);
        assert!(result.protocol_mismatch, "{engine:?}");
        assert!(result.partial.is_some(), "{engine:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{engine:?}: {:?}",
            started.elapsed()
        );
    }
}
