"""HTTP/2: maitre beside granian (``--http 2``) under h2load, and maitre over HTTP/1.1.

    python3 bench/h2.py                        # hello, flask: 3 rounds of 5 s (~7 min)
    DURATION=3 ROUNDS=1 python3 bench/h2.py    # a quick look
    APPS=hello RUNS=maitre:h2c,granian:h2c STREAMS=100 python3 bench/h2.py
    python3 bench/h2.py --report bench/results/h2-A.tsv h2-B.tsv   # rounds pooled

A measurement, not a test: it never fails on a number. For each app of bench/apps.py
named in APPS (default ``hello,flask``), each run of RUNS (``SERVER:PROTOCOL``, by
default all of these):

- ``maitre:h2c``, ``granian:h2c``: HTTP/2 over cleartext TCP with prior knowledge
  (``h2load http://...``, which sends the connection preface straight away);
- ``maitre:h2``, ``granian:h2``: HTTP/2 over TLS, ALPN h2 (``h2load https://...``);
- ``maitre:h1``, ``maitre:h1tls``: HTTP/1.1 (``h2load --h1``), over cleartext and
  over TLS, with maitre's ``http2`` off: what the same load costs without HTTP/2.

Every run starts the server afresh with bench/run_server.py (env ``HTTP2=1`` for the
HTTP/2 runs: maitre ``http2``, granian ``--http 2``; ``TLS_CERT``/``TLS_KEY`` for the
TLS ones; THREADS application threads, default 4; granian ``--workers 1``) on a new
port of 127.0.0.1, pinned to CPU SERVER_CPU (``taskset``; its processes inherit it).
One request with curl (``--http2-prior-knowledge``, ``--http2`` or ``--http1.1``) must
answer 200, the app's exact body, and the HTTP version asked for, or the server
``fails`` that run with the reason and is not timed. Then, pinned to CPU CLIENT_CPU:

    h2load -t1 -DDURATION -cCONNECTIONS -mM URL             # HTTP/2, each M of STREAMS
    h2load -t1 -DDURATION -cH1_CONNECTIONS -m1 --h1 URL     # HTTP/1.1

Ten connections with ten streams in flight on each, and with a hundred (maitre's
SETTINGS_MAX_CONCURRENT_STREAMS; granian's is 200): how a server does when a
connection carries a few requests at a time, and when it carries many. HTTP/1.1 has
a hundred connections with one request in flight on each (no pipelining; maitre's
``connection_limit`` is 100), as many requests in flight as HTTP/2's first load.
Just before and after h2load the server's CPU time (``utime`` +
``stime`` of ``/proc/PID/stat``, summed over the server and its descendants) and the
client core's line of ``/proc/stat`` are read, and h2load's own CPU time (its
rusage): that gives the server's CPU seconds per 1,000 requests, and the share of a
core the server and h2load each used during the run. Near 100 % for h2load, the
client is the limit, and CPU per request is the figure that compares the servers;
well below 100 % for both, neither was busy all the time, and requests/s measures
how quickly a request makes its way through the server rather than its CPU cost.
(The client core's busy share from ``/proc/stat`` is in the rows too; it is sampled
at the timer tick and misses much of a client that wakes in short bursts, and counts
other processes on that core.) h2load must report the protocol
it was asked for (``Application protocol:``), and its failed, errored and timed-out
requests and non-2xx answers are counted as errors.

Rounds alternate the order of the runs. Printed: per app and run, the median round
(by requests/s) and the best round's requests/s and CPU per 1,000 requests (on a
busy machine, the least disturbed), the CPU shares and errors; then maitre/granian
for each protocol and load (requests/s, and CPU per request: below 1 is maitre
cheaper) and maitre's HTTP/2 against its HTTP/1.1. Rows go to
bench/results/h2-<time>.tsv, the report to .txt beside it, and each failed run's
h2load output and server log to .logs/. ``--report`` prints the report again from
one or more .tsv files, their rounds pooled (APPS, RUNS and STREAMS say which rows).

Installs what is missing: h2load (Debian's ``nghttp2-client``) and curl with apt-get,
and into the venv of VENV (default bench/.venv, as run.sh): granian, trustme (the
throwaway ECDSA P-256 certificate, made at run time), Flask, and maitre built from
this checkout in the release profile when it is not installed there (INSTALL=1:
always). Everything listens on 127.0.0.1 only; every process is stopped by its PID,
and every wait is bounded.

Environment: APPS, RUNS, DURATION [5], ROUNDS [3], CONNECTIONS [10],
STREAMS [10,100], H1_CONNECTIONS [100], THREADS [4], SERVER_CPU [0], CLIENT_CPU [1],
VENV, INSTALL [0].
"""

