#!/usr/bin/env python3
"""Compares suite runs of several variants (A/B): server CPU per request per cell and server,
median over every repetition of every round, as a ratio to a base variant.

Usage: scripts/ab_report.py [--min] DIR BASE VARIANT [VARIANT ...]
DIR holds one directory per run, named PRESET-VARIANT-ROUND (as scripts/ab.sh writes them),
each with the suite's CSV. Prints a Markdown table: for each cell and server, the base's
median CPU per request (us), then each variant's ratio to it, with the min-max of the
per-round ratios in brackets (rounds run in the order ABC, CBA to cancel drift). With --min,
the lowest value over all repetitions instead of the median: on a shared machine noise only
adds cost, so the minimum is the steadier estimate of what the code itself costs.
"""
import csv
import glob
import os
import statistics
import sys
from collections import defaultdict


def cpu_per_request(row):
    try:
        cpu = float(row["server_cpu_user_s"]) + float(row["server_cpu_sys_s"])
        return cpu / float(row["server_requests"]) * 1e6
    except (ValueError, ZeroDivisionError):
        return None


def main():
    args = sys.argv[1:]
    pick = statistics.median
    if args[:1] == ["--min"]:
        pick, args = min, args[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    root, base, variants = args[0], args[1], args[2:]
    # (table, server) -> variant -> round -> [us per request]
    data = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in glob.glob(os.path.join(root, "*", "*.csv")):
        run = os.path.basename(os.path.dirname(path))
        _preset, variant, rnd = run.rsplit("-", 2)
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                value = cpu_per_request(row)
                if value is not None and row["partial"] != "true":
                    data[(row["table"], row["server"])][variant][rnd].append(value)
    label = "lowest" if pick is min else "median"
    print(f"| cell | server | {base} us/req ({label}) | " + " | ".join(f"{v} / {base}" for v in variants) + " |")
    print("|---|---|---:|" + "---:|" * len(variants))
    for (table, server) in sorted(data):
        cell = data[(table, server)]
        if base not in cell:
            continue
        base_all = [x for r in cell[base].values() for x in r]
        base_med = pick(base_all)
        parts = []
        for v in variants:
            if v not in cell:
                parts.append("NA")
                continue
            med = pick([x for r in cell[v].values() for x in r])
            rounds = [
                pick(cell[v][r]) / pick(cell[base][r])
                for r in cell[v]
                if r in cell[base]
            ]
            spread = f" [{min(rounds):.3f}-{max(rounds):.3f}]" if rounds else ""
            parts.append(f"{med / base_med:.3f}{spread}")
        print(f"| {table} | {server} | {base_med:.1f} | " + " | ".join(parts) + " |")


if __name__ == "__main__":
    main()
