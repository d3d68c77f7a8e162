"""The example unit pair docs/maitre.socket + docs/maitre.service, run as systemd
would run it, without systemd: the socket bound from ListenStream= and passed with
LISTEN_FDS (by ``systemd-socket-activate`` when installed, else by a small exec
wrapper doing the same), the ExecStart= command line run as written (with this
checkout's maitre-serve and a test app), and a NOTIFY_SOCKET bound by the test to
receive what Type=notify-reload expects."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from helpers import HOST, RawConnection, ServerProcess, get, maitre_only

pytestmark = maitre_only("waitress has no systemd support")

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONSOLE_SCRIPT = Path(sys.executable).with_name("maitre-serve")

APP = """
import os
def app(environ, start_response):
    body = f"unit {os.getpid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""

#: systemd's part when systemd-socket-activate is missing: the socket as fd 3,
#: LISTEN_PID/LISTEN_FDS naming the process that then execs the service.
ACTIVATE = """
import os, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((host, int(port)))
sock.listen(16)
os.dup2(sock.fileno(), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def unit(name: str) -> dict:
    """``Key=value`` lines of a unit file (comments and sections dropped)."""
    values: dict = {}
    for line in (DOCS / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, value)
    return values


def test_unit_files_agree():
    socket_unit, service = unit("maitre.socket"), unit("maitre.service")
    assert socket_unit["ListenStream"] == "8080"
    assert service["Type"] == "notify-reload"
    assert service["Requires"] == "maitre.socket"
    # Room for the graceful stop before systemd kills.
    timeout = re.search(r"--shutdown-timeout=(\d+)", service["ExecStart"])
    assert timeout and int(service["TimeoutStopSec"]) > int(timeout.group(1))


def test_exec_start_under_socket_activation(tmp_path):
    if not CONSOLE_SCRIPT.exists():
        pytest.skip(f"no console script at {CONSOLE_SCRIPT}")
    (tmp_path / "myapp.py").write_text(APP)
    argv = shlex.split(unit("maitre.service")["ExecStart"])
    assert argv[0].endswith("/maitre-serve") and argv[-1] == "myapp:app"
    argv[0] = str(CONSOLE_SCRIPT)
    with socket.socket() as probe:  # ListenStream=8080, on a free loopback port
        probe.bind((HOST, 0))
        address = f"{HOST}:{probe.getsockname()[1]}"
    port = int(address.rsplit(":", 1)[1])
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify")
    notify.bind(notify_path)
    notify.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    activate = shutil.which("systemd-socket-activate")
    if activate:
        # It execs the service at the first connection, as a socket unit does.
        cmd = [activate, "-l", address, "-E", f"NOTIFY_SOCKET={notify_path}", *argv]
    else:
        cmd = [sys.executable, "-c", ACTIVATE, address, *argv]
    proc = ServerProcess(cmd, cwd=tmp_path, env=env, timeout=20)
    try:
        first = None
        for _ in range(100):  # the socket is bound by the activator first
            try:
                first = RawConnection(port)
                break
            except ConnectionRefusedError:
                if proc.proc.poll() is not None:
                    pytest.fail(f"exited {proc.proc.returncode}:\n{proc.stderr}")
                time.sleep(0.05)
        assert first is not None
        with first:
            # Made before the service ran: waited in the backlog, not lost.
            resp = first.request(get("/"))
        assert resp.status == 200 and resp.text.startswith("unit ")
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        workers = len(os.sched_getaffinity(0))  # --workers=auto
        assert f"STATUS=serving with {workers} worker(s)" in messages[-1]
        if workers > 1:
            # systemctl reload: SIGHUP, RELOADING=1 then READY=1.
            os.kill(proc.proc.pid, signal.SIGHUP)
            messages = []
            while not any("READY=1" in m for m in messages):
                messages.append(notify.recv(4096).decode())
            assert "RELOADING=1" in messages[0] and "MONOTONIC_USEC=" in messages[0]
        with RawConnection(port) as conn:
            assert conn.request(get("/")).status == 200
        os.kill(proc.proc.pid, signal.SIGTERM)  # systemctl stop
        assert "STOPPING=1" in notify.recv(4096).decode()
        assert proc.wait() == 0
        assert "Traceback" not in proc.stderr
    finally:
        proc.kill()
        notify.close()