from __future__ import annotations

import csv
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchvenv
from benchvenv import free_port, log

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HOST = "127.0.0.1"

ALL_RUNS = "maitre:h2c,granian:h2c,maitre:h2,granian:h2,maitre:h1,maitre:h1tls"
APPS = os.environ.get("APPS", "hello,flask").split(",")
RUNS = [r.split(":") for r in os.environ.get("RUNS", ALL_RUNS).split(",")]
DURATION = int(os.environ.get("DURATION") or 5)
ROUNDS = int(os.environ.get("ROUNDS") or 3)
CONNECTIONS = int(os.environ.get("CONNECTIONS") or 10)
STREAMS = [int(m) for m in (os.environ.get("STREAMS") or "10,100").split(",")]
H1_CONNECTIONS = int(os.environ.get("H1_CONNECTIONS") or 100)
THREADS = int(os.environ.get("THREADS") or 4)
SERVER_CPU = os.environ.get("SERVER_CPU") or "0"
CLIENT_CPU = os.environ.get("CLIENT_CPU") or "1"
VENV = Path(os.environ.get("VENV") or BENCH / ".venv")
INSTALL = os.environ.get("INSTALL") == "1"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
#: protocol -> (URL scheme, HTTP/2?, curl's flag, the version curl must report,
#: h2load's "Application protocol")
PROTOCOLS = {
    "h2c": ("http", True, "--http2-prior-knowledge", "2", "h2c"),
    "h2": ("https", True, "--http2", "2", "h2"),
    "h1": ("http", False, "--http1.1", "1.1", "http/1.1"),
    "h1tls": ("https", False, "--http1.1", "1.1", "http/1.1"),
}
#: the body each app answers (apps.py's hello and Flask's route both say this)
BODY = b"Hello, world!"
TICKS = os.sysconf("SC_CLK_TCK")


# -- installing ------------------------------------------------------------------


def vpy() -> str:
    return benchvenv.python(VENV)


def apt_install(command: str, package: str) -> None:
    if shutil.which(command):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"{command} is missing; install {package} (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["install", "-y", "-q", package], ["update", "-q"]):
        subprocess.run(["apt-get", *args], env=env, stdin=subprocess.DEVNULL)
        if shutil.which(command):
            return
    sys.exit(f"{command} is missing and apt-get could not install {package}")


