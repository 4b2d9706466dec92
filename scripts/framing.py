#!/usr/bin/env python3
"""The framing cases of a request-smuggling review (issue 28), sent to our servers and to
nginx, the answers side by side: results/framing/latest.md, the table docs/http.md quotes.

    scripts/framing.py [--bin target/release] [--models epoll,threads,...] [--out DIR]

Each case is sent with `GET /follow-up` pipelined behind it; the cell lists the statuses that
came back in order and how the connection ended (`close`, or `open` when it was still open a
second after the last answer). A refused request must be followed by `close` with the
follow-up unanswered: a server that answers the follow-up guessed where the refused request
ended. For `Expect: 100-continue` the body is sent only after a second; the cell shows what
came in that second first. nginx (Debian's nginx-light, one worker, `return 200`) is started
in a scratch directory on a free port and stopped by its PID; without it, its column says so.
Every model is run (they share one parser: the script checks that they agree, and names any
that differ). Nothing here is timed: it is a conformance table, not a benchmark.
"""

import argparse
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_memory import Nginx, Ours, UsageError  # noqa: E402

FOLLOW_UP = b"GET /follow-up HTTP/1.1\r\nHost: test\r\n\r\n"
CL = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: "

# (what, bytes, the rule). Bytes are sent as they are, then FOLLOW_UP.
CASES = [
    ("`Content-Length: 5` + U+00A0", CL + b"5\xc2\xa0\r\n\r\nhello", "RFC 9110 8.6: `1*DIGIT`"),
    ("`Content-Length: 5` + U+0085", CL + b"5\xc2\x85\r\n\r\nhello", "RFC 9110 8.6"),
    ("U+3000 + `Content-Length: 5`", CL + b"\xe3\x80\x805\r\n\r\nhello", "RFC 9110 8.6"),
    ("`Content-Length: +5`", CL + b"+5\r\n\r\nhello", "RFC 9110 8.6"),
    ("`Content-Length: 5, 5`", CL + b"5, 5\r\n\r\nhello", "RFC 9110 8.6: MAY accept, we refuse"),
    ("two `Content-Length: 5`", CL + b"5\r\nContent-Length: 5\r\n\r\nhello",
     "RFC 9110 8.6: MAY accept, we refuse"),
    ("`Content-Length: 5` and `6`", CL + b"5\r\nContent-Length: 6\r\n\r\nhello", "RFC 9112 6.3"),
    ("`Content-Length:` SP HTAB `5` HTAB", CL.rstrip(b" ") + b" \t5\t\r\n\r\nhello",
     "RFC 9110 5.5: OWS is SP and HTAB"),
    ("`Transfer-Encoding: chunked`", b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "not implemented: 501 (RFC 9112 6.1)"),
    ("`CONNECT x:443 HTTP/1.1`", b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
     "RFC 9110 9.3.6: a 2xx opens a tunnel"),
    ("`PUT` with a body", b"PUT / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi",
     "RFC 9110 15.5.6: 405 lists `Allow`"),
    ("`BREW` (not a method of RFC 9110)", b"BREW / HTTP/1.1\r\nHost: test\r\n\r\n",
     "RFC 9110 15.6.2: 501"),
    ("HTTP/1.1 without `Host`", b"GET / HTTP/1.1\r\n\r\n", "RFC 9112 3.2: MUST 400"),
    ("two `Host`, the same", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "RFC 9112 3.2"),
    ("two `Host`, different", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "RFC 9112 3.2"),
    ("`Host: a b`", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "RFC 9112 3.2, RFC 3986 3.2.2"),
    ("`Host: [::1]:8080`", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "RFC 3986 3.2.2"),
    ("HTTP/1.0 without `Host`", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     "RFC 9112 3.2: 1.1 only"),
    ("`GET / HTTP/1.2`", b"GET / HTTP/1.2\r\nHost: test\r\n\r\n",
     "RFC 9110 2.5: SHOULD serve as 1.1"),
    ("`GET / HTTP/2.0`", b"GET / HTTP/2.0\r\nHost: test\r\n\r\n", "RFC 9110 15.6.6: 505"),
    ("`GET / HTTP/1.10`", b"GET / HTTP/1.10\r\nHost: test\r\n\r\n",
     "RFC 9112 2.3: one digit each"),
    ("a 8 KiB target", b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: test\r\n\r\n",
     "RFC 9112 3: 414"),
    ("65 fields (within 1 KiB)", b"GET / HTTP/1.1\r\nHost: test\r\n"
     + b"".join(b"x%d:\r\n" % i for i in range(65)) + b"\r\n", "no count limit, a size limit"),
    ("fields over 8 KiB", b"GET / HTTP/1.1\r\nHost: test\r\nX: " + b"a" * 8192 + b"\r\n\r\n",
     "RFC 6585 5: 431"),
]

