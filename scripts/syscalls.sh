#!/usr/bin/env bash
# Syscalls and CPU per request of server binaries under the same bench-client loads (issues
# 12 and 14): kept alive at -c 1, -c 100 and -c 1000, and a new connection per request at
# -c 10 (LOADS below).
#
#   scripts/syscalls.sh [-n REQUESTS] [--cpu] [--reps R] [--out DIR] SERVER...
#
#   scripts/syscalls.sh -n 2000 epoll poll
#   LOADS="k10 p10" scripts/syscalls.sh --out results/syscalls -n 2000 iterative fork ...
#   scripts/syscalls.sh --cpu --reps 5 -n 200000 target/release/server-{epoll,uring}
#
# A SERVER is a model name (epoll: $ARCHBENCH_BIN/server-epoll; pool-handoff: server-pool
# --accept handoff), or a path to a binary, with flags after it in the same word if needed
# ("target/release/server-pool --workers 8").
#
# Default: strace -c -f attaches to each server's whole process tree (every thread, and every
# process: prefork's and reuseport's workers, fork's children as they come) once it is warm,
# for the measured load only; the table gives syscalls per answered request, in all and the
# most frequent ones. strace slows every syscall many times over: never read times from that
# run. --out DIR also writes DIR/latest.md (the table, with the machine) and DIR/raw/ (each
# strace summary), each file atomically. --cpu runs without strace and gives the server's CPU
# time per request over the measured load (nanoseconds from /proc/PID/task/*/schedstat;
# user/sys split from /proc/PID/stat ticks), servers interleaved (A B, then B A, ...) and each
# cell repeated R times (--reps, default 3), medians.
#
# Server and client run pinned to different cores where there are two: SERVER_CPU (default
# 0), CLIENT_CPU (default 1). Environment: ARCHBENCH_BIN (default target/release),
# BENCH_CLIENT (default $ARCHBENCH_BIN/bench-client), LOADS (default "k1 k100 k1000 p10": kN
# kept alive at -c N, pN a new connection per request at -c N), OUT (without --out: where the
# raw files go; default a new directory under $TMPDIR or /tmp).
set -euo pipefail

usage() { sed -n '2,30p' "$0" >&2; exit 2; }
requests=20000 cpu=0 reps=3 table=
specs=()
while [ $# -gt 0 ]; do
  case $1 in
    -n) requests=${2:?}; shift 2 ;;
    --cpu) cpu=1; shift ;;
    --reps) reps=${2:?}; shift 2 ;;
    --out) table=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) specs+=("$1"); shift ;;
  esac
done
[ ${#specs[@]} -gt 0 ] || usage
case $requests in ''|*[!0-9]*|0) echo "error: -n wants a positive count, not '$requests'" >&2; exit 2 ;; esac
bin_dir=${ARCHBENCH_BIN:-target/release}
client=${BENCH_CLIENT:-$bin_dir/bench-client}
loads=${LOADS:-k1 k100 k1000 p10}
for l in $loads; do
  case $l in [kp][1-9]*) ;; *) echo "error: LOADS: '$l' is not kN or pN" >&2; exit 2 ;; esac
done
server_cpu=${SERVER_CPU:-0} client_cpu=${CLIENT_CPU:-1}

