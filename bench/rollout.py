"""A rolling restart behind HAProxy: how many requests fail.

    python3 bench/rollout.py                       # maitre, maitre-plain, gunicorn
    SERVERS=maitre,gunicorn ROUNDS=3 python3 bench/rollout.py

Two instances of a server sit behind HAProxy (Debian's ``haproxy``, installed with
apt-get when missing and run as root), in the configuration of docs/haproxy.cfg:
health checks every 250 ms, ``retries 0``, no redispatch. Sixteen keep-alive clients
(``http.client``, no retries, bound to 127.0.0.2) send requests through HAProxy the
whole time, while each instance in turn gets SIGTERM, exits, is started again and is
waited for until HAProxy has it back in rotation. Printed per server: requests
answered, requests failed (any answer but 200, any error on the client's side) and
how they failed.

The servers (each ``--threads=4`` or gunicorn ``-k gthread --threads 4``, one process;
the app sleeps 5 ms and answers REMOTE_ADDR):

- ``maitre``: ``--shutdown-delay=2`` and ``--metrics-listen``, HAProxy checks
  ``/readyz`` on the metrics port and sends PROXY v2 (``--proxy-protocol=v2``): the
  configuration of docs/deployment.md, unchanged.
- ``maitre-plain``: no shutdown_delay and no metrics listener; HAProxy checks
  ``GET /`` on the serving port and sends no PROXY header (what a waitress setup
  would have had).
- ``gunicorn``: the same as ``maitre-plain`` (gunicorn has no readiness endpoint).

The set-up (the app, docs/haproxy.cfg for this run's ports, HAProxy, the clients) is
tests/haproxy_fleet.py, the one the rollout test (tests/test_haproxy.py) runs.

It uses the interpreter of VENV (default bench/.venv, as run.sh): maitre is built
from this checkout into it when it is not installed there (INSTALL=1: always), and
gunicorn installed from PyPI when missing. Everything listens on 127.0.0.1 only;
every process is stopped by its PID, and every wait is bounded.

Environment: SERVERS, ROUNDS [1], CLIENTS [16], VENV, INSTALL [0].
"""

from __future__ import annotations

import collections
import os
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
# the set-up the rollout test runs (tests/test_haproxy.py), shared with it
sys.path.insert(0, str(ROOT / "tests"))
import haproxy_fleet  # noqa: E402
from haproxy_fleet import (  # noqa: E402
    APP,
    HOST,
    LOG_OUTCOME,
    HAProxyError,
    clients,
    failed_log_lines,
    find_haproxy,
    haproxy_config,
)

SERVERS = os.environ.get("SERVERS", "maitre,maitre-plain,gunicorn").split(",")
ROUNDS = int(os.environ.get("ROUNDS") or 1)
CLIENTS = int(os.environ.get("CLIENTS") or 16)
VENV = Path(os.environ.get("VENV") or ROOT / "bench" / ".venv")
INSTALL = os.environ.get("INSTALL") == "1"
SHUTDOWN_DELAY = 2
START_TIMEOUT = 30.0
STOP_TIMEOUT = 45.0


# -- installing ------------------------------------------------------------------


def vpy() -> str:
    return benchvenv.python(VENV)


def install() -> None:
    if not Path(vpy()).exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [vpy(), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if "gunicorn" in SERVERS and not benchvenv.installed(VENV, "gunicorn"):
        subprocess.run([*pip, "gunicorn"], check=True)
    if any(s.startswith("maitre") for s in SERVERS) and (
        INSTALL or not benchvenv.installed(VENV, "maitre")
    ):
        log("building maitre from this checkout (release profile)")
        subprocess.run([*pip, "--force-reinstall", "--no-deps", str(ROOT)], check=True)


def haproxy_binary() -> str:
    found = find_haproxy()
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["install", "-y", "-q", "haproxy"], ["update", "-q"]):
        subprocess.run(["apt-get", *args], env=env, stdin=subprocess.DEVNULL)
        found = find_haproxy()
        if found:
            return found
    sys.exit("haproxy is missing and apt-get could not install it")


# -- the servers -------------------------------------------------------------------


