#!/usr/bin/env python3
"""Holds N idle keep-alive HTTP connections open to a server while a command runs beside them,
and measures the server's CPU over the command: the O(n) cost of select and poll made visible
(each wake-up pays for every idle connection; epoll's does not).

Usage:
  scripts/idle_load.py [--idle N] [--reps R] (--server BIN)... [--server-arg ARG]... -- COMMAND...
  scripts/idle_load.py [--idle N] --addr HOST:PORT -- COMMAND...

`{addr}` in COMMAND is replaced by the server's HOST:PORT. Each idle connection sends one
request, reads its answer and then stays idle, open, until the command is over.

With --server, each binary is started on 127.0.0.1:0 with `--idle-timeout 60m` (the idle
connections outlive the command) and `--max-conns` N + 1024 (the default cap, 1024, would
leave the command's connections waiting in the backlog behind the idle ones), then the
--server-arg flags (which may override both); the idle connections are
opened, the command runs, and the server's CPU time (user + system, /proc/PID/stat) over the
command alone is read; then the server gets SIGTERM. Repetitions are interleaved across the
servers (1 of each, then 2, ...). When the command is `bench-client load --json ...`, its row
gives the requests answered, and the summary shows the server CPU per request (median over the
repetitions) and its ratio to the first server's.

With --addr, the server is someone else's: only the idle connections and the command (the
server's idle timeout must outlast the command).

Connections the server refuses (select past FD_SETSIZE) are counted, not held, and reported.
"""
import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
READY = "listening on "


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage=__doc__.split("\n\n")[1].split("\n", 1)[1],
    )
    parser.add_argument("--idle", type=int, default=1000, help="idle connections (default 1000)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions per server (default 1)")
    parser.add_argument("--server", action="append", default=[], help="server binary (repeatable)")
    parser.add_argument("--server-arg", action="append", default=[], help="flag for every server")
    parser.add_argument("--addr", help="an already running server's HOST:PORT")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND... ({addr} replaced)")
    args = parser.parse_args()
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command after --")
    if bool(args.server) == bool(args.addr):
        parser.error("give --server (one or more) or --addr")
    if args.idle < 0 or args.reps < 1:
        parser.error("--idle must be >= 0 and --reps >= 1")
    return args


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"error: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def answered(sock):
    """Reads one answer to REQUEST; False if the server closed the connection instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {head[:40]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        body += chunk
    return True


def open_idle(host, port, count):
    """Opens `count` connections, one request each; returns (held sockets, refused count)."""
    held, refused = [], 0
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        try:
            sock.sendall(REQUEST)
            ok = answered(sock)
        except (ConnectionResetError, BrokenPipeError):
            ok = False
        except socket.timeout:
            sys.exit(
                f"error: idle connection {len(held) + refused + 1} got no answer within 10 s "
                "(held back by the server's --max-conns?)"
            )
        if ok:
            held.append(sock)
        else:
            refused += 1
            sock.close()
    return held, refused


def still_open(held):
    """How many held connections the server has not closed."""
    open_now = 0
    for sock in held:
        sock.setblocking(False)
        try:
            open_now += sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            open_now += 1
        except OSError:
            pass
    return open_now


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered_requests(stdout):
    """The `ok` count of a bench-client --json row in the command's output, if there is one."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        row, _ = json.JSONDecoder().raw_decode(stdout[start:])
        return int(row["ok"])
    except (ValueError, KeyError, TypeError):
        return None


def run_command(command, addr):
    argv = [part.replace("{addr}", addr) for part in command]
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    return done.returncode, done.stdout


def start_server(binary, idle, extra):
    cap = str(idle + 1024)
    argv = [binary, "--addr", "127.0.0.1:0", "--idle-timeout", "60m", "--max-conns", cap, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith(READY):
        proc.kill()
        sys.exit(f"error: {binary} printed {line!r}, not a ready line")
    host, port = line[len(READY):].rsplit(":", 1)
    return proc, host, int(port)


def measure(binary, args, rep):
    proc, host, port = start_server(binary, args.idle, args.server_arg)
    try:
        held, refused = open_idle(host, port, args.idle)
        before = cpu_seconds(proc.pid)
        started = time.monotonic()
        code, stdout = run_command(args.command, f"{host}:{port}")
        wall = time.monotonic() - started
        cpu = cpu_seconds(proc.pid) - before
        kept = still_open(held)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for sock in held:
        sock.close()
    requests = answered_requests(stdout)
    name = os.path.basename(binary)
    if requests is None:
        per_request = "requests unknown (not bench-client --json?)"
    elif requests == 0:
        per_request = "no request answered"
    else:
        per_request = f"{requests} answered, {cpu / requests * 1e6:.2f} us/request"
    print(
        f"{name} rep {rep}: idle held {len(held)}, refused {refused}, still open after {kept}; "
        f"command exit {code} in {wall:.1f} s; server CPU {cpu:.2f} s, {per_request}",
        flush=True,
    )
    return cpu / requests if requests else None


def main():
    args = parse_args()
    raise_fd_limit(args.idle + 1024)
    if args.addr:
        host, port = args.addr.rsplit(":", 1)
        held, refused = open_idle(host, int(port), args.idle)
        print(f"idle held {len(held)}, refused {refused}", flush=True)
        code, stdout = run_command(args.command, args.addr)
        sys.stdout.write(stdout)
        print(f"command exit {code}; idle still open after: {still_open(held)}", flush=True)
        return code
    costs = {binary: [] for binary in args.server}
    for rep in range(1, args.reps + 1):
        for binary in args.server:
            cost = measure(binary, args, rep)
            if cost is not None:
                costs[binary].append(cost)
    base = costs[args.server[0]]
    base_median = statistics.median(base) if base else None
    print(f"\nserver CPU per request beside {args.idle} idle connections, median of {args.reps}:")
    for binary, values in costs.items():
        if not values:
            print(f"  {os.path.basename(binary)}: no request answered, or no count")
            continue
        median = statistics.median(values)
        ratio = f", {median / base_median:.2f} x {os.path.basename(args.server[0])}" if base_median else ""
        print(f"  {os.path.basename(binary)}: {median * 1e6:.2f} us{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