def install() -> None:
    apt_install("h2load", "nghttp2-client")
    apt_install("curl", "curl")
    apt_install("taskset", "util-linux")
    if not Path(vpy()).exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [vpy(), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    servers = {server for server, _ in RUNS}
    wanted = {"trustme": "trustme", "flask": "flask"}
    if "granian" in servers:
        wanted["granian"] = "granian"
    missing = [
        spec for module, spec in wanted.items() if not benchvenv.installed(VENV, module)
    ]
    if missing:
        subprocess.run([*pip, *missing], check=True)
    if "maitre" in servers and (INSTALL or not benchvenv.installed(VENV, "maitre")):
        log("building maitre from this checkout (release profile)")
        subprocess.run([*pip, "--force-reinstall", "--no-deps", str(ROOT)], check=True)


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    code = (
        "import sys, trustme\n"
        "c = trustme.CA().issue_cert('localhost', '127.0.0.1')\n"
        "c.cert_chain_pems[0].write_to_path(sys.argv[1])\n"
        "c.private_key_pem.write_to_path(sys.argv[2])\n"
    )
    subprocess.run([vpy(), "-c", code, str(cert), str(key)], check=True, cwd="/")
    return cert, key


# -- processes and their CPU time ------------------------------------------------------


def descendants(pid: int) -> list:
    """PID and every process under it (granian's workers, maitre's if any)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of PID and its descendants."""
    ticks = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited: its time is gone with it
        ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


def core_times(cpu: str) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat (busy: not idle nor iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                values = [int(v) for v in line.split()[1:]]
                total = sum(values[:8])  # guest time is already in user
                return total - values[3] - values[4], total
    return 0, 0


def children_cpu() -> float:
    """User + system seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages: how busy the machine was besides."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Server:
    def __init__(self, server, app, protocol, workdir: Path, cert):
        self.port = free_port(HOST)
        self.logpath = workdir / f"{server}-{app}-{protocol}-{self.port}.log"
        scheme, http2 = PROTOCOLS[protocol][:2]
        env = dict(os.environ, THREADS=str(THREADS))
        for name in ("HTTP2", "TLS_CERT", "TLS_KEY", "WORKERS"):
            env.pop(name, None)
        if http2:
            env["HTTP2"] = "1"
        if scheme == "https":
            env.update(TLS_CERT=str(cert[0]), TLS_KEY=str(cert[1]))
        argv = [vpy(), str(BENCH / "run_server.py"), server, str(self.port), app]
        with open(self.logpath, "wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, *argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_listening(self) -> str | None:
        """None once it accepts connections, else why not."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited at start ({self.proc.returncode})"
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return None
            except OSError:
                time.sleep(0.05)
        return f"not listening after {START_TIMEOUT:.0f} s"

    def stop(self) -> None:
        """TERM to the server and its descendants, KILL what is left after 5 s."""
        pids = descendants(self.proc.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline:
                self.proc.poll()
                if not any(Path(f"/proc/{p}").exists() for p in pids):
                    return
                time.sleep(0.05)
        self.proc.wait(STOP_TIMEOUT)

    def log_tail(self, lines: int = 15) -> str:
        text = self.logpath.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# -- one run ---------------------------------------------------------------------


def check(url: str, protocol: str) -> str | None:
    """One request with curl: None when it answers 200, BODY, and the HTTP version
    PROTOCOL asks for; else what was wrong."""
    flag, want = PROTOCOLS[protocol][2:4]
    argv = ["curl", "-sSk", flag, "--max-time", "10", "-o", "-"]
    argv += ["-w", "\n%{http_code} %{http_version}", url]
    out = subprocess.run(argv, capture_output=True, timeout=20)
    if out.returncode != 0:
        return f"curl {flag}: {out.stderr.decode(errors='replace').strip()}"
    body, _, status = out.stdout.rpartition(b"\n")
    if status.decode() != f"200 {want}":
        return f"curl {flag}: status and version {status.decode()!r}, not '200 {want}'"
    if body != BODY:
        return f"curl {flag}: body {body[:60]!r}, not {BODY!r}"
    return None


def load_args(streams) -> list:
    """h2load's -c and -m: STREAMS streams in flight on each of CONNECTIONS
    connections; for HTTP/1.1 (streams None) H1_CONNECTIONS, one request each."""
    if streams is None:
        return [f"-c{H1_CONNECTIONS}", "-m1", "--h1"]
    return [f"-c{CONNECTIONS}", f"-m{streams}"]


def load_name(streams) -> str:
    return " ".join(load_args(streams)[:2])


def plan() -> list:
    """(server, protocol, streams) of every run of a round: each HTTP/2 run once per
    STREAMS value, each HTTP/1.1 run once."""
    runs = []
    for streams in STREAMS:
        runs += [(sv, pr, streams) for sv, pr in RUNS if PROTOCOLS[pr][1]]
    return runs + [(sv, pr, None) for sv, pr in RUNS if not PROTOCOLS[pr][1]]


def h2load_argv(url: str, streams) -> list:
    argv = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-D{DURATION}"]
    return [*argv, *load_args(streams), url]


def probe(url: str, protocol: str) -> str:
    """h2load's output for 100 requests on one connection (bounded)."""
    argv = ["h2load", "-n100", "-c1", "-m1", "-T10", "-N10", url]
    if not PROTOCOLS[protocol][1]:
        argv.insert(-1, "--h1")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "did not finish in 60 s"
    text = out.stdout + out.stderr
    return "\n".join(x for x in text.splitlines() if not x.startswith("progress:"))


def parse_h2load(text: str) -> dict:
    found = {}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    if m:
        found["seconds"], found["rps"] = float(m[1]), float(m[2])
    m = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    if m:
        found["done"], found["succeeded"] = int(m[2]), int(m[3])
        found["errors"] = int(m[4]) + int(m[5]) + int(m[6])
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        found["non2xx"] = int(m[2]) + int(m[3]) + int(m[4])
    m = re.search(r"Application protocol: (\S+)", text)
    found["protocol"] = m[1] if m else None
    return found


def run(server, app, protocol, streams, workdir: Path, cert) -> dict:
    """One timed run: a dict with rps, cpu_per_1k, busy, errors; or 'fails'."""
    row = {"server": server, "app": app, "protocol": protocol}
    row["load"] = load_name(streams)
    proc = Server(server, app, protocol, workdir, cert)
    try:
        reason = proc.wait_listening()
        url = f"{PROTOCOLS[protocol][0]}://{HOST}:{proc.port}/"
        if reason is None:
            reason = check(url, protocol)
            if reason is not None:
                # what h2load itself says of it, for the log: a few requests
                reason += "; h2load -n100: " + probe(url, protocol).strip()[-3000:]
        if reason is not None:
            row["fails"] = reason.split("; h2load", 1)[0]
            row["detail"] = f"{reason}\n-- server log --\n{proc.log_tail()}"
            return row
        busy0, total0 = core_times(CLIENT_CPU)
        cpu0 = cpu_seconds(proc.proc.pid)
        client0, wall0 = children_cpu(), time.monotonic()
        try:
            out = subprocess.run(
                h2load_argv(url, streams),
                capture_output=True,
                text=True,
                timeout=DURATION + 60,
            )
            text = out.stdout + out.stderr
        except subprocess.TimeoutExpired as exc:
            text = f"h2load did not finish in {DURATION + 60} s\n{exc.stdout or ''}"
        client1, wall1 = children_cpu(), time.monotonic()
        cpu1 = cpu_seconds(proc.proc.pid)
        busy1, total1 = core_times(CLIENT_CPU)
        found = parse_h2load(text)
        if found.get("protocol") != PROTOCOLS[protocol][4] or not found.get("done"):
            row["fails"] = (
                f"h2load: protocol {found.get('protocol')}, "
                f"{found.get('succeeded', 0)} requests succeeded"
            )
            row["detail"] = text.strip()[-3000:] + "\n-- server log --\n"
            row["detail"] += proc.log_tail()
            return row
        row.update(
            rps=round(found["rps"], 1),
            requests=found["done"],
            errors=found["errors"] + found.get("non2xx", 0),
            cpu_s=round(cpu1 - cpu0, 2),
            cpu_per_1k=round((cpu1 - cpu0) / found["done"] * 1000, 5),
            busy=round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            h2load_cpu=round(100 * (client1 - client0) / (wall1 - wall0), 1),
            server_cpu=round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        )
        return row
    finally:
        proc.stop()


# -- the report ------------------------------------------------------------------


def median_rows(rows):
    """(app, server, protocol, load) -> the median round by req/s with the best
    round's req/s and CPU per request (``best_rps``, ``best_cpu``: on a busy machine
    the least disturbed), or a failed row."""
    groups = {}
    for r in rows:
        key = (r["app"], r["server"], r["protocol"], r["load"])
        groups.setdefault(key, []).append(r)
    table = {}
    for key, rs in groups.items():
        ok = sorted((r for r in rs if "fails" not in r), key=lambda r: r["rps"])
        table[key] = ok[len(ok) // 2] if ok else rs[0]
        if ok:
            table[key] = dict(
                table[key],
                errors=sum(r["errors"] for r in ok),
                best_rps=ok[-1]["rps"],
                best_cpu=min(r["cpu_per_1k"] for r in ok),
            )
    return table


def ratio(a, b, fmt="{:.2f}x"):
    return fmt.format(a / b) if a and b else "n/a"


def report(table) -> list:
    lines = [
        f"{'':35}{'req/s':>8} {'best':>7}  {'CPU s/1k req':>12} {'best':>7}",
        f"{'app':6} {'server':8} {'protocol':8} {'load':10} {'median':>7} "
        f"{'round':>7}  {'median':>12} {'round':>7} {'server':>7} {'h2load':>7} "
        f"{'errors':>6}",
    ]
    for app in APPS:
        for server, protocol, streams in plan():
            load = load_name(streams)
            r = table.get((app, server, protocol, load))
            if r is None:
                continue
            head = f"{app:6} {server:8} {protocol:8} {load:10}"
            if "fails" in r:
                lines.append(f"{head} fails: {r['fails']}")
                continue
            lines.append(
                f"{head} {r['rps']:7.0f} {r['best_rps']:7.0f}  "
                f"{r['cpu_per_1k']:12.4f} {r['best_cpu']:7.4f} "
                f"{r['server_cpu']:6.0f}% {r['h2load_cpu']:6.0f}% {r['errors']:6d}"
            )
    lines += ["", "ratios of the medians, (of the best rounds); req/s: above 1 is "
              "maitre faster; CPU/req: below 1 is maitre cheaper"]  # fmt: skip
    h1 = load_name(None)
    for app in APPS:
        pairs = []
        for streams in STREAMS:
            m = load_name(streams)
            pairs += [
                (f"maitre/granian {p} {m}", ("maitre", p, m), ("granian", p, m))
                for p in ("h2c", "h2")
            ]
            pairs += [
                (f"maitre {p2}/{p1} {m}", ("maitre", p2, m), ("maitre", p1, h1))
                for p2, p1 in (("h2c", "h1"), ("h2", "h1tls"))
            ]
        for title, mine, other in pairs:
            mine = table.get((app, *mine)) or {}
            other = table.get((app, *other)) or {}
            rps = ratio(mine.get("rps"), other.get("rps"))
            best_rps = ratio(mine.get("best_rps"), other.get("best_rps"))
            cpu = ratio(mine.get("cpu_per_1k"), other.get("cpu_per_1k"))
            best_cpu = ratio(mine.get("best_cpu"), other.get("best_cpu"))
            if rps == cpu == "n/a" and not ("fails" in mine or "fails" in other):
                continue  # a run that was not asked for
            lines.append(
                f"{app:6} {title:32} req/s {rps} ({best_rps})  "
                f"CPU/req {cpu} ({best_cpu})"
            )
    return lines


def read_rows(paths) -> list:
    """The rows of earlier runs' .tsv files, numbers as numbers."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f, delimiter="\t"):
                r = {k: v for k, v in r.items() if v != ""}
                for key in ("rps", "cpu_s", "cpu_per_1k", "server_cpu", "h2load_cpu"):
                    if key in r:
                        r[key] = float(r[key])
                for key in ("requests", "errors"):
                    if key in r:
                        r[key] = int(r[key])
                if "rps" in r and "server_cpu" not in r:  # rows from before it was kept
                    r["server_cpu"] = 100 * r["cpu_s"] / (r["requests"] / r["rps"])
                rows.append(r)
    return rows


def main(argv) -> int:
    if argv[:1] == ["--report"]:
        rows = read_rows(argv[1:])
        print(f"{len(rows)} runs from {len(argv) - 1} file(s), median shown")
        print("\n".join(report(median_rows(rows))))
        return 0
    install()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True)
    header = [
        f"maitre {benchvenv.version(VENV, 'maitre')} ({commit or '?'}), "
        f"granian {benchvenv.version(VENV, 'granian')}, "
        f"{h2load.stdout.strip()}, {os.cpu_count()} CPUs",
        f"{ROUNDS} round(s) of {DURATION} s, median shown; server on CPU {SERVER_CPU} "
        f"({THREADS} threads), h2load -t1 -D{DURATION} on CPU {CLIENT_CPU}",
    ]
    load0 = loadavg()
    for line in header:
        log(line)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    prefix = results / f"h2-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="maitre-h2-") as tmp:
        workdir = Path(tmp)
        cert = make_certificate(workdir)
        for round_no in range(1, ROUNDS + 1):
            runs = plan()
            shift = (round_no - 1) % len(runs)
            for app in APPS:
                for server, protocol, streams in runs[shift:] + runs[:shift]:
                    row = run(server, app, protocol, streams, workdir, cert)
                    row["round"] = round_no
                    rows.append(row)
                    what = f"{app} {server} {protocol} {row['load']} round {round_no}"
                    if "fails" in row:
                        log(f"{what}: fails: {row['fails']}")
                        logs = Path(f"{prefix}.logs")
                        logs.mkdir(exist_ok=True)
                        name = f"{app}-{server}-{protocol}-{streams}-{round_no}.txt"
                        (logs / name).write_text(row["detail"] + "\n")
                    else:
                        log(
                            f"{what}: {row['rps']:.0f} req/s, "
                            f"{row['cpu_per_1k']:.4f} s CPU/1k req"
                        )
    fields = ["app", "round", "server", "protocol", "load", "rps", "requests"]
    fields += ["errors", "cpu_s", "cpu_per_1k", "server_cpu", "busy", "h2load_cpu"]
    fields += ["fails"]
    with open(f"{prefix}.tsv", "w", newline="") as f:
        writer = csv.DictWriter(
            f, fields, delimiter="\t", extrasaction="ignore", restval=""
        )
        writer.writeheader()
        writer.writerows(rows)
    lines = [*header, "", *report(median_rows(rows)), ""]
    lines += [
        f"load average before: {load0}, after: {loadavg()}",
        f"(rows: {prefix}.tsv)",
    ]
    Path(f"{prefix}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
