#!/usr/bin/env python3
"""Evidence for the regression gate (issue 10): how often it cries wolf, how often it catches.

    scripts/regress_evidence.py [--aa 50] [--slow 20] [--out results/regress]

Runs `bench-client compare` many times on this machine, one gate run after another, and
writes what each concluded:

- A/A: the same release binaries as baseline and candidate (`--aa` runs, on --aa-servers and
  both cells). Every exit code 1 is a false alarm.
- Slowdowns: the candidate is the same binaries behind a wrapper that turns the `hello`
  workload into `cpu:D`, a real change of the server's work per request (it spins D of CPU,
  then gives the same answer). Each slowdown is one server and one cell; D is chosen per cell
  so that the added CPU is about the stated share of that cell's cost (--slowdowns), and the
  effect the gate measured (the median of its round-1 ratios over the runs) is reported
  beside it. Exit code 1 is a catch.
- Full: the default gate (every model, both cells) a few times, for its wall time.

Every gate run uses one noise floor, calibrated once at the start (`--recalibrate` in the first
run) and then read from the cache, as a CI runner would. Results: OUT/runs.csv (a row per
gate run), OUT/noise-floor.json (the floor used), OUT/full-report.md (the last full run's
report) and OUT/latest.md (the summary).
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
CLIENT = os.path.join(REL, "bench-client")
WORK = os.path.join(ROOT, "target", "regress", "evidence")

# name -> (server, cell, spin, the share of that cell's CPU per request it is meant to add)
# Sized on this machine from gate runs of each spin (epoll: 6-10 µs per request kept alive,
# 33-45 µs with a connection per request, as the host's load moves it; the cpu workload's own
# step costs about 100 ns). A fixed spin is a larger share when the machine is quick, so the
# effect each run measured is reported beside it.
DEFAULT_SLOWDOWNS = [
    "epoll-ka-10=epoll:keep-alive:cpu:500ns:10",
    "epoll-ka-5=epoll:keep-alive:cpu:250ns:5",
    "epoll-pr-10=epoll:per-request:cpu:2800ns:10",
    "epoll-pr-5=epoll:per-request:cpu:900ns:5",
]


def wrapper_dir(name, spin):
    """A directory of wrappers around every release server that turn `hello` into `spin`."""
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in os.listdir(REL):
        real = os.path.join(REL, f)
        if f.startswith("server-") and os.access(real, os.X_OK) and os.path.isfile(real):
            path = os.path.join(d, f)
            with open(path, "w") as w:
                w.write(
                    "#!/bin/sh\n"
                    f'for a; do shift; [ "$a" = hello ] && a={spin}; set -- "$@" "$a"; done\n'
                    f"exec '{real}' \"$@\"\n"
                )
            os.chmod(path, 0o755)
    return d


def gate(kind, index, candidate, servers, cells, cache, seed, extra):
    out = os.path.join(WORK, "out")
    shutil.rmtree(out, ignore_errors=True)  # never read an earlier run's report
    cmd = [CLIENT, "compare", "--baseline", REL, "--candidate", candidate,
           "--noise-cache", cache, "--out", out, "--seed", str(seed)] + extra
    if servers:
        cmd += ["--servers", servers]
    if cells:
        cmd += ["--cells", cells]
    started = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    cpu = [c for c in report["round"] if c["metric"] == "cpu"]
    row = {
        "kind": kind, "run": index, "seed": seed, "exit_code": p.returncode,
        "verdict": report["verdict"], "wall_s": round(wall, 1),
        "calibrated_now": report["calibrated_now"],
        "suspected": len(report["unconfirmed"]) + len(report["confirmed"]),
        "confirmed": ";".join(report["confirmed"]),
        "pairs": report["pairs"], "confirm_pairs": report["confirm_pairs"],
        "segment_ms": report["segment_ms"],
        "error": report.get("error") or "",
        "units": len(cpu),
        # Units whose interval reached past the threshold without a regression verdict.
        "unresolved": ";".join(
            f"{c['server']}/{c['cell']}" for c in cpu
            if c["change"] == "unchanged" and c["high"] > 1 + c["threshold"]),
        # Per unit: candidate/baseline [low-high] @ threshold.
        "cpu_ratios": ";".join(
            f"{c['server']}/{c['cell']}={c['ratio']:.4f}[{c['low']:.4f}-{c['high']:.4f}]@{c['threshold']:.4f}"
            for c in cpu),
    }
    if p.returncode == 2:
        print(f"  {kind} {index}: could not measure: {row['error']}", file=sys.stderr)
    return row, report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aa", type=int, default=50, help="A/A gate runs")
    ap.add_argument("--aa-servers", default="epoll,threads")
    ap.add_argument("--slow", type=int, default=20, help="gate runs per 10 %% slowdown")
    ap.add_argument("--slow5", type=int, default=20, help="gate runs per 5 %% slowdown")
    ap.add_argument("--slowdowns", default=",".join(DEFAULT_SLOWDOWNS),
                    help="NAME=SERVER:CELL:SPIN:PCT,... (SPIN a workload such as cpu:700ns)")
    ap.add_argument("--full", type=int, default=3, help="runs of the default gate (every model)")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "regress"))
    args = ap.parse_args()
    if not os.access(CLIENT, os.X_OK):
        sys.exit("error: target/release/bench-client is missing (cargo build --release)")
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    cache = os.path.join(WORK, "noise-cache")
    shutil.rmtree(cache, ignore_errors=True)
    rows = []
    seed = args.seed
    started = time.monotonic()

    def record(row):
        rows.append(row)
        print(f"{row['kind']:<12} {row['run']:>3}: exit {row['exit_code']} {row['verdict']:<18} "
              f"{row['wall_s']:6.1f} s  {row['cpu_ratios'][:110]}", file=sys.stderr)

    # One calibration of every unit the evidence uses, as the first gate run's.
    slowdowns = []
    for spec in filter(None, args.slowdowns.split(",")):
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        server, cell, spin, pct = parts[0], parts[1], ":".join(parts[2:-1]), float(parts[-1])
        slowdowns.append((name, server, cell, spin, pct))
    calib_servers = ",".join(sorted(set(args.aa_servers.split(",")) | {s[1] for s in slowdowns}))
    row, _ = gate("calibration", 0, REL, calib_servers, None, cache, seed, ["--recalibrate"])
    record(row)
    for i in range(1, args.aa + 1):
        seed += 1
        record(gate("aa", i, REL, args.aa_servers, None, cache, seed, [])[0])
    for name, server, cell, spin, pct in slowdowns:
        d = wrapper_dir(name, spin)
        for i in range(1, (args.slow if pct >= 10 else args.slow5) + 1):
            seed += 1
            row, _ = gate(f"slow:{name}", i, d, server, cell, cache, seed, [])
            record(row)
    last_full = None
    for i in range(1, args.full + 1):
        seed += 1
        row, report = gate("full-aa", i, REL, None, None, cache, seed, [])
        record(row)
        last_full = os.path.join(WORK, "out", "report.md")
        shutil.copy(last_full, os.path.join(args.out, "full-report.md.tmp"))
        os.replace(os.path.join(args.out, "full-report.md.tmp"), os.path.join(args.out, "full-report.md"))
    total = time.monotonic() - started

    fields = list(rows[0].keys())
    tmp = os.path.join(args.out, "runs.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(args.out, "runs.csv"))
    floor_files = os.listdir(cache)
    if floor_files:
        shutil.copy(os.path.join(cache, floor_files[0]), os.path.join(args.out, "noise-floor.json"))
    summary = summarise(rows, slowdowns, args, total)
    tmp = os.path.join(args.out, "latest.md.tmp")
    with open(tmp, "w") as f:
        f.write(summary)
    os.replace(tmp, os.path.join(args.out, "latest.md"))
    print(summary)


def ratio_of(row, unit):
    for part in row["cpu_ratios"].split(";"):
        if part.startswith(unit + "="):
            return float(part.split("=")[1].split("[")[0])
    return None


def summarise(rows, slowdowns, args, total):
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", ".", ":!results"],
                           capture_output=True, text=True).stdout.strip()
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    lines = [
        "# Regression gate: false alarms and catches on this machine",
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {cpu}, {os.cpu_count()} cores, "
        f"git {rev}{'+dirty' if dirty else ''}, release build, one gate run after another "
        f"({total / 60:.0f} minutes in all). Command: `scripts/regress_evidence.py --aa {args.aa} "
        f"--slow {args.slow} --slow5 {args.slow5} --full {args.full}`. Every run: the gate's "
        f"defaults ({rows[0]['pairs']} ABBA pairs of {rows[0]['segment_ms']} ms segments per "
        "server and cell, the median pair ratio with the sign test's 95 % interval, minimum "
        "effect 5 %, gated on server CPU per request; what round 1 finds beyond the threshold or "
        f"cannot rule out goes to a confirmation round on fresh servers with "
        f"{rows[0]['confirm_pairs']} pairs, which decides), the "
        "noise floor calibrated once by the first run (2 A/A rounds; `noise-floor.json`) and "
        "read from the cache after. Rows: `runs.csv`.",
        "",
        "| runs | servers, cells | change | exit 1 (regression) | exit 0 | exit 2 | suspected in round 1 | measured effect (median ratio) | wall time per run |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]

    def line(kind, what, change, unit=None):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            return
        n = len(rs)
        c = [r["exit_code"] for r in rs]
        effect = "-"
        if unit:
            vals = [v for v in (ratio_of(r, unit) for r in rs) if v is not None]
            if vals:
                effect = f"{statistics.median(vals):.3f} (min {min(vals):.3f}, max {max(vals):.3f})"
        walls = [r["wall_s"] for r in rs]
        lines.append(
            f"| {n} | {what} | {change} | {c.count(1)} | {c.count(0)} | {c.count(2)} | "
            f"{sum(1 for r in rs if r['suspected'])} | {effect} | {statistics.median(walls):.0f} s |")

    line("aa", f"{args.aa_servers}, both cells", "none (A/A)")
    for name, server, cell, spin, pct in slowdowns:
        line(f"slow:{name}", f"{server}, {cell}", f"`{spin}` per request (meant: +{pct:g} %)",
             f"{server}/{cell}")
    line("full-aa", "every model, both cells (the default gate)", "none (A/A)")
    full = [r for r in rows if r["kind"] == "full-aa"]
    if full:
        lines += ["", "Units the default gate left unresolved (the interval reached past the threshold, "
                  "so it could not rule a regression out): "
                  + "; ".join(f"run {r['run']}: {r['unresolved'] or 'none'}" for r in full) + "."]
    calib = [r for r in rows if r["kind"] == "calibration"]
    if calib:
        lines += ["", f"The calibration run (A/A, measuring the floor) took {calib[0]['wall_s']:.0f} s."]
    lines += [
        "",
        "Exit 1 in an A/A row is a false alarm; in a slowdown row, a catch. \"Suspected\" counts "
        "runs whose first round sent a unit to the confirmation round.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
