"""Two instances behind HAProxy, as docs/haproxy.cfg has them: what the rollout test
(tests/test_haproxy.py) and the rollout benchmark (bench/rollout.py) both need. The
application the instances serve, the haproxy binary, the documented configuration
rendered for this run's ports, HAProxy as a child process, and the keep-alive clients
that send requests through it and keep every failure.

It lives with the tests, and the benchmark puts this folder on ``sys.path``: the test
is the proof CI runs on every change, the benchmark the same set-up measured for other
servers, so the proof imports nothing from bench/. It needs the standard library only
(no pytest, no maitre): the benchmark runs it under any python3 and starts the servers
from another interpreter.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "docs" / "haproxy.cfg"
#: where HAProxy and the instances listen
HOST = "127.0.0.1"
#: where the clients connect from: what the application must see as REMOTE_ADDR
CLIENT_ADDR = "127.0.0.2"

#: the application: a short wait, then the address it was given as REMOTE_ADDR
APP = """
import time

def app(environ, start_response):
    time.sleep(0.005)
    body = environ["REMOTE_ADDR"].encode()
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
"""

#: in a line of HAProxy's ``option httplog``: the status and the termination state
LOG_OUTCOME = re.compile(r" (-?\d+) \d+ - - (\S{4}) ")


def find_haproxy() -> str | None:
    """The haproxy binary (Debian puts it in /usr/sbin, often not on PATH), or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("haproxy", path=path)


def haproxy_config(
    front: int, servers, *, readyz: bool = True, stats_socket: Path | None = None
) -> str:
    """docs/haproxy.cfg with the addresses of this run: HAProxy on ``front``, its
    servers on the (serving port, metrics port) pairs of ``servers``.

    ``readyz=False`` is for a server with neither /readyz nor the PROXY protocol:
    HAProxy checks ``GET /`` on the serving port and sends no PROXY header.
    ``stats_socket``: where HAProxy answers ``show stat``.
    """
    text = CONFIG.read_text()
    assert "\n    bind :80\n" in text
    text = text.replace("\n    bind :80\n", f"\n    bind {HOST}:{front}\n")
    found = re.findall(r"^    server (\S+) (\S+) check port (\d+)$", text, re.M)
    assert len(found) == len(servers), found
    for (name, addr, mport), (port, metrics_port) in zip(found, servers):
        check = f"check port {metrics_port}" if readyz else "check"
        text = text.replace(
            f"    server {name} {addr} check port {mport}\n",
            f"    server {name} {HOST}:{port} {check}\n",
        )
    assert " send-proxy-v2" in text
    if not readyz:
        text = text.replace("option httpchk GET /readyz", "option httpchk GET /")
        text = text.replace(" send-proxy-v2", "")
    if stats_socket is not None:
        text = text.replace(
            "\nglobal\n", f"\nglobal\n    stats socket {stats_socket}\n"
        )
    return text


class HAProxyError(RuntimeError):
    """HAProxy did not start; the message ends with its log."""


class HAProxy:
    """HAProxy in the foreground (``-db``) with ``config``, its log (``option
    httplog``) in a file of ``workdir``; back from the constructor once it listens on
    ``port``. Stopped by :meth:`stop`, or by the constructor when it fails."""

    def __init__(self, binary: str, workdir: Path, config: str, port: int, timeout):
        self.port = port
        self.conf = workdir / "haproxy.cfg"
        self.conf.write_text(config)
        self.log_path = workdir / "haproxy.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise HAProxyError(
                    f"haproxy exited ({self.proc.returncode}):\n{self.log()}"
                )
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise HAProxyError(
                        f"haproxy not listening after {timeout}s:\n{self.log()}"
                    ) from None
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def failed_log_lines(log: str) -> list:
    """HAProxy's log lines of requests that did not end well: status not 200, or a
    session that did not end as ``--`` (the first two characters of the termination
    state; the last two are about persistence cookies, which this set-up has none
    of)."""
    bad = []
    for line in log.splitlines():
        m = LOG_OUTCOME.search(line)
        if m and (m.group(1) != "200" or m.group(2)[:2] != "--"):
            bad.append(line)
    return bad


def client_loop(port: int, stop: threading.Event, out: dict) -> None:
    """One keep-alive client through HAProxy, bound to CLIENT_ADDR, no retries: a
    new connection only when the previous answer said it closes, or failed."""
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection(
                HOST, port, timeout=10, source_address=(CLIENT_ADDR, 0)
            )
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            out["errors"].append(f"{time.monotonic():.3f} {e!r}")
            out["failed"][type(e).__name__] += 1
            conn.close()
            conn = None
            continue
        if resp.status != 200:
            out["errors"].append(f"{time.monotonic():.3f} {resp.status} {body[:200]!r}")
            out["failed"][f"HTTP {resp.status}"] += 1
        else:
            out["ok"] += 1
            out["seen"][body.decode("latin-1")] += 1
        if resp.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


@contextlib.contextmanager
def clients(port: int, n: int):
    """``n`` clients (:func:`client_loop`) through HAProxy on ``port`` for as long as
    the block runs. The dict it yields is filled when they have stopped: ``ok``
    (requests answered 200), ``errors`` (each failure, with the time it came, in
    order), ``failed`` (the failures by kind: the exception's name or ``HTTP
    <status>``), ``seen`` (the answers' bodies, the REMOTE_ADDRs, counted) and
    ``stuck`` (clients that did not stop when told to, each waited for 15 s)."""
    stop = threading.Event()
    outs = [
        {
            "ok": 0,
            "errors": [],
            "failed": collections.Counter(),
            "seen": collections.Counter(),
        }
        for _ in range(n)
    ]
    threads = [
        threading.Thread(target=client_loop, args=(port, stop, o), daemon=True)
        for o in outs
    ]
    for t in threads:
        t.start()
    result = {}
    try:
        yield result
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        result["ok"] = sum(o["ok"] for o in outs)
        result["errors"] = sorted(e for o in outs for e in o["errors"])
        result["failed"] = sum((o["failed"] for o in outs), collections.Counter())
        result["seen"] = sum((o["seen"] for o in outs), collections.Counter())
        result["stuck"] = sum(t.is_alive() for t in threads)
