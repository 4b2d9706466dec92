#!/usr/bin/env python3
"""Memory per idle keep-alive connection, for every model and nginx (issues 12 and 13).

    scripts/idle_memory.py [-n CONNS] [--out FILE] SERVER...
    scripts/idle_memory.py -n 10000 --all target/release --out results/memory/idle-10000.txt
    scripts/idle_memory.py -n 2000 target/debug/server-epoll "target/debug/server-tokio --workers 2"

A SERVER is a server binary, optionally with flags of its own in the same argument, or
`nginx` (one worker, as in the suite). `--all DIR` measures every server-* binary in DIR, in
the README's order, and nginx when installed. Each of our servers gets `--max-conns` CONNS
+ 100 and `--idle-timeout 600s`, and the flags below (MODEL_FLAGS): one worker for tokio and
reuseport, as nginx has; the pools as many workers as they allow (4096), since a pool
holds at most one connection per worker.

For each server: start it, warm it up (5000 requests on one kept-alive connection, which
also cycles the io_uring server's whole buffer ring, so that fixed cost is in the baseline),
read the anonymous PSS of its whole process tree (every process's Pss_Anon from
/proc/PID/smaps_rollup: heap, stacks, anonymous mappings; shared libraries left out, their
share moves whenever another process maps them), then open CONNS connections that each get
one answer and stay open, idle, and read it again. Columns:

- `B/idle conn`: (after - before) / held: what one more idle connection costs the server;
- `B/conn, all`: after / held: the same with the baseline spread over the connections (for
  a pool, whose workers are made at start, this is the figure; nginx's baseline holds its
  preallocated table of `worker_connections` slots);
- `procs`, `threads`: the tree's, with the connections held;
- `kernel B/conn`: growth of the kernel's memory per connection, from /proc/meminfo: its
  slab (sockets, epoll items, task structs), kernel stacks (one per thread, 16 KiB on
  x86-64) and page tables (one set per process). Machine wide, so it also counts the client's
  end of each loopback connection and whatever else runs; none of it is in a process's PSS.
  Given as slab + stacks + page tables, over 100 connections or more.

`--breakdown` adds, under each row, where the tree's anonymous memory is once the
connections are held: its mappings grouped by kind (the heap, the main stack, the writable
data of a binary or library, anonymous mappings of one size: thread stacks, malloc's
arenas), the largest groups first, with how many there are and their dirty PSS (Pss_Dirty:
smaps has no Pss_Anon per mapping, and anonymous pages are dirty once written) per mapping
and per connection held.

A model that cannot hold CONNS connections (the iterative server serves one at a time, a
pool one per worker, select at most 1024 descriptors) is measured with those it held, and
the row says at which connection it stopped and why (no answer within --timeout, or closed).
"""

import argparse
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

GET = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"

# The README's order.
MODELS = ["iterative", "fork", "threads", "pool", "prefork", "epoll", "select", "poll",
          "busypoll", "sigio", "reuseport", "mio", "tokio", "uring"]

# Flags beyond --max-conns and --idle-timeout; {pool} is the most workers a pool allows.
POOL_MAX = 4096
MODEL_FLAGS = {
    "server-tokio": ["--workers", "1"],
    "server-reuseport": ["--workers", "1"],
    "server-pool": ["--workers", "{pool}"],
    "server-prefork": ["--workers", "{pool}"],
}


class UsageError(Exception):
    pass


def tree(pid):
    """The pids of `pid` and all its descendants (threads' children included)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def pss_anon_kb(pid):
    """A process's private anonymous memory (Pss_Anon), or all of its PSS on kernels
    without that line; 0 for a process that has gone."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return fields.get("Pss_Anon", fields.get("Pss", 0))


