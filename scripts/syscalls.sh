#!/usr/bin/env bash
# Syscalls and CPU per request of server binaries under the same bench-client loads: kept
# alive at -c 1, -c 100 and -c 1000, and a new connection per request at -c 10 (issue 12).
#
#   scripts/syscalls.sh [-n REQUESTS] [--cpu] [--reps R] BIN...
#
#   scripts/syscalls.sh -n 300 target/release/server-epoll target/release/server-uring
#   scripts/syscalls.sh --cpu --reps 5 -n 200000 target/release/server-{epoll,uring}
#
# Default: strace -c -f attaches to each server once it is warm, for the measured load only;
# the table gives syscalls per answered request, in all and the most frequent ones. strace
# slows the server many times over: never read CPU figures from that run. --cpu runs without
# strace and gives the server's CPU time per request over the measured load (nanoseconds from
# /proc/PID/task/*/schedstat; user/sys split from /proc/PID/stat ticks), servers interleaved
# (A B, then B A, ...) and each cell repeated R times (--reps, default 3), medians.
#
# Server and client run pinned to different cores: SERVER_CPU (default 0), CLIENT_CPU
# (default 1). Environment: BENCH_CLIENT (default target/release/bench-client), LOADS
# (default "k1 k100 k1000 p10": kN kept alive at -c N, pN a new connection per request at
# -c N), OUT (default a new directory under /tmp: raw strace summaries and cpu.tsv).
set -euo pipefail

usage() { sed -n '2,21p' "$0" >&2; exit 2; }
requests=20000 cpu=0 reps=3
bins=()
while [ $# -gt 0 ]; do
  case $1 in
    -n) requests=${2:?}; shift 2 ;;
    --cpu) cpu=1; shift ;;
    --reps) reps=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || usage
client=${BENCH_CLIENT:-target/release/bench-client}
loads=${LOADS:-k1 k100 k1000 p10}
server_cpu=${SERVER_CPU:-0} client_cpu=${CLIENT_CPU:-1}
out=${OUT:-$(mktemp -d /tmp/syscalls.XXXXXX)}
mkdir -p "$out"
for bin in "${bins[@]}" "$client"; do
  [ -x "$bin" ] || { echo "error: $bin is not an executable (cargo build --release)" >&2; exit 2; }
done
if [ $cpu = 0 ] && ! command -v strace >/dev/null; then
  echo "error: strace is not installed (apt-get install -y strace)" >&2
  exit 1
fi

server_pid=
cleanup() { [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

start_server() { # bin -> sets server_pid and addr
  : >"$out/ready"
  taskset -c "$server_cpu" "$1" --max-conns 4096 --idle-timeout 60s >"$out/ready" 2>>"$out/server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$out/ready")
    [ -n "$addr" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: $1 did not start: $(tail -n 2 "$out/server.err")" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || echo "warning: server exit status $?" >&2
  server_pid=
}

load() { # load-name count -> prints the answered requests
  local c=${1#?} mode=(-k)
  # A connection per request: spread over source addresses, or TIME_WAIT runs out of ports.
  [ "${1:0:1}" = p ] && mode=(--source-addrs 8)
  taskset -c "$client_cpu" "$client" load -n "$2" -c "$c" "${mode[@]}" --json "http://$addr/" \
    >"$out/load.json"
  sed -n 's/^  "ok": \([0-9]*\),$/\1/p' "$out/load.json"
}

warmup() { load "$1" $(( requests / 10 > 2000 ? requests / 10 : 2000 )) >/dev/null; }

schedstat_ns() { cat /proc/"$server_pid"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
ticks() { awk '{ sub(/.*\) /, ""); print $12, $13 }' /proc/"$server_pid"/stat; } # utime stime

if [ $cpu = 0 ]; then
  printf '%-14s %-6s %9s %10s  %s\n' server load requests syscalls/req "per request, most frequent"
  for bin in "${bins[@]}"; do
    name=$(basename "$bin")
    for l in $loads; do
      start_server "$bin"
      warmup "$l"
      strace -c -f -qq -o "$out/strace.$name.$l" -p "$server_pid" &
      strace_pid=$!
      until [ "$(awk '/^TracerPid/ { print $2 }' /proc/"$server_pid"/status)" != 0 ]; do sleep 0.05; done
      ok=$(load "$l" "$requests")
      kill -INT "$strace_pid"
      wait "$strace_pid" || true
      stop_server
      # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
      awk -v ok="$ok" -v name="$name" -v l="$l" '
        $1 ~ /^[0-9.]+$/ && $NF != "total" { calls[$NF] = $4; total += $4 }
        END {
          line = ""
          for (k = 0; k < 6; k++) {
            best = ""
            for (s in calls) if (!(s in shown) && (best == "" || calls[s] > calls[best])) best = s
            if (best == "") break
            shown[best] = 1; line = line sprintf("%s %.3f  ", best, calls[best] / ok)
          }
          printf "%-14s %-6s %9d %10.3f  %s\n", name, l, ok, total / ok, line
        }' "$out/strace.$name.$l"
    done
  done
  echo "(strace summaries: $out/strace.*)"
  exit 0
fi

printf 'rep\tserver\tload\trequests\tcpu_ns\tuser_ticks\tsys_ticks\n' >"$out/cpu.tsv"
for ((rep = 1; rep <= reps; rep++)); do
  order=("${bins[@]}")
  if [ $((rep % 2)) = 0 ]; then
    order=(); for ((i = ${#bins[@]} - 1; i >= 0; i--)); do order+=("${bins[$i]}"); done
  fi
  for l in $loads; do
    for bin in "${order[@]}"; do
      start_server "$bin"
      warmup "$l"
      before=$(schedstat_ns) ticks_before=($(ticks))
      ok=$(load "$l" "$requests")
      after=$(schedstat_ns) ticks_after=($(ticks))
      stop_server
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$(basename "$bin")" "$l" "$ok" \
        $((after - before)) $((ticks_after[0] - ticks_before[0])) \
        $((ticks_after[1] - ticks_before[1])) >>"$out/cpu.tsv"
    done
  done
done
printf '%-14s %-6s %12s %8s  %s\n' server load "CPU us/req" "sys %" "each repetition (us/req)"
awk -F'\t' 'NR > 1 {
    key = $2 "\t" $3; v = $5 / $4 / 1000
    vals[key] = vals[key] sprintf(" %.2f", v); n[key]++; all[key, n[key]] = v
    u[key] += $6; s[key] += $7
  }
  END {
    for (key in n) {
      m = n[key]; for (i = 1; i <= m; i++) a[i] = all[key, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      split(key, k, "\t")
      sys = (u[key] + s[key]) ? 100 * s[key] / (u[key] + s[key]) : 0
      printf "%-14s %-6s %12.2f %8.0f %s\n", k[1], k[2], med, sys, vals[key]
    }
  }' "$out/cpu.tsv" | sort -k2,2 -k1,1
echo "(raw: $out/cpu.tsv)"
