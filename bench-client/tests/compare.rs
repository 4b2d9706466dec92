//! `bench-client compare`, the regression gate, end to end on tiny settings: identical builds
//! pass, a slower candidate is a confirmed regression, and what cannot be measured is exit
//! code 2 with a message, never a verdict.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

fn bench_client() -> &'static str {
    env!("CARGO_BIN_EXE_bench-client")
}

fn bin_dir() -> PathBuf {
    let dir = Path::new(bench_client()).parent().unwrap().to_path_buf();
    assert!(
        dir.join("server-epoll").is_file(),
        "server-epoll is not built in {}: run `cargo build --workspace` (make test does)",
        dir.display()
    );
    dir
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archbench-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory whose `server-epoll` is a shell script: `body`, then the real server.
fn wrapped(name: &str, body: &str) -> PathBuf {
    let dir = temp_dir(name);
    let path = dir.join("server-epoll");
    let real = bin_dir().join("server-epoll");
    std::fs::write(
        &path,
        format!("#!/bin/sh\n{body}\nexec '{}' \"$@\"\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Tiny settings: epoll kept alive, 6 pairs of 80 ms segments, one A/A round.
fn compare(baseline: &Path, candidate: &Path, work: &Path, extra: &[&str]) -> Output {
    compare_with(baseline, candidate, work, "6", "80ms", extra)
}

fn compare_with(
    baseline: &Path,
    candidate: &Path,
    work: &Path,
    pairs: &str,
    segment: &str,
    extra: &[&str],
) -> Output {
    Command::new(bench_client())
        .arg("compare")
        .arg("--baseline")
        .arg(baseline)
        .arg("--candidate")
        .arg(candidate)
        .args([
            "--servers",
            "epoll",
            "--cells",
            "keep-alive",
            "--pairs",
            pairs,
            "--confirm-pairs",
            "6",
        ])
        .args([
            "--segment",
            segment,
            "--warmup",
            "30ms",
            "--calibration-rounds",
            "1",
        ])
        .args(["--cpus", "shared", "--seed", "7"])
        .arg("--noise-cache")
        .arg(work.join("cache"))
        .arg("--out")
        .arg(work.join("out"))
        .args(extra)
        .output()
        .unwrap()
}

fn report(work: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(work.join("out/report.json")).unwrap()).unwrap()
}

/// Round 1's comparison of server CPU per request.
fn cpu_of(json: &serde_json::Value) -> serde_json::Value {
    json["round"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "cpu")
        .unwrap()
        .clone()
}

fn phases(work: &Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(work.join("out/segments.csv")).unwrap();
    reader
        .records()
        .map(|r| r.unwrap().get(0).unwrap().to_string())
        .collect()
}

#[test]
fn identical_builds_pass_and_the_noise_floor_is_cached() {
    let work = temp_dir("aa");
    let bins = bin_dir();
    // A 50 % minimum effect: this checks the plumbing, not the machine's noise.
    let out = compare(&bins, &bins, &work, &["--min-effect", "50"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json = report(&work);
    assert_eq!(json["verdict"], "pass");
    assert_eq!(json["calibrated_now"], true);
    let cpu = cpu_of(&json);
    assert!(cpu["baseline"].as_f64().unwrap() > 0.0);
    assert!(cpu["low"].as_f64().unwrap() <= cpu["high"].as_f64().unwrap());
    // 6 pairs of 2 segments in the calibration and in round 1.
    let p = phases(&work);
    assert_eq!(p.iter().filter(|s| *s == "calibration-1").count(), 12);
    assert_eq!(p.iter().filter(|s| *s == "round-1").count(), 12);
    let markdown = std::fs::read_to_string(work.join("out/report.md")).unwrap();
    assert!(markdown.contains("**PASS"), "{markdown}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("**PASS"));
    let cached: Vec<_> = std::fs::read_dir(work.join("cache")).unwrap().collect();
    assert_eq!(cached.len(), 1, "one noise floor file");

    // Again: the floor comes from the cache, no calibration segments.
    let out = compare(&bins, &bins, &work, &["--min-effect", "50"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report(&work)["calibrated_now"], false);
    assert!(!phases(&work).iter().any(|s| s.starts_with("calibration")));
}

#[test]
fn a_slower_candidate_is_a_confirmed_regression() {
    let work = temp_dir("slow");
    // The candidate burns 100 µs of CPU per request: many times epoll's cost.
    let slow = wrapped(
        "slow-bins",
        "for a; do shift; [ \"$a\" = hello ] && a=cpu:100us; set -- \"$@\" \"$a\"; done",
    );
    let out = compare(&bin_dir(), &slow, &work, &["--min-effect", "50"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let json = report(&work);
    assert_eq!(json["verdict"], "regression");
    assert_eq!(json["confirmed"][0], "epoll/keep-alive/cpu");
    assert!(phases(&work).iter().any(|s| s == "confirmation"));
    let cpu = cpu_of(&json);
    assert!(cpu["low"].as_f64().unwrap() > 1.5, "{cpu}");
    // Round 1's table says what the confirmation made of its suspect.
    let markdown = std::fs::read_to_string(work.join("out/report.md")).unwrap();
    assert!(markdown.contains("suspected; **confirmed**"), "{markdown}");
    // Read the other way round, the same change is an improvement, and the gate passes.
    let work = temp_dir("fast");
    let out = compare(&slow, &bin_dir(), &work, &["--min-effect", "50"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json = report(&work);
    let cpu = cpu_of(&json);
    assert_eq!(cpu["change"], "improvement");
}

fn assert_could_not_measure(out: &Output, work: &Path, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("could not measure"), "{stderr}");
    assert!(stderr.contains(says), "expected '{says}' in: {stderr}");
    let json = report(work);
    assert_eq!(json["verdict"], "could-not-measure");
    assert!(json["confirmed"].as_array().unwrap().is_empty());
}

#[test]
fn missing_binaries_or_a_server_that_will_not_start_give_exit_2() {
    let work = temp_dir("missing");
    let out = compare(&work.join("nowhere"), &bin_dir(), &work, &[]);
    assert_could_not_measure(&out, &work, "does not exist");

    let empty = temp_dir("empty-bins");
    let out = compare(&empty, &empty, &work, &[]);
    assert_could_not_measure(&out, &work, "in neither");

    let broken = wrapped("broken-bins", "echo 'cannot start' >&2; exit 1");
    // The calibration (the baseline against itself) passes; the candidate then fails to start.
    let work2 = temp_dir("broken");
    let out = compare(&bin_dir(), &broken, &work2, &[]);
    assert_could_not_measure(&out, &work2, "did not start");
}

#[test]
fn a_server_that_dies_mid_cell_gives_exit_2_not_a_verdict() {
    let work = temp_dir("dies");
    // Killed (SIGKILL) 0.4 s after it starts, in the middle of its segments.
    let dying = wrapped("dying-bins", "(sleep 0.4; kill -KILL $$) &");
    let out = compare_with(&bin_dir(), &dying, &work, "8", "100ms", &[]);
    assert_could_not_measure(&out, &work, "(candidate, keep-alive)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("died") || stderr.contains("errors"),
        "a death mid-cell, not a failed start: {stderr}"
    );
    assert!(!stderr.contains("did not start") && !stderr.contains("failed the check"));
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--servers", "nope"][..],
        &["--cells", "pipelined"],
        &["--min-effect", "150"],
        &["--gate", "latency"],
        &["--pairs", "1"],
        &["--pairs", "5"],
        &["--pairs", "4"],
        &["--confirm-pairs", "7"],
    ] {
        let mut all = vec!["compare", "--baseline", ".", "--candidate", "."];
        all.extend_from_slice(args);
        support::usage_error(&all);
    }
}

#[test]
fn make_regress_refuses_a_bad_revision_and_a_baseline_that_does_not_build() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(
        repo.join(".git").exists(),
        "the tests run in a git checkout"
    );
    let script = repo.join("scripts/regress.sh");

    let out = Command::new(&script).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BASE=<git rev>"));
    let out = Command::new(&script).arg("no-such-rev").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a revision"));

    // A clone with a commit whose manifest is broken: the baseline fails to build (at once,
    // before anything compiles) and the gate says so with exit 2.
    let clone = temp_dir("broken-base");
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@example.invalid",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(
        clone.parent().unwrap(),
        &[
            "clone",
            "-q",
            repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    std::fs::write(clone.join("Cargo.toml"), "[workspace\nnot toml").unwrap();
    git(
        &clone,
        &["commit", "-qam", "a baseline that does not build"],
    );
    git(&clone, &["reset", "-q", "--hard", "HEAD~1"]);
    // The script of this tree, not of the last commit.
    std::fs::copy(&script, clone.join("scripts/regress.sh")).unwrap();
    let out = Command::new(clone.join("scripts/regress.sh"))
        .arg("HEAD@{1}")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not build"), "{stderr}");
    assert!(
        !clone.join("target/regress/base-src").exists(),
        "the baseline's worktree is removed"
    );
    let _ = std::fs::remove_dir_all(&clone);
}
