#!/usr/bin/env python3
"""make bench: bench-client against the tools people already use, in one interleaved run.

Targets: nginx (1 worker, Debian's nginx-light) and archbench's server-epoll.
Scenarios, every tool interleaved within each repetition (REPS, default 3):
  keep-alive -c 10 and -c 100, one client thread: wrk -t1  vs  bench-client -t1 -k
  a new connection per request, -c 10:             ab -n N  vs  bench-client -n N
bench-client runs with its epoll engine (default: 50 us spin), its tokio engine, epoll
without the spin (--spin 0s), and epoll with --busy-poll. For every run: req/s and the client's CPU time per request (rusage of the
child), so "faster" and "cheaper" can be told apart. Medians, spread (min-max) and ratios
to the peer tool of the same run go to results/bench/latest.md; raw figures to
results/bench/<date>-<host>.csv.
"""
import csv, json, os, re, resource, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
REPS = int(os.environ.get("REPS", "3"))
DUR = int(os.environ.get("DUR", "3"))
AB_N = int(os.environ.get("AB_N", "20000"))


FAILURES = []


def run_measured(cmd):
    """Runs cmd; returns (stdout, CPU seconds it used). A non-zero exit is recorded as a
    failure of the run (make bench then fails), with the command's last stderr line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no stderr"])[-1]
        FAILURES.append(f"{' '.join(cmd)}: exit code {done.returncode} ({last})")
    return done.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def errors_in(tool, out, pattern):
    """Counts the errors a peer tool reports; any is a failure of the run."""
    n = sum(int(m) for m in re.findall(pattern, out))
    if n:
        FAILURES.append(f"{tool}: {n} errors")
    return n


def wrk(addr, c):
    out, cpu = run_measured(["wrk", "-t1", f"-c{c}", f"-d{DUR}s", f"http://{addr}/"])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    errors = errors_in("wrk", out, r"Non-2xx or 3xx responses:\s+(\d+)") + errors_in(
        "wrk", out, r"(?:connect|read|write|timeout) (\d+)")
    return rps, cpu / max(n, 1), errors


def ab(addr):
    out, cpu = run_measured(["ab", "-q", "-n", str(AB_N), "-c", "10", f"http://{addr}/"])
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    errors = errors_in("ab", out, r"Failed requests:\s+(\d+)") + errors_in(
        "ab", out, r"Non-2xx responses:\s+(\d+)")
    return rps, cpu / AB_N, errors


def bench_client(addr, *args):
    out, cpu = run_measured([os.path.join(BIN, "bench-client"), "load", "--json", *args, f"http://{addr}/"])
    row = json.loads(out)
    errors = sum(row[k] for k in row if k.startswith("err_"))
    return row["rps"], cpu / max(row["ok"], 1), errors


def start_server(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, line.strip().removeprefix("listening on ")


def start_nginx():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        return None, None
    d = tempfile.mkdtemp()
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    conf = f"""worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {d};
  proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen 127.0.0.1:{port} backlog=4096; default_type text/plain;
    location / {{ return 200 "HelloWorld\\n"; }} }} }}"""
    open(f"{d}/nginx.conf", "w").write(conf)
    proc = subprocess.Popen([nginx, "-p", d, "-c", f"{d}/nginx.conf"], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None, None


def main():
    subprocess.run(["bash", "-c", ". scripts/peers.sh && ensure_peers"], cwd=ROOT, check=False)
    subprocess.run(["cargo", "build", "--release", "--workspace", "-q"], cwd=ROOT, check=True)
    have_wrk, have_ab = shutil.which("wrk"), shutil.which("ab")
    targets, procs = [], []
    nginx, addr = start_nginx()
    if nginx:
        targets.append(("nginx", addr)); procs.append(nginx)
    else:
        print("nginx is not installed: its rows are skipped", file=sys.stderr)
    epoll, addr = start_server([os.path.join(BIN, "server-epoll")])
    targets.append(("server-epoll", addr)); procs.append(epoll)
    engines = [("bench-client", ["--engine", "epoll"]), ("bench-client tokio", ["--engine", "tokio"]),
               ("bench-client --spin 0s", ["--spin", "0s"]), ("bench-client --busy-poll", ["--busy-poll"])]
    rows = []
    try:
        for rep in range(1, REPS + 1):
            for name, addr in targets:
                for c in (10, 100):
                    scenario = f"keep-alive -c {c}"
                    if have_wrk:
                        rows.append((name, scenario, "wrk", rep, *wrk(addr, c)))
                    for tool, extra in engines:
                        rows.append((name, scenario, tool, rep,
                                     *bench_client(addr, *extra, "-t", "1", "-c", str(c), "-k", "-d", f"{DUR}s")))
                scenario = "per-request -c 10"
                if have_ab:
                    rows.append((name, scenario, "ab", rep, *ab(addr)))
                for tool, extra in engines:
                    rows.append((name, scenario, tool, rep, *bench_client(addr, *extra, "-c", "10", "-n", str(AB_N))))
                print(f"rep {rep}/{REPS}: {name} done", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate(); p.wait()

    out_dir = os.path.join(ROOT, "results", "bench")
    os.makedirs(out_dir, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    with open(os.path.join(out_dir, f"{stamp}-{socket.gethostname()}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target", "scenario", "tool", "rep", "rps", "client_cpu_us_per_req", "errors"])
        for r in rows:
            w.writerow([*r[:4], f"{r[4]:.1f}", f"{r[5] * 1e6:.2f}", r[6]])

    cells = {}
    for target, scenario, tool, rep, rps, cpu, _errors in rows:
        cells.setdefault((target, scenario), {}).setdefault(tool, []).append((rps, cpu))
    lines = ["# bench-client against wrk and ab", "",
             f"{REPS} interleaved repetitions; keep-alive runs last {DUR} s with one client thread; "
             f"per-request runs send {AB_N} requests. {os.cpu_count()} cores shared by client and server. "
             "req/s: median (min-max); x peer: ratio of medians to the peer tool in the same run; "
             "CPU: the client's own CPU time per request (median).", "",
             "| target | scenario | tool | req/s | x peer | client CPU us/req | x peer |",
             "|---|---|---|---:|---:|---:|---:|"]
    for (target, scenario), tools in cells.items():
        peer = "wrk" if scenario.startswith("keep-alive") else "ab"
        if peer not in tools:
            continue
        p_rps = statistics.median(v[0] for v in tools[peer])
        p_cpu = statistics.median(v[1] for v in tools[peer])
        for tool, vs in tools.items():
            rps = [v[0] for v in vs]
            cpu = statistics.median(v[1] for v in vs)
            lines.append(f"| {target} | {scenario} | {tool} | {statistics.median(rps):,.0f} "
                         f"({min(rps):,.0f}-{max(rps):,.0f}) | {statistics.median(rps) / p_rps:.2f} | "
                         f"{cpu * 1e6:.2f} | {cpu / p_cpu:.2f} |")
    if FAILURES:
        lines += ["", "**This run had failures; its figures are not to be trusted:**", ""]
        lines += [f"- {f}" for f in FAILURES]
    text = "\n".join(lines) + "\n"
    tmp = os.path.join(out_dir, ".latest.md.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(out_dir, "latest.md"))
    print(text)
    if FAILURES:
        print(f"bench: {len(FAILURES)} failures (see above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
