#!/usr/bin/env python3
"""Summarise the pair ratios of `bench-client compare` runs (their segments.csv files).

    scripts/regress_pairs.py DIR...

For every unit (a server on a cell, in one phase of one run) it prints the pairs' server CPU
per request ratios (candidate / baseline), their geometric mean and their median; then, per
cell, how much those two estimates spread across the units (standard deviation of their logs,
in percent). Run on A/A comparisons, the spread is what identical builds show: the smaller,
the finer a difference the gate can resolve. Used for results/regress/probes/.
"""

import collections
import csv
import glob
import math
import os
import statistics
import sys


def units(paths):
    for path in paths:
        files = [path] if path.endswith(".csv") else sorted(
            glob.glob(os.path.join(path, "**", "segments.csv"), recursive=True))
        for f in files:
            pairs = collections.defaultdict(dict)
            for r in csv.DictReader(open(f)):
                key = (r["phase"], r["server"], r["cell"])
                pairs[key].setdefault(int(r["pair"]), {})[r["side"]] = float(r["cpu_us_per_req"])
            for (phase, server, cell), by_pair in pairs.items():
                logs = [math.log(p["candidate"] / p["baseline"])
                        for _, p in sorted(by_pair.items()) if len(p) == 2]
                if logs:
                    yield f, phase, server, cell, logs


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: scripts/regress_pairs.py DIR... (directories holding segments.csv)")
    spread = collections.defaultdict(lambda: ([], []))
    for f, phase, server, cell, logs in units(sys.argv[1:]):
        geo = math.exp(statistics.mean(logs))
        med = math.exp(statistics.median(logs))
        spread[(server, cell)][0].append(math.log(geo))
        spread[(server, cell)][1].append(math.log(med))
        print(f"{f}  {phase:<14} {server:<10} {cell:<12} pairs {len(logs):>2}  "
              f"geometric mean {geo:.3f}  median {med:.3f}  ratios "
              + " ".join(f"{math.exp(x):.2f}" for x in logs))
    print()
    for (server, cell), (geo, med) in sorted(spread.items()):
        if len(geo) > 1:
            print(f"{server:<10} {cell:<12} units {len(geo):>3}  spread of the estimate across "
                  f"units: geometric mean {100 * statistics.stdev(geo):.1f} %, "
                  f"median {100 * statistics.stdev(med):.1f} %")


if __name__ == "__main__":
    main()
