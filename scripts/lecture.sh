# Helpers for the lectures (docs/lectures). Source it in bash, from the repository root:
#
#   . scripts/lecture.sh
#
# It puts the built binaries on PATH (target/release, or $ARCHBENCH_BIN) and defines:
#
#   serve COMMAND [FLAGS...]   starts a server in the background, on the server's core (as the
#                              committed figures: `bench-client pin server`), and waits for its
#                              ready line (`listening on ADDR`); sets ADDR (127.0.0.1:PORT) and
#                              SERVER (its pid). A server started before is stopped first.
#   stop                       SIGTERM to the server; waits for it and prints its exit status
#   measure COMMAND...         runs COMMAND (e.g. a bench-client load) on the client's core and
#                              prints what the server's process tree spent meanwhile, measured
#                              by the suite's own code (`bench-client measure`): CPU time and
#                              context switches (perf counters, threads and children that
#                              ended included), the most threads, processes and resident
#                              memory, and per request when COMMAND printed bench-client's
#                              "N ok" line
#
# Changes nothing but the server it starts (and where that server runs).

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
  bench-client pin server -- "$@" >"$_lecture_out" &
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

measure() {
  if [ -z "${SERVER:-}" ]; then
    echo "measure: no server is running (serve one first)" >&2
    return 1
  fi
  bench-client measure --pid "$SERVER" -- "$@"
}