class Instance:
    def __init__(self, server: str, appdir: Path, port: int, metrics_port: int):
        self.server = server
        self.port = port
        self.metrics_port = metrics_port
        self.appdir = appdir
        self.logfile = open(appdir / f"{server}-{port}.log", "ab")
        self.proc = None

    def argv(self) -> list:
        if self.server == "gunicorn":
            return [
                vpy(), "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "4",
                "-b", f"{HOST}:{self.port}", "--log-level", "warning", "rapp:app",
            ]  # fmt: skip
        argv = [vpy(), "-m", "maitre", f"--listen={HOST}:{self.port}", "--threads=4"]
        if self.server == "maitre":
            argv += [
                f"--metrics-listen={HOST}:{self.metrics_port}",
                f"--shutdown-delay={SHUTDOWN_DELAY}",
                "--proxy-protocol=v2",
                f"--proxy-protocol-from={HOST}",
            ]
        return [*argv, "rapp:app"]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.appdir,
            stdin=subprocess.DEVNULL,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
        )
        check_port = self.metrics_port if self.server == "maitre" else self.port
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.server} exited at start ({self.proc.returncode})")
            try:
                socket.create_connection((HOST, check_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"{self.server} not listening after {START_TIMEOUT}s")

    def stop(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM and wait for the exit; seconds it took."""
        t0 = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.server} still running {timeout}s after SIGTERM: killed")
                self.proc.kill()
                self.proc.wait(10)
        return time.monotonic() - t0


class HAProxy(haproxy_fleet.HAProxy):
    """HAProxy in front of ``instances`` (their /readyz checked and PROXY v2 sent to
    them for ``maitre``, ``GET /`` on the serving port for the others), asked on its
    stats socket when a restarted server is back."""

    def __init__(self, binary: str, workdir: Path, front: int, server: str, instances):
        self.stats_socket = workdir / "stats.sock"
        config = haproxy_config(
            front,
            [(inst.port, inst.metrics_port) for inst in instances],
            readyz=server == "maitre",
            stats_socket=self.stats_socket,
        )
        try:
            super().__init__(binary, workdir, config, front, START_TIMEOUT)
        except HAProxyError as e:
            sys.exit(str(e))

    def status(self, name: str) -> str:
        """HAProxy's status of server ``name`` now (``UP``, ``UP 1/2``, ``DOWN``...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        for line in data.decode().splitlines():
            fields = line.split(",")
            if fields[:2] == ["maitre", name]:
                return fields[17]
        return "?"

    def wait_up(self, name: str) -> bool:
        """Until HAProxy has ``name`` fully UP."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.status(name) == "UP":
                return True
            time.sleep(0.02)
        return False


def one_rollout(server: str, binary: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"rollout-{server}-"))
    (workdir / "rapp.py").write_text(APP)
    instances = [
        Instance(server, workdir, free_port(HOST), free_port(HOST)) for _ in range(2)
    ]
    haproxy = None
    stop_seconds = []
    try:
        for inst in instances:
            inst.start()
        front = free_port(HOST)
        haproxy = HAProxy(binary, workdir, front, server, instances)
        time.sleep(1)  # HAProxy starts with its servers UP; they are serving
        t0 = time.monotonic()
        with clients(front, CLIENTS) as result:
            time.sleep(2)
            for name, inst in zip(("app1", "app2"), instances):
                stop_seconds.append(inst.stop())
                inst.start()
                if not haproxy.wait_up(name):
                    log(f"{server}: {name} not back UP in {START_TIMEOUT}s")
                time.sleep(2)
        elapsed = time.monotonic() - t0
        # HAProxy's side of each failure: status and termination state
        haproxy_failed = collections.Counter(
            " ".join(LOG_OUTCOME.search(line).groups())
            for line in failed_log_lines(haproxy.log())
        )
        return {
            "ok": result["ok"],
            "failed": result["failed"],
            "seen": result["seen"],
            "seconds": elapsed,
            "stop_seconds": stop_seconds,
            "haproxy_failed": haproxy_failed,
        }
    finally:
        if haproxy is not None:
            haproxy.stop()
        for inst in instances:
            inst.stop(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    install()
    binary = haproxy_binary()
    haproxy_version = subprocess.run(
        [binary, "-v"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    print(f"# {haproxy_version}")
    for module in ("maitre", "gunicorn"):
        if any(s.startswith(module) for s in SERVERS):
            print(f"# {module} {benchvenv.version(VENV, module)}")
    print(
        f"# {CLIENTS} clients, {ROUNDS} round(s), each instance restarted once a round"
    )
    rows = []
    for r in range(ROUNDS):
        for server in SERVERS if r % 2 == 0 else list(reversed(SERVERS)):
            log(f"round {r + 1}: {server}")
            res = one_rollout(server, binary)
            total = res["ok"] + sum(res["failed"].values())
            kinds = ", ".join(f"{k} {n}" for k, n in res["failed"].most_common())
            rows.append((server, r + 1, total, sum(res["failed"].values()), kinds))
            print(
                f"{server:<13} round {r + 1}: {sum(res['failed'].values())} of "
                f"{total} requests failed ({kinds or 'none'}) in "
                f"{res['seconds']:.1f}s; REMOTE_ADDR seen: "
                f"{', '.join(res['seen'])}; stops took "
                f"{', '.join(f'{s:.1f}s' for s in res['stop_seconds'])}",
                flush=True,
            )
            if res["haproxy_failed"]:
                print(
                    "    in HAProxy's log (status, termination state): "
                    + ", ".join(
                        f"{k}: {n}" for k, n in res["haproxy_failed"].most_common()
                    )
                )
    print()
    print("| server | round | requests | failed | how |")
    print("|---|---|---|---|---|")
    for server, r, total, failed, kinds in sorted(
        rows, key=lambda row: (SERVERS.index(row[0]), row[1])
    ):
        print(f"| {server} | {r} | {total} | {failed} | {kinds or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
