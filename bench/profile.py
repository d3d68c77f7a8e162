"""Where a request's CPU goes: instruction counts under callgrind, system calls
under strace, for one scenario and a few servers (bench/README.md, "Where the
time goes").

    python bench/profile.py SCENARIO [SERVER ...]      # default: maitre bjoern
    REQUESTS=2000 CONNECTIONS=8 python bench/profile.py django maitre bjoern

For each server (bench/run_server.py, one process: maitre, waitress, bjoern,
pyruvate) it runs the server under ``valgrind --tool=callgrind`` twice: 50
warm-up requests (bench/drive.py) then REQUESTS [1000] requests over
CONNECTIONS [8] keep-alive connections, and again with 2 x REQUESTS; the
difference of the two runs, divided by REQUESTS, is the cost of a request, with
startup, warm-up and shutdown cancelled out.  The same is done for the app
called in a loop without a server (the floor).  Instruction counts (Ir) are
deterministic, so the machine's load does not change them (only how a server's
threads happen to interleave, which is part of its cost); they count user space
only (the kernel runs outside valgrind).
The kernel's share comes from a second run without valgrind under
``strace -c -f`` (system calls per request, by name) and ``perf stat`` when
present (task-clock, context switches, user and system time per request; these
are timings, so they do depend on the load).  PROFILE_DIR=<an earlier
output directory> reuses the callgrind runs that completed there.

Prints, per server, instructions per request split by object (libpython, the
server's own code, libc, C extensions...), the server's share (total minus the
app alone), the top functions of the server's own object, and the system calls
per request.  Files are kept in bench/results/profile-<time>/.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import apps  # noqa: E402

PY = sys.executable
REQUESTS = int(os.environ.get("REQUESTS", "1000"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "8"))
WARMUP = int(os.environ.get("WARMUP", "50"))
SINGLE_PROCESS = ("maitre", "waitress", "bjoern", "pyruvate")


def category(obj, server):
    name = os.path.basename(obj)
    if name.startswith("libpython") or name.startswith("python3"):
        return "libpython"
    if server == "maitre" and ("_maitre" in name or name.startswith("maitre")):
        return "server (maitre Rust)"
    if server == "bjoern" and "bjoern" in name:
        return "server (bjoern C)"
    if name.startswith("libev"):
        return "server (libev)"
    if name.startswith(("libc.", "libc-", "ld-linux", "libm.", "libpthread")):
        return "libc + ld.so"
    if name.startswith("vgpreload") or name == "???":
        return "valgrind preload / unknown"
    if name.endswith(".so") or ".so." in name:
        return (
            "C extensions ("
            + ("lib-dynload, " if "lib-dynload" in obj else "")
            + "site)"
        )
    return "other: " + name


_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    """Self cost (Ir) per object and per (object, function) of a callgrind file."""
    if not complete(path):
        raise SystemExit(f"{path}: incomplete (the process was killed?)")
    names = {"ob": {}, "fn": {}}
    by_obj, by_fn = Counter(), Counter()
    ob = fn = "???"
    skip_next = False

    def resolve(kind, text):
        m = _NAME.match(text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
            return m.group(2)
        return names[kind].get(m.group(1), "???")

    with open(path) as f:
        for line in f:
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:  # the inclusive cost of a call: not self cost
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    cost = int(parts[1])
                    by_obj[ob] += cost
                    by_fn[(ob, fn)] += cost
                continue
            if line.startswith("ob="):
                ob = resolve("ob", line[3:].strip())
            elif line.startswith("fn="):
                fn = resolve("fn", line[3:].strip())
            elif line.startswith("cob="):
                resolve("ob", line[4:].strip())
            elif line.startswith("cfn="):
                resolve("fn", line[4:].strip())
            elif line.startswith("calls="):
                skip_next = True
    return by_obj, by_fn


def port_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no server on port {port} after {seconds} s")


def stop(proc, grace=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def drive(port, path, n):
    out = subprocess.run(
        [PY, os.path.join(HERE, "drive.py"), str(port), path, str(n), str(CONNECTIONS)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return out.stdout.strip()


def complete(path):
    """Whether a callgrind output file was written to the end (a run is reused
    when bench/profile.py is run again with the same PROFILE_DIR)."""
    try:
        with open(path) as f:
            return any(line.startswith("totals:") for line in f)
    except OSError:
        return False


def callgrind_server(server, scenario, outdir, n):
    """Self Ir per object and per function of a whole server run under callgrind
    that answered WARMUP + N requests (startup and shutdown included)."""
    port = port_free()
    base = os.path.join(outdir, f"callgrind.{scenario}.{server}.{n}")
    if complete(f"{base}.out"):
        return parse(f"{base}.out")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={base}.out",
        PY,
        os.path.join(HERE, "run_server.py"),
        server,
        str(port),
        scenario,
    ]
    log = open(f"{base}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=HERE)
    try:
        wait_port(port, proc, 900)
        drive(port, apps.path(scenario), WARMUP)
        drive(port, apps.path(scenario), n)
    finally:
        # Under valgrind a graceful stop is slow; killed, callgrind writes nothing.
        stop(proc, grace=300)
        log.close()
    return parse(f"{base}.out")


def per_request(small, large, n_small, n_large):
    """(by_obj, by_fn) per request: the difference of two runs that differ only
    in the number of requests, divided by that difference (startup, warm-up and
    shutdown cancel out)."""
    out = []
    for a, b in zip(small, large, strict=True):
        keys = set(a) | set(b)
        out.append({k: (b.get(k, 0) - a.get(k, 0)) / (n_large - n_small) for k in keys})
    return out


LOOP = """
import sys
sys.path.insert(0, {here!r})
import app_loop, apps
app = apps.load({scenario!r}); env = app_loop.environ_for({scenario!r})
for _ in range({warm} + {n}): app_loop.call(app, env)
"""


def callgrind_loop(scenario, outdir, n):
    """The same for the app called in a loop WARMUP + N times without a server."""
    base = os.path.join(outdir, f"callgrind.{scenario}.app-alone.{n}")
    code = LOOP.format(here=HERE, scenario=scenario, warm=WARMUP, n=n)
    if complete(f"{base}.out"):
        return parse(f"{base}.out")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={base}.out"]
        + [PY, "-c", code],
        capture_output=True,
        timeout=1800,
        check=True,
    )
    return parse(f"{base}.out")


def measured(run, *args):
    """RUN(*args, n) for REQUESTS and 2 x REQUESTS: Ir per request."""
    small = run(*args, REQUESTS)
    large = run(*args, 2 * REQUESTS)
    return per_request(small, large, REQUESTS, 2 * REQUESTS)


def strace_server(server, scenario, outdir):
    """System calls per request (strace -c -f) and perf stat software events."""
    port = port_free()
    out = os.path.join(outdir, f"strace.{scenario}.{server}.txt")
    perf = shutil.which("perf")
    inner = [PY, os.path.join(HERE, "run_server.py"), server, str(port), scenario]
    proc = subprocess.Popen(
        inner, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    result = {}
    try:
        wait_port(port, proc, 60)
        drive(port, apps.path(scenario), WARMUP)
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-o", out, "-p", str(proc.pid)]
            + [
                f"-p{t}"
                for t in os.listdir(f"/proc/{proc.pid}/task")
                if t != str(proc.pid)
            ],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        drive(port, apps.path(scenario), REQUESTS)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        calls = {}
        with open(out) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    calls[parts[-1]] = int(parts[3])
        result["syscalls"] = calls
        if perf:
            pout = os.path.join(outdir, f"perf.{scenario}.{server}.txt")
            stat = subprocess.Popen(
                [
                    "perf",
                    "stat",
                    "-e",
                    "task-clock,context-switches,cpu-migrations,page-faults",
                    "-p",
                    str(proc.pid),
                    "-o",
                    pout,
                ],
            )
            time.sleep(0.5)
            drive(port, apps.path(scenario), REQUESTS)
            stat.send_signal(signal.SIGINT)
            stat.wait(30)
            with open(pout) as f:
                result["perf"] = f.read()
    finally:
        stop(proc)
    return result


def report(scenario, servers, outdir):
    loop = measured(callgrind_loop, scenario, outdir)
    alone = sum(loop[0].values())
    lines = [
        f"== {scenario}: instructions (Ir, callgrind) per request, "
        f"{REQUESTS} requests, {CONNECTIONS} connections"
    ]
    lines.append(f"app alone (called in a loop): {alone:,.0f} Ir per call")
    lines.append(
        "  by object: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in _cats(loop[0], "").most_common())
    )
    for server in servers:
        by_obj, by_fn = measured(callgrind_server, server, scenario, outdir)
        total = sum(by_obj.values())
        cats = _cats(by_obj, server)
        loop_cats = _cats(loop[0], "")
        lines.append(
            f"{server}: {total:,.0f} Ir per request; "
            "server's share (minus the app alone) "
            f"{total - alone:,.0f} ({(total - alone) / total:.0%})"
        )
        for cat, value in cats.most_common():
            extra = value - loop_cats.get(cat, 0)
            lines.append(
                f"  {cat:<38} {value:>12,.0f}   beyond the app alone {extra:>+10,.0f}"
            )
        own = [
            (fn, v)
            for (ob, fn), v in by_fn.items()
            if _cat1(ob, server).startswith("server")
        ]
        own.sort(key=lambda item: -item[1])
        lines.append("  top functions of the server's own code (Ir per request):")
        for fn, v in own[:12]:
            lines.append(f"    {v:>10,.0f}  {fn[:110]}")
        st = strace_server(server, scenario, outdir)
        calls = st.get("syscalls", {})
        per = sum(calls.values()) / REQUESTS
        lines.append(
            f"  system calls per request (strace -c -f): {per:.2f}: "
            + ", ".join(
                f"{k} {v / REQUESTS:.2f}"
                for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:8]
            )
        )
        if "perf" in st:
            lines.append("  perf stat (software events, wall-clock dependent):")
            lines += [
                "    " + line.strip()
                for line in st["perf"].splitlines()
                if line.strip() and not line.startswith("#")
            ]
    return "\n".join(lines)


def _cat1(obj, server):
    return category(obj, server)


def _cats(by_obj, server):
    out = Counter()  # float values: Ir per request
    for obj, v in by_obj.items():
        out[category(obj, server)] += v
    return out


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, servers = argv[0], argv[1:] or ["maitre", "bjoern"]
    for s in servers:
        if s not in SINGLE_PROCESS:
            raise SystemExit(f"{s}: only single-process servers: {SINGLE_PROCESS}")
    outdir = os.environ.get("PROFILE_DIR") or os.path.join(
        HERE, "results", "profile-" + time.strftime("%Y%m%d-%H%M%S") + "-" + scenario
    )
    os.makedirs(outdir, exist_ok=True)
    text = report(scenario, servers, outdir)
    print(text)
    with open(os.path.join(outdir, "report.txt"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