# Each SERVER as a label and a command line.
names=() commands=()
for spec in "${specs[@]}"; do
  case $spec in
    pool-handoff) names+=(pool-handoff); commands+=("$bin_dir/server-pool --accept handoff") ;;
    */*) read -r path _ <<<"$spec"; name=$(basename "$path"); names+=("${name#server-}"); commands+=("$spec") ;;
    *) names+=("$spec"); commands+=("$bin_dir/server-$spec") ;;
  esac
done
for command in "${commands[@]}" "$client"; do
  read -r path _ <<<"$command"
  [ -x "$path" ] || { echo "error: $path is not an executable (cargo build --release)" >&2; exit 2; }
done
if [ $cpu = 0 ] && ! command -v strace >/dev/null; then
  echo "error: strace is missing: install it (apt-get install -y strace, dnf install strace) and run again" >&2
  exit 1
fi
# One core: no pinning (taskset would refuse the second core).
pin_server=() pin_client=()
if [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c "$server_cpu") pin_client=(taskset -c "$client_cpu")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/syscalls.XXXXXX")
out=${OUT:-$work}
mkdir -p "$out"
server_pid=
cleanup() { [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_server() { # command line -> sets server_pid and addr
  local argv
  read -ra argv <<<"$1"
  : >"$work/ready"
  "${pin_server[@]}" "${argv[@]}" --max-conns 4096 --idle-timeout 60s >"$work/ready" 2>>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$work/ready")
    [ -n "$addr" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  why="did not start: $(tail -n 1 "$work/server.err")"
  echo "warning: ${argv[0]} $why" >&2
  return 1
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
  "${pin_client[@]}" "$client" load -n "$2" -c "$c" "${mode[@]}" --json "http://$addr/" \
    >"$work/load.json" || true
  sed -n 's/^  "ok": \([0-9]*\),$/\1/p' "$work/load.json"
}

# A tenth of the run, at least 2000 requests (or the run's count, if smaller).
warmup() { load "$1" $(( requests / 10 > 2000 ? requests / 10 : (requests < 2000 ? requests : 2000) )) >/dev/null; }

# The server and all its live descendants (threads are traced through -f; a zombie, such as
# a fork child that just served its connection, cannot be attached to).
tree() {
  local pid
  for pid in "$@"; do
    [ "$(awk '{ sub(/.*\) /, ""); print $1 }' /proc/"$pid"/stat 2>/dev/null)" = Z ] && continue
    echo "$pid"
    tree $(cat /proc/"$pid"/task/*/children 2>/dev/null)
  done
}

traced() { # every pid given has a tracer
  local pid
  for pid in "$@"; do
    [ "$(awk '/^TracerPid/ { print $2 }' /proc/"$pid"/status 2>/dev/null)" != 0 ] || return 1
  done
}

schedstat_ns() { cat /proc/"$server_pid"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
ticks() { awk '{ sub(/.*\) /, ""); print $12, $13 }' /proc/"$server_pid"/stat; } # utime stime

load_title() { # kN | pN -> words
  case $1 in
    k*) echo "keep-alive, -c ${1#k}" ;;
    p*) echo "a connection per request, -c ${1#p}" ;;
  esac
}

# One cell's syscalls per request, from counts.tsv (server, load, requests, syscall, calls):
# prints the total and the N most frequent, each with its count per request, tab-separated;
# STYLE md writes them for a Markdown table.
per_request() { # name load N plain|md
  awk -F'\t' -v s="$1" -v l="$2" -v n="$3" -v md="$([ "$4" = md ] && echo 1 || echo 0)" '
    FILENAME == ARGV[1] && $1 == s && $2 == l { why = $3 }
    FILENAME == ARGV[2] && $1 == s && $2 == l { ok = $3; calls[$4] = $5; total += $5 }
    END {
      if (!ok) { printf "NA\t%s\n", why != "" ? why : "no request answered"; exit }
      fmt = md ? "%.2f" : "%.3f"; line = ""
      for (k = 0; k < n; k++) {
        best = ""
        for (c in calls) if (!(c in shown) && (best == "" || calls[c] > calls[best])) best = c
        if (best == "") break
        shown[best] = 1
        line = line (line == "" ? "" : md ? ", " : "  ") (md ? "`" best "`" : best) " " sprintf(fmt, calls[best] / ok)
      }
      printf fmt "\t%s\n", total / ok, line
    }' "$out/notes.tsv" "$out/counts.tsv"
}

