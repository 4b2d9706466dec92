#!/usr/bin/env python3
"""UDP beside TCP (issue 32): server CPU per request, and the loss at rising rates.

    scripts/transport.py [--reps R] [-n REQUESTS] [--duration S] [--rates R1,R2,...] [--out DIR]

For the two models that serve UDP (server-iterative: recvfrom/sendto; server-epoll:
recvmmsg/sendmmsg batches), each started afresh per row on the server's core (SERVER_CPU,
default 1) with the client on another (CLIENT_CPU, default 0):

1. Server CPU per request, closed loop, 10 in flight (iterative kept alive: 1, since it
   serves one connection at a time): TCP with a connection per request (the paper's raw
   protocol), TCP kept alive (HTTP -k), and UDP (`bench-client load --udp`). CPU is the
   server's own, from /proc/PID/task/*/schedstat (nanoseconds on CPU) over the load alone.
2. Loss at rising rates: UDP open loop (`--rate R` for --duration seconds, timeout 200 ms),
   with the server socket's receive buffer (the kernel's default, net.core.rmem_default: the
   servers do not set SO_RCVBUF) and the kernel's drop counters from /proc/net/snmp (`Udp:
   RcvbufErrors`, `InErrors`) over the row. Those counters are machine-wide: a drop at the
   client's socket (4 MiB buffer) counts there too.

--out DIR writes DIR/latest.md and DIR/rows.csv; without it, the table goes to stdout.
ARCHBENCH_BIN: where the binaries are (default target/release).
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

BIN = os.environ.get("ARCHBENCH_BIN", "target/release")
SERVER_CPU = os.environ.get("SERVER_CPU", "1")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
MODELS = ["iterative", "epoll"]


def pin(cpu):
    return ["taskset", "-c", cpu] if (os.cpu_count() or 1) >= 2 else []


def start(model, transport, extra=()):
    argv = pin(SERVER_CPU) + [f"{BIN}/server-{model}", "--transport", transport, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"error: server-{model} --transport {transport} did not start")
    return proc, line.split()[-1]


def stop(proc):
    proc.terminate()
    proc.wait(timeout=15)


def cpu_ns(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def snmp_udp():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def load(args):
    out = subprocess.run(pin(CLIENT_CPU) + [f"{BIN}/bench-client", "load", "--json"] + args,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def answered(result):
    return result["answered"] if "answered" in result else result["ok"]


def cpu_row(model, cell, n):
    """One measurement of server CPU per answered request."""
    transport = "udp" if cell == "udp" else "tcp"
    proc, addr = start(model, transport, ["--protocol", "raw"] if cell == "tcp-per-request" else [])
    c = "1" if (model == "iterative" and cell == "tcp-keep-alive") else "10"
    args = {
        "tcp-per-request": ["-n", str(n), "-c", c, "--protocol", "raw", addr],
        "tcp-keep-alive": ["-n", str(n), "-c", c, "-k", f"http://{addr}/"],
        "udp": ["--udp", "-n", str(n), "-c", c, "--timeout", "200ms", addr],
    }[cell]
    load([str(max(n // 10, 100)) if x == str(n) else x for x in args])  # warm-up: a tenth
    before = cpu_ns(proc.pid)
    result = load(args)
    spent = cpu_ns(proc.pid) - before
    stop(proc)
    ok = answered(result)
    return {"model": model, "cell": cell, "concurrency": c, "answered": ok,
            "lost": result.get("lost", 0), "cpu_us_per_req": spent / 1000 / max(ok, 1)}


def loss_row(model, rate, duration):
    proc, addr = start(model, "udp")
    with open("/proc/sys/net/core/rmem_default") as f:
        rcvbuf = int(f.read())
    before_snmp, before_cpu = snmp_udp(), cpu_ns(proc.pid)
    result = load(["--udp", "--rate", str(rate), "-d", f"{duration}s", "--timeout", "200ms", addr])
    spent = cpu_ns(proc.pid) - before_cpu
    after = snmp_udp()
    stop(proc)
    window = max(result["send_window_s"], 1e-9)
    return {"model": model, "rate": rate, "sent": result["sent"],
            "sent_per_s": round(result["sent"] / window), "answered": result["answered"],
            "lost": result["lost"], "late": result["stray"], "loss_pct": round(100 * result["loss_ratio"], 3),
            "rcvbuf_bytes": rcvbuf,
            "rcvbuf_errors": after["RcvbufErrors"] - before_snmp["RcvbufErrors"],
            "in_errors": after["InErrors"] - before_snmp["InErrors"],
            "cpu_us_per_answer": round(spent / 1000 / max(result["answered"], 1), 2),
            "p99_ms": result["latency_ms"][2]}


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--rates", default="20000,50000,100000,200000,400000")
    ap.add_argument("--out")
    a = ap.parse_args()
    rates = [int(r) for r in a.rates.split(",")]
    cells = ["tcp-per-request", "tcp-keep-alive", "udp"]
    cpu_rows = []
    for rep in range(a.reps):
        order = [(m, c) for m in MODELS for c in cells]
        if rep % 2:
            order.reverse()
        for model, cell in order:
            row = cpu_row(model, cell, a.n)
            row["rep"] = rep + 1
            cpu_rows.append(row)
            print(f"{model:10} {cell:16} rep {rep + 1}: {row['cpu_us_per_req']:.2f} us/req",
                  file=sys.stderr)
    loss_rows = []
    for rep in range(a.reps):
        for model in MODELS:
            for rate in rates:
                row = loss_row(model, rate, a.duration)
                row["rep"] = rep + 1
                loss_rows.append(row)
                print(f"{model:10} rate {rate}: {row}", file=sys.stderr)

    lines = ["# UDP beside TCP", ""]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    lines += [f"Measured {stamp} on `{platform.node()}` ({os.cpu_count()} cores, Linux "
              f"{platform.release()}), git `{git}`, release binaries. Generated by "
              f"`scripts/transport.py --reps {a.reps} -n {a.n} --duration {a.duration} "
              f"--rates {a.rates}`; every row is in `rows.csv` beside this file.", ""]
    lines += ["## Server CPU per request (closed loop)", "",
              f"Median of {a.reps} repetitions [lowest-highest]; server on core {SERVER_CPU}, "
              f"client on core {CLIENT_CPU}.", "",
              "| model | TCP, a connection per request: µs/req | TCP kept alive: µs/req | "
              "UDP: µs/req | UDP / TCP per request | UDP / TCP kept alive | UDP lost |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        by = {c: [r["cpu_us_per_req"] for r in cpu_rows if r["model"] == model and r["cell"] == c]
              for c in cells}
        med = {c: statistics.median(v) for c, v in by.items()}
        lost = sum(r["lost"] for r in cpu_rows if r["model"] == model and r["cell"] == "udp")
        lines.append(f"| {model} | {spread(by['tcp-per-request'])} | {spread(by['tcp-keep-alive'])}"
                     f" | {spread(by['udp'])} | {med['udp'] / med['tcp-per-request']:.2f} | "
                     f"{med['udp'] / med['tcp-keep-alive']:.2f} | {lost} |")
    lines += ["", "-c 10 in every cell, except iterative kept alive at -c 1 (one connection at "
              "a time: the other nine would wait for the first to leave).", "",
              "## Loss at rising rates (UDP, open loop)", "",
              f"{a.duration} s per row, timeout 200 ms. `sent/s` is the rate the client "
              "reached (one sending thread; where it is below the rate asked, the client was "
              "the limit). `late`: answers read after every request was past its deadline. An answer is matched "
              "to the oldest request still inside its 200 ms deadline, so an answer read late "
              "mostly counts for a later request, and the loss shows as the requests left "
              "unanswered at the end. RcvbufErrors and InErrors are the kernel's counters over "
              "the row (machine-wide): loss beyond them is answers the client read too late "
              "(its one core runs the sender and the receiver; where sent/s falls short of the "
              "rate asked, the client is the limit).", "",
              "| model | rate asked | rep | sent/s | sent | answered | lost | late | loss % | receive buffer "
              "(bytes) | RcvbufErrors | InErrors | server CPU µs/answer | p99 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(loss_rows, key=lambda r: (MODELS.index(r["model"]), r["rate"], r["rep"])):
        lines.append(f"| {r['model']} | {r['rate']} | {r['rep']} | {r['sent_per_s']} | {r['sent']} | "
                     f"{r['answered']} | {r['lost']} | {r['late']} | {r['loss_pct']} | {r['rcvbuf_bytes']} | "
                     f"{r['rcvbuf_errors']} | {r['in_errors']} | {r['cpu_us_per_answer']} | "
                     f"{r['p99_ms']:.3f} |")
    text = "\n".join(lines) + "\n"
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "latest.md"), "w") as f:
            f.write(text)
        with open(os.path.join(a.out, "rows.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["kind", "model", "cell_or_rate", "rep", "fields_json"])
            for r in cpu_rows:
                w.writerow(["cpu", r["model"], r["cell"], r["rep"], json.dumps(r)])
            for r in loss_rows:
                w.writerow(["loss", r["model"], r["rate"], r["rep"], json.dumps(r)])
        print(f"wrote {a.out}/latest.md and rows.csv", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