def threads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def breakdown(pid, held, top=5):
    """Lines describing the tree's anonymous memory grouped by mapping (see the docstring)."""
    groups = {}
    for p in tree(pid):
        key = None
        try:
            with open(f"/proc/{p}/smaps") as f:
                for line in f:
                    fields = line.split()
                    if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        name = os.path.basename(fields[5]) if len(fields) > 5 else "anonymous"
                        key = (name, fields[1], (end - start) // 1024)
                    elif fields[0] == "Pss_Dirty:" and key is not None:
                        count, kb = groups.get(key, (0, 0))
                        groups[key] = (count + 1, kb + int(fields[1]))
        except (FileNotFoundError, ProcessLookupError):
            continue
    lines = []
    for (name, perms, size), (count, kb) in sorted(groups.items(), key=lambda g: -g[1][1])[:top]:
        if kb == 0:
            break
        lines.append(f"    {name} {perms} {size} kB x {count}: {kb} kB, "
                     f"{kb / count:.1f} kB each, {kb * 1024 / held:.0f} B per connection")
    return lines


def sample(pid):
    """(Pss_Anon of the tree in kB, processes, threads)."""
    pids = tree(pid)
    return sum(pss_anon_kb(p) for p in pids), len(pids), sum(threads(p) for p in pids)


KERNEL = ("Slab", "KernelStack", "PageTables")


def kernel_kb():
    """The kernel's slab, kernel stacks and page tables, machine wide, in kB."""
    found = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in KERNEL:
                found[name] = int(rest.split()[0])
    return [found.get(name, 0) for name in KERNEL]


def answer(sock):
    """Reads one whole answer (headers and the 11-byte body)."""
    data = b""
    while b"HelloWorld\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk


def stop(proc):
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if proc is None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Ours:
    """One of our servers: a binary and its flags; the port from its ready line."""

    def __init__(self, spec, conns):
        words = shlex.split(spec)
        self.binary = words[0]
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise UsageError(f"not an executable: {self.binary}")
        self.name = os.path.basename(self.binary)
        pool = str(min(conns + 16, POOL_MAX))
        # The model's flags, unless the argument gives the same flag itself.
        model = MODEL_FLAGS.get(self.name, [])
        extra = [] if model and model[0] in words else [f.format(pool=pool) for f in model]
        self.flags = ["--max-conns", str(conns + 100), "--idle-timeout", "600s"] + extra + words[1:]
        self.proc = None

    def start(self, timeout):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([self.binary] + self.flags, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.err.seek(0)
            why = self.err.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"did not start: {why[0] if why else line.strip()!r}")
        host, port = line.split()[-1].rsplit(":", 1)
        return (host, int(port))

    def stop(self):
        stop(self.proc)


class Nginx:
    """nginx with one worker, as the suite runs it (bench-client/src/suite/server.rs), with
    room for CONNS connections and a long keep-alive timeout."""

    def __init__(self, conns):
        self.binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
        if self.binary is None:
            raise UsageError("nginx is not installed (apt-get install nginx-light)")
        self.name = "nginx"
        self.conns = conns
        self.flags = ["worker_processes 1;", f"worker_connections {max(conns + 100, 1024)};"]
        self.proc = None

    def start(self, timeout):
        self.dir = tempfile.mkdtemp(prefix="idle-memory-nginx-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d = self.dir
        conf = (f"worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n"
                f"events {{ worker_connections {max(self.conns + 100, 1024)}; }}\n"
                f"http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 600s;\n"
                f"  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n"
                f"  uwsgi_temp_path {d}; scgi_temp_path {d};\n"
                f"  server {{ listen 127.0.0.1:{port} backlog=4096; default_type text/plain;\n"
                f"    location / {{ return 200 \"HelloWorld\\n\"; }} }} }}\n")
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([self.binary, "-p", d, "-c", f"{d}/nginx.conf"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start ({self.proc.returncode})")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                # Wait for the worker too: the master accepts nothing itself.
                if len(tree(self.proc.pid)) > 1:
                    return ("127.0.0.1", port)
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def stop(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(server, conns, timeout, detail=False):
    """Returns a dict of the figures, or raises RuntimeError if the server did not start or
    could not even be warmed up."""
    try:
        addr = server.start(timeout)
        warm = socket.create_connection(addr, timeout=timeout)
        try:
            for _ in range(5000):
                warm.sendall(GET)
                answer(warm)
        except OSError as e:
            raise RuntimeError(f"warm-up failed: {e}")
        warm.close()
        time.sleep(0.5)
        (before, _, _), kernel_before = sample(server.proc.pid), kernel_kb()
        held, stopped = [], None
        for i in range(conns):
            try:
                sock = socket.create_connection(addr, timeout=timeout)
                held.append(sock)
                sock.sendall(GET)
                answer(sock)
            except socket.timeout:
                stopped = f"connection {i + 1}: no answer within {timeout:g} s"
            except OSError as e:
                stopped = f"connection {i + 1}: {e}"
            if stopped:
                held.pop().close()
                break
        time.sleep(1)
        (after, procs, nthreads), kernel_after = sample(server.proc.pid), kernel_kb()
        details = breakdown(server.proc.pid, max(len(held), 1)) if detail else []
        for sock in held:
            sock.close()
        n = max(len(held), 1)
        return {
            "held": len(held), "before": before, "after": after,
            "per": (after - before) * 1024 / n, "all": after * 1024 / n,
            "procs": procs, "threads": nthreads,
            "kernel": [(a - b) * 1024 / n for a, b in zip(kernel_after, kernel_before)],
            "stopped": stopped, "breakdown": details,
        }
    finally:
        server.stop()


def servers_in(directory, conns):
    specs = [os.path.join(directory, f"server-{m}") for m in MODELS]
    found = [s for s in specs if os.path.isfile(s)]
    if not found:
        raise UsageError(f"no server binaries in {directory}")
    servers = [Ours(s, conns) for s in found]
    try:
        servers.append(Nginx(conns))
    except UsageError as e:
        print(f"note: {e}; no nginx row", file=sys.stderr)
    return servers


class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--conns", type=int, default=10000)
    parser.add_argument("--all", metavar="DIR", help="every server-* in DIR, and nginx")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for a start, an answer (default 5)")
    parser.add_argument("--out", metavar="FILE", help="also write the table here (atomically)")
    parser.add_argument("--breakdown", action="store_true",
                        help="under each row, its anonymous memory by mapping")
    parser.add_argument("servers", nargs="*", metavar="SERVER")
    args = parser.parse_args()
    try:
        if args.conns < 1:
            raise UsageError("-n must be at least 1")
        if not args.all and not args.servers:
            raise UsageError("name servers, or --all DIR")
        servers = servers_in(args.all, args.conns) if args.all else []
        servers += [Nginx(args.conns) if s == "nginx" else Ours(s, args.conns)
                    for s in args.servers]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < args.conns + 200:
            raise UsageError(f"the descriptor limit ({hard}) is below {args.conns + 200}")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    lines = [
        f"# scripts/idle_memory.py {shlex.join(sys.argv[1:])}",
        f"# {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, git {git_rev()}, "
        f"Linux {os.uname().release}, {os.cpu_count()} CPUs",
        f"{'server':<17} {'held':>6} {'PSS before':>11} {'PSS after':>11} {'B/idle conn':>11} "
        f"{'B/conn, all':>11} {'procs':>6} {'threads':>7} {'kernel B/conn':>23}  flags; note",
    ]
    for line in lines:
        print(line, flush=True)
    failed = False
    for server in servers:
        flags = " ".join(server.flags)
        details = []
        try:
            r = measure(server, args.conns, args.timeout, args.breakdown)
        except RuntimeError as e:
            failed = True
            line = f"{server.name:<17} not measured: {e}  {flags}"
        else:
            details = r["breakdown"]
            note = f"; held {r['held']} of {args.conns}, {r['stopped']}" if r["stopped"] else ""
            # Machine-wide growth means something only over many connections.
            kernel = " + ".join(f"{k:.0f}" for k in r["kernel"]) if r["held"] >= 100 else "-"
            line = (f"{server.name:<17} {r['held']:>6} {r['before']:>8} kB {r['after']:>8} kB "
                    f"{r['per']:>11.0f} {r['all']:>11.0f} {r['procs']:>6} {r['threads']:>7} "
                    f"{kernel:>23}  {flags}{note}")
        for line in [line] + details:
            print(line, flush=True)
            lines.append(line)
    if args.out:
        directory = os.path.dirname(os.path.abspath(args.out))
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as f:
            f.write("\n".join(lines) + "\n")
        os.replace(f.name, args.out)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