EXPECT = b"POST / HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"


def statuses(data):
    """The status codes of the responses in `data`, in order (100 included): each head is read
    to its empty line, then its `Content-Length` of body is skipped."""
    out = []
    while data.startswith(b"HTTP/") and b"\r\n\r\n" in data:
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        out.append(lines[0][9:12].decode(errors="replace"))
        length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith(b"content-length:")), 0)
        data = data[length:]
    if data:
        out.append(f"{len(data)} more bytes")
    return out


def read_all(sock, quiet):
    """Reads until the peer closes (True) or nothing came for `quiet` seconds (False)."""
    data = b""
    sock.settimeout(quiet)
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def cell(data, closed, prefix=""):
    codes = ", ".join(statuses(data)) or "nothing"
    return f"{prefix}{codes}, {'close' if closed else 'open'}"


def run_case(addr, request):
    with socket.create_connection(addr, timeout=5) as sock:
        try:
            sock.sendall(request + FOLLOW_UP)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = read_all(sock, 1.0)
    return cell(data, closed)


def run_expect(addr):
    with socket.create_connection(addr, timeout=5) as sock:
        sock.sendall(EXPECT)
        first, closed = read_all(sock, 1.0)
        prefix = f"in 1 s: {', '.join(statuses(first)) or 'nothing'}; then "
        if closed:
            return cell(first, True)
        sock.sendall(b"hello" + FOLLOW_UP)
        data, closed = read_all(sock, 1.0)
    return cell(data, closed, prefix)


def table(addr):
    return [run_case(addr, request) for _, request, _ in CASES] + [run_expect(addr)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default="target/release", help="where the server-* binaries are")
    parser.add_argument("--models", default=None,
                        help="comma-separated models (default: every server-* in --bin)")
    parser.add_argument("--out", default="results/framing", help="directory for latest.md")
    args = parser.parse_args()
    if args.models:
        names = [f"server-{m}" for m in args.models.split(",")]
    else:
        names = sorted(n for n in os.listdir(args.bin) if n.startswith("server-")
                       and os.access(os.path.join(args.bin, n), os.X_OK) and "." not in n)
    if not names:
        raise UsageError(f"no server-* binaries in {args.bin} (cargo build --release)")
    ours = {}
    for name in names:
        server = Ours(os.path.join(args.bin, name), 16)
        try:
            ours[name] = table(server.start(10))
        except RuntimeError as e:
            print(f"{name}: {e}; skipped", file=sys.stderr)
        finally:
            server.stop()
    if not ours:
        raise UsageError("no server started")
    try:
        nginx = Nginx(16)
        try:
            theirs = table(nginx.start(10))
        finally:
            nginx.stop()
    except (UsageError, RuntimeError) as e:
        theirs = None
        print(f"nginx: {e}; its column is left out", file=sys.stderr)
    first = next(iter(ours.values()))
    differ = [n for n, rows in ours.items() if rows != first]
    what = [c[0] for c in CASES] + ["`Expect: 100-continue`, body after 1 s"]
    rules = [c[2] for c in CASES] + ["RFC 9110 10.1.1: a 100 or a final status"]
    lines = [
        "# HTTP framing: our servers and nginx on the same bytes",
        "",
        f"Made by `scripts/framing.py` on {time.strftime('%Y-%m-%d')}; binaries from "
        f"`{args.bin}`. Each case is followed by a pipelined `GET /follow-up`; a cell lists the "
        "statuses in order, then whether the connection was closed or still open a second "
        "after the last answer. A refused request must end in `close` with the follow-up "
        "unanswered.",
        "",
        f"Our servers: {len(ours)} ({', '.join(n.removeprefix('server-') for n in ours)}); "
        + ("all answered alike." if not differ else f"these differ from the first: {differ}."),
        "nginx: " + ("Debian's nginx-light, one worker, `return 200`." if theirs
                     else "not installed; its column is left out."),
        "",
        "| case | rule | ours | nginx |" if theirs else "| case | rule | ours |",
        "|---|---|---|---|" if theirs else "|---|---|---|",
    ]
    for i, case in enumerate(what):
        row = f"| {case} | {rules[i]} | {first[i]} |"
        lines.append(row + (f" {theirs[i]} |" if theirs else ""))
    for name in differ:
        lines += ["", f"{name}:", ""] + [f"- {what[i]}: {r}" for i, r in enumerate(ours[name])
                                         if r != first[i]]
    os.makedirs(args.out, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out, delete=False, suffix=".tmp") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(f.name, os.path.join(args.out, "latest.md"))
    print("\n".join(lines))
    return 1 if differ else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as e:
        print(f"framing.py: {e}", file=sys.stderr)
        sys.exit(2)
