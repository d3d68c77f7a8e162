"""Stopping a server (SPEC section 5, processes): real processes, real signals.

SIGTERM and SIGINT stop gracefully: the listeners close at once (new connections are
refused), idle keep-alive connections are closed at once, the requests in flight get
their complete responses with ``Connection: close``, then the process exits 0;
``shutdown_timeout`` bounds the wait. A second SIGTERM/SIGINT, or SIGQUIT, stops at
once. No path prints a traceback. ``server.close()`` from another thread is the same
graceful stop, and ``attach_supervisor`` gives a master process its heartbeat pipe.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import (
    HOST,
    TARGET,
    RawConnection,
    ServerProcess,
    get,
    maitre_only,
)

pytestmark = maitre_only("waitress has no graceful stop on SIGTERM, no second-signal")

APP = """\
import os, sys, time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/sleep/"):
        sys.stderr.write(f"APP-ENTER {path}\\n")
        sys.stderr.flush()
        time.sleep(float(path.split("/")[2]))
    if path == "/echo":
        body = environ["wsgi.input"].read()
    else:
        body = f"{path} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "lifeapp.py").write_text(APP)
    return tmp_path


def start(appdir, *flags) -> tuple[ServerProcess, int]:
    proc = ServerProcess(
        [sys.executable, "-m", TARGET, f"--listen={HOST}:0", *flags, "lifeapp:app"],
        cwd=appdir,
    )
    line = proc.wait_for_line("Serving on")
    match = re.search(r":(\d+)$", line)
    assert match, line
    return proc, int(match[1])


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class InFlight(threading.Thread):
    """A request on its own connection, its response read in a thread."""

    def __init__(self, port: int, path: str):
        super().__init__(daemon=True)
        self.conn = RawConnection(port)
        self.path = path
        self.response = None
        self.error = None
        self.start()

    def run(self):
        try:
            self.response = self.conn.request(get(self.path))
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.conn.close()


@pytest.mark.parametrize("linger", [None, 0])
def test_sigterm_answers_requests_in_flight_and_closes_idle_connections(appdir, linger):
    """10 requests in the app (2 s each) and 20 idle keep-alive connections:
    SIGTERM closes the idle ones after keepalive_linger (2 s by default; at once
    with 0), refuses new connections, answers all 10 with Connection: close, and
    the process exits 0 in under 3 s."""
    args = [] if linger is None else [f"--keepalive-linger={linger}"]
    proc, port = start(appdir, "--threads=12", *args)
    idle = []
    try:
        for _ in range(20):
            conn = RawConnection(port)
            assert conn.request(get("/")).status == 200
            idle.append(conn)
        busy = [InFlight(port, "/sleep/2") for _ in range(10)]
        proc.wait_for_lines("APP-ENTER /sleep/2", 10)
        started = time.monotonic()
        os.kill(proc.proc.pid, signal.SIGTERM)
        time.sleep(0.2)
        assert refused(port), "a new connection was accepted after SIGTERM"
        for conn in idle:
            assert conn.is_closed(timeout=3.0)
        closed = time.monotonic() - started
        if linger is None:
            assert 1.5 < closed < 3.0, f"idle connections closed after {closed}s"
        else:
            assert closed < 1.0, "idle connections not closed at once"
        assert proc.wait() == 0
        took = time.monotonic() - started
        for t in busy:
            t.join(5)
            assert t.error is None, t.error
            assert t.response.status == 200
            assert t.response.header("Connection") == "close"
            assert t.response.body.startswith(b"/sleep/2 ")
        assert took < 3.5, took
    finally:
        for conn in idle:
            conn.close()
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.wait_for_line("Shutting down")
    assert "10 request(s) in flight" in line and "20 idle" in line, line


def test_connections_queued_in_the_kernel_are_answered(appdir):
    """Connections the kernel accepted but the server had not (connection_limit
    reached) when SIGTERM came are taken and answered, not dropped with the
    listening socket (gunicorn #3397)."""
    proc, port = start(appdir, "--connection-limit=1", "--threads=4")
    try:
        first = InFlight(port, "/sleep/1")
        proc.wait_for_line("APP-ENTER /sleep/1")
        queued = [InFlight(port, f"/queued/{i}") for i in range(3)]
        time.sleep(0.3)
        assert all(t.is_alive() for t in queued), "answered despite connection_limit"
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
        for t in [first, *queued]:
            t.join(5)
            assert t.error is None, t.error
            assert t.response.status == 200
            assert t.response.header("Connection") == "close"
        assert [t.response.body.split()[0] for t in queued] == [
            b"/queued/0",
            b"/queued/1",
            b"/queued/2",
        ]
    finally:
        proc.kill()
    assert "3 queued connection(s) accepted" in proc.stderr, proc.stderr


