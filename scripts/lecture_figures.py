#!/usr/bin/env python3
"""The lectures' exercise cells, measured as a student runs them (issue 29).

    scripts/lecture_figures.py [--reps R] [--out FILE] [CELL...]
    scripts/lecture_figures.py --reps 5 --out results/lectures/measure.txt

Each cell is a `serve` and a `measure` line of a lecture page, run through
scripts/lecture.sh exactly as the page has them (the server on the server's core, the load on
the client's: `bench-client pin` and `bench-client measure`, the suite's own measurement), R
times, cells interleaved (rep 1 of every cell, then rep 2, ...), so that a slow minute of the
machine is spread over all of them. Writes, per cell: the median, the smallest and the largest
of R runs of the server's CPU per request, context switches per request and req/s; the range
is the noise a student's figure should be read against on a machine like this one.

Environment: ARCHBENCH_BIN (default target/release), as scripts/lecture.sh.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
from datetime import datetime, timezone

# name: (page, serve line, measure line)
CELLS = {
    "iterative-raw-p10": ("01-iterative.md", "serve server-iterative --protocol raw",
                          "measure bench-client load --protocol raw -n 20000 -c 10 $ADDR"),
    "threads-p10": ("03-threads.md", "serve server-threads",
                    "measure bench-client load -n 5000 -c 10 $ADDR"),
    "fork-p10": ("03-threads.md", "serve server-fork",
                 "measure bench-client load -n 5000 -c 10 $ADDR"),
    "threads-k100": ("03-threads.md", "serve server-threads",
                     "measure bench-client load -k -n 100000 -c 100 $ADDR"),
    "epoll-k100": ("09-epoll.md", "serve server-epoll",
                   "measure bench-client load -k -n 100000 -c 100 $ADDR"),
    "epoll-p10": ("09-epoll.md", "serve server-epoll",
                  "measure bench-client load -n 5000 -c 10 $ADDR"),
}

PER_REQUEST = re.compile(r"per request: ([0-9.]+) us CPU, ([0-9.]+) context switches")
RPS = re.compile(r"^req/s\s+([0-9.]+)", re.M)


def run_cell(serve, measure):
    script = f". scripts/lecture.sh >/dev/null && {serve} >/dev/null && {measure}; stop >/dev/null"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    m, r = PER_REQUEST.search(text), RPS.search(text)
    if not m or not r:
        sys.exit(f"no per-request line from {measure!r}:\n{text}")
    return float(m.group(1)), float(m.group(2)), float(r.group(1))


def spread(values, fmt):
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out")
    ap.add_argument("cells", nargs="*", default=list(CELLS))
    args = ap.parse_args()
    load_before = open("/proc/loadavg").read().split()[0]
    runs = {c: [] for c in args.cells}
    for rep in range(args.reps):
        for cell in args.cells:
            _, serve, measure = CELLS[cell]
            runs[cell].append(run_cell(serve, measure))
            print(f"rep {rep + 1} {cell}: {runs[cell][-1]}", file=sys.stderr)
    load_after = open("/proc/loadavg").read().split()[0]
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"# Lecture exercise cells through scripts/lecture.sh (serve, measure), {args.reps} runs each, interleaved",
        f"# {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')} on {platform.node()} ({os.cpu_count()} cores, "
        f"Linux {platform.release()}), git {rev}, binaries {os.environ.get('ARCHBENCH_BIN', 'target/release')}",
        f"# machine load average (1 min) {load_before} before, {load_after} after: other work shared the cores",
        "# median [smallest-largest] of the runs; server CPU and context switches per request from",
        "# bench-client measure (perf counters on the server's tree), the server on core 1, the load on core 0",
        f"{'cell':<20} {'page':<16} {'us CPU/req':>22} {'switches/req':>20} {'req/s':>24}  measure line",
    ]
    for cell in args.cells:
        page, _, measure = CELLS[cell]
        cpu, ctx, rps = zip(*runs[cell])
        lines.append(f"{cell:<20} {page:<16} {spread(cpu, '{:.1f}'):>22} {spread(ctx, '{:.2f}'):>20} "
                     f"{spread(rps, '{:.0f}'):>24}  {measure}")
    text = "\n".join(lines) + "\n"
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
