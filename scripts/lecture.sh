# Helpers for the lectures (docs/lectures). Source it in bash, from the repository root:
#
#   . scripts/lecture.sh
#
# It puts the built binaries on PATH (target/release, or $ARCHBENCH_BIN) and defines:
#
#   serve COMMAND [FLAGS...]   starts a server in the background and waits for its ready line
#                              (`listening on ADDR`); sets ADDR (127.0.0.1:PORT) and SERVER (its
#                              pid). A server started before is stopped first.
#   stop                       SIGTERM to the server; waits for it and prints its exit status
#   measure COMMAND...         runs COMMAND (e.g. a bench-client load), then prints what the
#                              server's process tree spent meanwhile: CPU time (children that
#                              exited included), context switches (of the threads and processes
#                              alive at the end), threads, processes and resident memory; per
#                              request too when COMMAND printed bench-client's "N ok" line
#
# Only reads /proc; changes nothing but the server it starts.

ARCHBENCH_BIN=${ARCHBENCH_BIN:-target/release}
if [ ! -f scripts/lecture.sh ]; then
  echo "lecture.sh: source me from the repository root (cd archbench; . scripts/lecture.sh)" >&2
elif [ ! -x "$ARCHBENCH_BIN/bench-client" ]; then
  echo "lecture.sh: $ARCHBENCH_BIN has no binaries yet: run cargo build --release" >&2
fi
case $ARCHBENCH_BIN in
  /*) _lecture_bin=$ARCHBENCH_BIN ;;
  *) _lecture_bin=$PWD/$ARCHBENCH_BIN ;;
esac
case ":$PATH:" in
  *":$_lecture_bin:"*) ;;
  *) PATH=$_lecture_bin:$PATH ;;
esac

serve() {
  if [ $# -eq 0 ]; then
    echo "usage: serve COMMAND [FLAGS...]   (e.g. serve server-epoll --workload delay:100ms)" >&2
    return 2
  fi
  if [ -n "${SERVER:-}" ]; then
    stop
  fi
  _lecture_out=$(mktemp)
  "$@" >"$_lecture_out" &
  SERVER=$!
  ADDR=
  local _
  for _ in $(seq 100); do
    ADDR=$(sed -n 's/^listening on //p' "$_lecture_out")
    if [ -n "$ADDR" ]; then
      echo "$1: pid $SERVER, listening on $ADDR"
      return 0
    fi
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
  done
  echo "serve: $1 did not start (no ready line)" >&2
  kill -KILL "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  SERVER=
  rm -f "$_lecture_out"
  return 1
}

stop() {
  if [ -z "${SERVER:-}" ]; then
    echo "stop: no server is running" >&2
    return 1
  fi
  kill -TERM "$SERVER"
  wait "$SERVER"
  local status=$?
  echo "server $SERVER exited with status $status"
  SERVER=
  rm -f "$_lecture_out"
  return "$status"
}

# The pids of a process and all its descendants.
_lecture_tree() {
  local pid
  for pid in "$@"; do
    echo "$pid"
    _lecture_tree $(cat /proc/"$pid"/task/*/children 2>/dev/null)
  done
}

# CPU ticks (the tree's user + system time, exited children included), context switches,
# threads, processes and resident KiB of the server's process tree, on one line.
_lecture_costs() {
  local pids
  pids=$(_lecture_tree "$SERVER")
  {
    for pid in $pids; do
      cat /proc/"$pid"/stat 2>/dev/null | awk '{ sub(/.*\) /, ""); print "cpu", $12 + $13 + $14 + $15 }'
      cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { print "ctx", $2 } /^Name/ { print "threads", 1 }'
      awk '/^VmRSS/ { print "rss", $2 }' /proc/"$pid"/status 2>/dev/null
      echo "procs 1"
    done
  } | awk '{ s[$1] += $2 } END { printf "%d %d %d %d %d\n", s["cpu"], s["ctx"], s["threads"], s["procs"], s["rss"] }'
}

measure() {
  if [ -z "${SERVER:-}" ]; then
    echo "measure: no server is running (serve one first)" >&2
    return 1
  fi
  local before after out status ok
  before=$(_lecture_costs)
  out=$("$@")
  status=$?
  after=$(_lecture_costs)
  printf '%s\n' "$out"
  ok=$(printf '%s\n' "$out" | sed -n 's/.* \([0-9][0-9]*\) ok, .*/\1/p')
  echo "$before $after $(getconf CLK_TCK) ${ok:-0}" | awk '{
    cpu_ms = ($6 - $1) * 1000 / $11; ctx = $7 - $2
    printf "server: %.0f ms CPU, %d context switches; now %d threads in %d processes, %.1f MiB resident\n",
      cpu_ms, ctx, $8, $9, $10 / 1024
    if ($12 > 0) printf "per request: %.1f us CPU, %.2f context switches\n", cpu_ms * 1000 / $12, ctx / $12
  }'
  return "$status"
}