def test_request_being_received_is_answered(appdir):
    """A request whose body is still arriving when the stop begins is received
    whole and answered (a client in the middle of an upload gets its answer)."""
    proc, port = start(appdir)
    try:
        with RawConnection(port) as conn:
            conn.send(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"
            )
            time.sleep(0.2)
            os.kill(proc.proc.pid, signal.SIGTERM)
            proc.wait_for_line("Shutting down")
            time.sleep(0.3)
            conn.send(b"56789")
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, b"0123456789")
            assert resp.header("Connection") == "close"
        assert proc.wait() == 0
    finally:
        proc.kill()
    assert "1 request(s) being received" in proc.stderr, proc.stderr


def test_shutdown_timeout_abandons_what_still_runs(appdir):
    """shutdown_timeout=1 and a request sleeping 10 s: the process exits within
    2 s of SIGTERM, with one log line naming the count."""
    proc, port = start(appdir, "--shutdown-timeout=1")
    try:
        slow = InFlight(port, "/sleep/10")
        proc.wait_for_line("APP-ENTER /sleep/10")
        started = time.monotonic()
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
        assert time.monotonic() - started < 2.0
        slow.join(5)
        assert slow.response is None  # abandoned: the connection closed, no answer
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr_lines if "abandoning" in line]
    assert len(lines) == 1 and "abandoning 1 request(s)" in lines[0], proc.stderr


@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGQUIT,),
    ],
    ids=["second-sigint", "second-sigterm", "sigquit"],
)
def test_immediate_stop(appdir, signals):
    """A second SIGINT/SIGTERM during the drain, or SIGQUIT, stops at once (the
    request sleeping 10 s is abandoned), without a traceback."""
    proc, port = start(appdir)
    try:
        slow = InFlight(port, "/sleep/10")
        proc.wait_for_line("APP-ENTER /sleep/10")
        for signum in signals[:-1]:
            os.kill(proc.proc.pid, signum)
            proc.wait_for_line("Shutting down")
            time.sleep(0.2)
            assert proc.proc.poll() is None, "stopped before the second signal"
        started = time.monotonic()
        os.kill(proc.proc.pid, signals[-1])
        assert proc.wait() == 0
        assert time.monotonic() - started < 1.0
        slow.join(5)
        assert slow.response is None
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Stopping at once: 1 request(s) in flight abandoned" in proc.stderr


def test_sigint_is_graceful_and_logged_at_once(appdir):
    """Ctrl-C: the stop is logged when it begins (not when the drain ends), the
    request in flight is answered, the exit status is 0."""
    proc, port = start(appdir)
    try:
        slow = InFlight(port, "/sleep/1.5")
        proc.wait_for_line("APP-ENTER /sleep/1.5")
        os.kill(proc.proc.pid, signal.SIGINT)
        line = proc.wait_for_line("Shutting down")
        assert "1 request(s) in flight" in line
        assert slow.is_alive(), "the stop was logged only after the drain"
        assert proc.wait() == 0
        slow.join(5)
        assert slow.response is not None and slow.response.status == 200, slow.error
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Shutdown complete" in proc.stderr


def test_sighup_and_sigusr1_do_not_stop(appdir):
    """SIGHUP and SIGUSR1 call reload_certificates() and reopen_logs(): the
    server keeps serving (their default action would kill the process)."""
    proc, port = start(appdir)
    try:
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            os.kill(proc.proc.pid, signum)
            time.sleep(0.3)
            assert proc.proc.poll() is None
            with RawConnection(port) as conn:
                assert conn.request(get("/")).status == 200
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr


# ------------------------------------------------------------ in the process


def slow_app(environ, start_response):
    time.sleep(float(environ["PATH_INFO"].strip("/") or 0))
    start_response("200 OK", [("Content-Length", "4")])
    return [b"done"]


