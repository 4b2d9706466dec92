#!/usr/bin/env python3
"""Memory per idle keep-alive connection of server binaries (issue 12; issue 13 asks < 600 B).

    scripts/idle_memory.py [-n CONNS] BIN...
    scripts/idle_memory.py -n 10000 target/release/server-epoll target/release/server-uring

For each server: start it, warm it up (5000 requests on one kept-alive connection, which
also cycles the io_uring server's whole buffer ring, so that fixed cost is in the baseline),
read its anonymous PSS from /proc/PID/smaps_rollup, then open CONNS connections that each get one
answer and stay open, idle; read PSS again. The difference over CONNS is what one idle
connection costs the server process (its heap and mappings; the
io_uring rings are counted in the baseline). The kernel's share (socket buffers, pending io_uring
requests, epoll items) is not in a process's PSS: the Slab line of /proc/meminfo, machine
wide and so also counting the client's sockets, is given beside it as a rough guide.
"""

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import time

GET = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"


def pss_kb(pid):
    """The process's private anonymous memory (Pss_Anon: heap, stacks, anonymous mappings),
    or all of its PSS on kernels without that line. Shared libraries are left out: their
    share moves whenever another process maps them, by more than what is measured here."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields.get("Pss_Anon", fields["Pss"])


def slab_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return 0


def answer(sock):
    """Reads one whole answer (headers and the 11-byte body)."""
    data = b""
    while b"HelloWorld\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the answer")
        data += chunk


def measure(binary, conns):
    server = subprocess.Popen(
        [binary, "--max-conns", str(conns + 100), "--idle-timeout", "600s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{binary} did not start: {line!r}")
        host, port = line.split()[-1].rsplit(":", 1)
        addr = (host, int(port))
        warm = socket.create_connection(addr)
        for _ in range(5000):
            warm.sendall(GET)
            answer(warm)
        warm.close()
        time.sleep(0.5)
        base, base_slab = pss_kb(server.pid), slab_kb()
        held = []
        for _ in range(conns):
            sock = socket.create_connection(addr)
            sock.sendall(GET)
            answer(sock)
            held.append(sock)
        time.sleep(1)
        after, after_slab = pss_kb(server.pid), slab_kb()
        for sock in held:
            sock.close()
        return base, after, (after_slab - base_slab)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--conns", type=int, default=10000)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.conns + 100:
        sys.exit(f"error: the descriptor limit ({hard}) is below {args.conns + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{'server':<16} {'conns':>6} {'PSS before':>11} {'PSS after':>10} "
          f"{'B/idle conn':>12} {'slab B/conn (machine)':>22}")
    for binary in args.binaries:
        base, after, slab = measure(binary, args.conns)
        per = (after - base) * 1024 / args.conns
        print(f"{os.path.basename(binary):<16} {args.conns:>6} {base:>8} kB {after:>7} kB "
              f"{per:>12.0f} {slab * 1024 / args.conns:>22.0f}")


if __name__ == "__main__":
    main()
