#!/usr/bin/env python3
"""Server costs per request of every server in one suite run, as ratios to one of them.

Usage: scripts/ratio_report.py DIR [BASE]   (BASE: a server name, default epoll)
DIR holds the suite's CSV (bench-client suite --out DIR). Prints a Markdown table per cell:
the median over the repetitions of server CPU per request (us) and of context switches per
request (voluntary + involuntary; per connection in a cell with a connection per request),
each beside its ratio to BASE's median in the same run.
"""
import csv
import glob
import os
import statistics
import sys
from collections import defaultdict


def per_request(row, *fields):
    try:
        return sum(float(row[f]) for f in fields) / float(row["server_requests"])
    except (ValueError, ZeroDivisionError):
        return None


def main():
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    root = sys.argv[1]
    base = sys.argv[2] if len(sys.argv) == 3 else "epoll"
    # table -> server -> [(cpu us/req, ctx/req)]
    data = defaultdict(lambda: defaultdict(list))
    for path in glob.glob(os.path.join(root, "*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                cpu = per_request(row, "server_cpu_user_s", "server_cpu_sys_s")
                ctx = per_request(row, "server_ctx_voluntary", "server_ctx_involuntary")
                if cpu is not None and ctx is not None:
                    data[row["table"]][row["server"]].append((cpu * 1e6, ctx))
    if not data:
        sys.exit(f"no measured rows in {root}/*.csv")
    for table, servers in sorted(data.items()):
        print(f"\n## {table}\n")
        print(f"| server | CPU us/req | x {base} | ctx sw/req | x {base} | reps |")
        print("|---|---:|---:|---:|---:|---:|")
        med = {s: [statistics.median(v[i] for v in rows) for i in (0, 1)]
               for s, rows in servers.items()}
        ref = med.get(base)
        for server, (cpu, ctx) in med.items():
            ratio = lambda x, i: f"{x / ref[i]:.2f}" if ref and ref[i] else "-"
            print(f"| {server} | {cpu:.2f} | {ratio(cpu, 0)} | {ctx:.3f} | {ratio(ctx, 1)} "
                  f"| {len(servers[server])} |")


if __name__ == "__main__":
    main()