# Writes DIR/latest.md from counts.tsv (server, load, requests, syscall, calls) and the raw
# summaries, each file atomically (a temporary name, then rename).
write_table() {
  local dir=$1 rev profile
  mkdir -p "$dir/raw"
  for f in "$out"/strace.*; do
    cp "$f" "$dir/raw/.$(basename "$f").tmp" && mv "$dir/raw/.$(basename "$f").tmp" "$dir/raw/$(basename "$f")"
  done
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo NA)
  [ -z "$(git status --porcelain --untracked-files=no -- . ':!results' 2>/dev/null)" ] || rev="$rev+dirty"
  profile=$(basename "$bin_dir")
  {
    echo "# Syscalls per request"
    echo
    echo "Measured $(date -u +%Y-%m-%dT%H:%M:%SZ) on \`$(hostname)\` ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores, Linux $(uname -r)), git \`$rev\`, $profile binaries, $(strace -V | head -n 1). Generated by \`scripts/syscalls.sh -n $requests\` (\`make syscalls\`); each strace summary is in \`raw/\` beside this file."
    echo
    echo "- **Method:** each server is started afresh per cell (\`--max-conns 4096 --idle-timeout 60s\`), warmed up, then \`strace -c -f\` is attached to its whole process tree (every thread and process, and the children it forks meanwhile) for the measured load alone: $requests requests from \`bench-client load\`, pinned to another core. A figure is the syscalls the tree made over the measured load divided by the requests answered."
    echo "- **Reading it:** these are counts, not times. strace slows the server's every syscall many times over, and not the client, so more requests may arrive between two wake-ups than in a plain run: an event loop's wait calls per request (\`epoll_wait\`, \`poll\`, ...) depend on that, and the busy-polling server's failed calls on how slow it was made. Under \"most frequent\", each syscall's count per request."
    echo
    printf '| model |'
    for l in $loads; do printf ' %s: syscalls/req | most frequent |' "$(load_title "$l")"; done
    printf '\n|---|'
    for _ in $loads; do printf -- '---:|---|'; done
    printf '\n'
    for name in "${names[@]}"; do
      printf '| %s |' "$name"
      for l in $loads; do
        IFS=$'\t' read -r total top < <(per_request "$name" "$l" 5 md)
        printf ' %s | %s |' "$total" "$top"
      done
      printf '\n'
    done
  } >"$dir/.latest.md.tmp"
  mv "$dir/.latest.md.tmp" "$dir/latest.md"
  echo "wrote $dir/latest.md and $dir/raw/"
}

if [ $cpu = 0 ]; then
  : >"$out/counts.tsv"
  : >"$out/notes.tsv"
  printf '%-14s %-6s %9s %10s  %s\n' server load requests syscalls/req "per request, most frequent"
  for i in "${!names[@]}"; do
    name=${names[$i]}
    for l in $loads; do
      if ! start_server "${commands[$i]}"; then
        printf '%s\t%s\t%s\n' "$name" "$l" "$why" >>"$out/notes.tsv"
        printf '%-14s %-6s %s\n' "$name" "$l" "$why"
        continue
      fi
      warmup "$l"
      pids=$(tree "$server_pid" | paste -sd, -)
      strace -c -f -qq -o "$out/strace.$name.$l" -p "$pids" &
      strace_pid=$!
      for _ in $(seq 200); do traced ${pids//,/ } && break; sleep 0.05; done
      if ! traced ${pids//,/ }; then
        echo "error: strace could not attach to $name: ptrace refused (kernel.yama.ptrace_scope is" \
          "$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo unknown); run as root, or" \
          "sudo sysctl kernel.yama.ptrace_scope=0)" >&2
        exit 1
      fi
      ok=$(load "$l" "$requests")
      kill -INT "$strace_pid"
      wait "$strace_pid" || true
      stop_server
      # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
      awk -v ok="${ok:-0}" -v name="$name" -v l="$l" '
        $1 ~ /^[0-9.]+$/ && $NF != "total" { printf "%s\t%s\t%d\t%s\t%d\n", name, l, ok, $NF, $4 }
      ' "$out/strace.$name.$l" >>"$out/counts.tsv"
      IFS=$'\t' read -r total top < <(per_request "$name" "$l" 6 plain)
      printf '%-14s %-6s %9d %10s  %s\n' "$name" "$l" "${ok:-0}" "$total" "$top"
    done
  done
  if [ -n "$table" ]; then
    write_table "$table"
  elif [ "$out" = "$work" ]; then
    trap - EXIT
    echo "(strace summaries: $out/strace.*)"
  fi
  exit 0
fi

printf 'rep\tserver\tload\trequests\tcpu_ns\tuser_ticks\tsys_ticks\n' >"$out/cpu.tsv"
for ((rep = 1; rep <= reps; rep++)); do
  order=("${!names[@]}")
  if [ $((rep % 2)) = 0 ]; then
    order=(); for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("$i"); done
  fi
  for l in $loads; do
    for i in "${order[@]}"; do
      start_server "${commands[$i]}" || exit 1
      warmup "$l"
      before=$(schedstat_ns) ticks_before=($(ticks))
      ok=$(load "$l" "$requests")
      after=$(schedstat_ns) ticks_after=($(ticks))
      stop_server
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "${names[$i]}" "$l" "$ok" \
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
[ "$out" = "$work" ] && trap - EXIT
echo "(raw: $out/cpu.tsv)"
