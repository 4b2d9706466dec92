#!/usr/bin/env bash
# A/B comparison of server builds or flags with the suite, drift-balanced: every variant in
# order, then in reverse order (ABC, CBA). Results: OUT/PRESET-VARIANT-ROUND/, then
#   scripts/ab_report.py [--min] OUT BASE VARIANT...
# prints server CPU per request as ratios to BASE.
#
#   scripts/ab.sh OUT 'before=/tmp/old-bin' 'minimal=target/release|--headers minimal' \
#                 'standard=target/release'
#
# Each variant is NAME=BIN_DIR, optionally |SERVER_ARGS. PRESETS (default "paper http"),
# SERVERS (default our seven), HTTP_REPS (default 6) and BENCH_CLIENT (default
# target/release/bench-client) are taken from the environment.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
out=$1
shift
bench_client=${BENCH_CLIENT:-target/release/bench-client}
presets=${PRESETS:-paper http}
servers=${SERVERS:-iterative,fork,threads,pool,prefork,epoll,mio,tokio}
mkdir -p "$out"
run() { # spec round
  local name=${1%%=*} rest=${1#*=} dir args=()
  dir=${rest%%|*}
  [[ $rest == *"|"* ]] && args=(--server-args "${rest#*|}")
  for preset in $presets; do
    local reps=()
    [ "$preset" = http ] && reps=(--reps "${HTTP_REPS:-6}")
    echo "$(date +%T) $name round $2 $preset"
    "$bench_client" suite --preset "$preset" --servers "$servers" "${reps[@]}" \
      --bin-dir "$dir" "${args[@]}" --out "$out/$preset-$name-$2" >"$out/$preset-$name-$2.log" 2>&1
  done
}
for spec in "$@"; do run "$spec" 1; done
for ((i = $#; i >= 1; i--)); do run "${!i}" 2; done
echo "$(date +%T) done: scripts/ab_report.py $out ${1%%=*} ..."