def test_close_from_another_thread_answers_in_flight(serve_app):
    """server.close() is a graceful stop: the request in flight is answered (with
    Connection: close), the port is closed, and close() returns once run() has."""
    srv = serve_app(slow_app)
    slow = InFlight(srv.port, "/1")
    time.sleep(0.3)
    started = time.monotonic()
    srv.server.close()
    assert not srv.thread.is_alive()
    assert 0.3 < time.monotonic() - started < 3
    slow.join(5)
    assert slow.error is None, slow.error
    assert slow.response.status == 200 and slow.response.body == b"done"
    assert slow.response.header("Connection") == "close"
    assert refused(srv.port)


def test_close_timeout_zero_stops_at_once(serve_app):
    srv = serve_app(slow_app)
    slow = InFlight(srv.port, "/5")
    time.sleep(0.3)
    started = time.monotonic()
    srv.server.close(timeout=0)
    assert not srv.thread.is_alive()
    assert time.monotonic() - started < 1
    slow.join(5)
    assert slow.response is None


def read_pipe(fd: int, until: bytes, timeout: float) -> bytes:
    """Bytes from the pipe ``fd`` until ``until`` is among them or ``timeout``."""
    got = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(fd, False)
    while until not in got and time.monotonic() < deadline:
        try:
            got += os.read(fd, 100)
        except BlockingIOError:
            time.sleep(0.02)
    return got


def test_attach_supervisor_ready_heartbeat_max_requests():
    """The loop writes R when it accepts, a '.' about every second, M once
    max_requests requests are served, and serves on after M."""
    from maitre import create_server

    r, w = os.pipe()
    server = create_server(slow_app, host=HOST, port=0, threads=2)
    server.attach_supervisor(w, max_requests=5)
    os.close(w)  # the engine has its own copy
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert read_pipe(r, b"R", 5) == b"R"
        beats = read_pipe(r, b"..", 3.5)
        assert beats == b"..", beats
        with RawConnection(int(server.effective_port)) as conn:
            for _ in range(4):
                assert conn.request(get("/")).status == 200
        assert b"M" not in read_pipe(r, b"M", 0.3)
        with RawConnection(int(server.effective_port)) as conn:
            for _ in range(3):
                assert conn.request(get("/")).status == 200
        got = read_pipe(r, b"M", 3)
        assert got.count(b"M") == 1 and set(got) <= set(b".M"), got
    finally:
        server.close()
        thread.join(10)
        os.close(r)
    assert not thread.is_alive()


_BUSY_EXIT_SCRIPT = """
import os, signal, socket, threading, time
from maitre import create_server

def app(environ, start_response):
    started = time.monotonic()
    while time.monotonic() - started < 60:  # a Python loop, never done in time
        pass
    start_response("200 OK", [])
    return [b""]

server = create_server(app, host="127.0.0.1", port=0, shutdown_timeout=0.3)

def client():
    s = socket.create_connection(("127.0.0.1", server.effective_port))
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    s.recv(100)

threading.Thread(target=client, daemon=True).start()
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
server.run()
print("returned", flush=True)
"""


def test_program_exits_after_abandoning_a_busy_request():
    """A program whose server abandons a request stuck in a Python loop
    (shutdown_timeout) exits at once and normally after run() returns: the
    abandoned thread must not take the GIL back while the interpreter finalizes
    (SIGABRT). Three runs, as that depends on timing."""
    for _ in range(3):
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", _BUSY_EXIT_SCRIPT],
            capture_output=True,
            timeout=60,
        )
        assert (proc.returncode, proc.stdout) == (0, b"returned\n"), proc.stderr[-800:]
        assert b"Traceback" not in proc.stderr, proc.stderr[-800:]
        assert b"abandoning 1 request(s)" in proc.stderr, proc.stderr[-800:]
        assert time.monotonic() - started < 10


def test_shutdown_timeout_setting():
    from maitre.adjustments import Adjustments

    assert Adjustments().shutdown_timeout == 30
    assert Adjustments(shutdown_timeout="1.5").shutdown_timeout == 1.5
    with pytest.raises(ValueError, match="shutdown_timeout"):
        Adjustments(shutdown_timeout=-1)
