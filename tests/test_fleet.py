"""Behind a load balancer: the health probes of the metrics listener, shutdown_delay,
and the keep-alive linger of a graceful stop or a rolling reload (no request lost)."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time

import pytest
from helpers import HOST, Cluster, free_port, wait_for

APP = """
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.05)
    body = b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "fapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def cluster(appdir):
    started = []

    def start(*args, **kw):
        c = Cluster(appdir, *args, app="fapp:app", **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def probe(port: int, path: str, method: str = "GET", timeout: float = 2.0):
    """(status, headers, body) of one request to the metrics listener."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def wait_serving(port: int) -> None:
    def up():
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            return False

    assert wait_for(up, timeout=15)


def test_probes_answer_beside_idle_sockets(cluster):
    mport = free_port()
    c = cluster(f"--metrics-listen={HOST}:{mport}")
    c.wait_log("Serving on")
    wait_serving(mport)
    idle = [socket.create_connection((HOST, mport)) for _ in range(10)]
    try:
        for path in ("/metrics", "/livez", "/readyz"):
            t0 = time.monotonic()
            status, _, _ = probe(mport, path)
            assert status == 200, path
            assert time.monotonic() - t0 < 0.5, path
        status, _, body = probe(mport, "/livez", method="HEAD")
        assert status == 200 and body == b""
    finally:
        for s in idle:
            s.close()


def test_shutdown_delay_flips_readiness_and_closes_keepalive(cluster):
    mport = free_port()
    c = cluster(
        f"--metrics-listen={HOST}:{mport}", "--shutdown-delay=1.5", "--threads=2"
    )
    c.wait_log("Serving on")
    wait_serving(mport)
    assert probe(mport, "/readyz")[0] == 200
    conn = http.client.HTTPConnection(HOST, c.port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"hello"
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert wait_for(lambda: probe(mport, "/readyz")[0] == 503, timeout=2)
    assert time.monotonic() - t0 < 0.1 + 0.1  # flip, plus one probe's round trip
    # Still serving, each keep-alive connection closing after its next response.
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.read() == b"hello"
    assert resp.getheader("Connection") == "close"
    fresh = http.client.HTTPConnection(HOST, c.port, timeout=5)
    fresh.request("GET", "/")
    resp = fresh.getresponse()
    assert resp.read() == b"hello" and resp.getheader("Connection") == "close"
    assert c.wait_exit(10) == 0
    took = time.monotonic() - t0
    assert 1.4 < took < 6, took


def keepalive_loop(port: int, path: str, stop: threading.Event, out: dict) -> None:
    """One keep-alive client, no retries: a new connection only once the server
    said Connection: close (or closed cleanly between responses it announced)."""
    conn = None
    while not stop.is_set():
        if conn is None:
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
                conn.connect()
            except ConnectionRefusedError:
                out["refused"] += 1  # the server has gone: nothing was sent
                conn = None
                time.sleep(0.01)
                continue
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            out["ok"] += 1
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            out["errors"].append(repr(e))
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def run_clients(port, path, n, action):
    stop = threading.Event()
    outs = [{"ok": 0, "refused": 0, "errors": []} for _ in range(n)]
    threads = [
        threading.Thread(target=keepalive_loop, args=(port, path, stop, o))
        for o in outs
    ]
    for t in threads:
        t.start()
    try:
        action()
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    errors = [e for o in outs for e in o["errors"]]
    ok = sum(o["ok"] for o in outs)
    return ok, errors


@pytest.mark.parametrize("path", ["/", "/slow"])
def test_no_keepalive_request_lost_on_reload(cluster, path):
    c = cluster("--workers=2", "--threads=4")
    c.wait_log("Ready with 2 worker(s)")
    wait_serving(c.port)

    def reload():
        time.sleep(1)
        c.signal(signal.SIGHUP)
        c.wait_log("Reloaded:")
        # The old workers' linger, and some serving by the new ones.
        time.sleep(3)

    ok, errors = run_clients(c.port, path, 4, reload)
    assert ok > 20
    assert errors == []


@pytest.mark.parametrize("path", ["/", "/slow"])
def test_no_keepalive_request_lost_on_graceful_stop(cluster, path):
    c = cluster("--threads=4")
    c.wait_log("Serving on")
    wait_serving(c.port)

    def stop():
        time.sleep(1)
        c.signal(signal.SIGTERM)
        assert c.wait_exit(15) == 0

    ok, errors = run_clients(c.port, path, 4, stop)
    assert ok > 10
    assert errors == []


def test_shutdown_delay_under_a_master(cluster):
    mport = free_port()
    c = cluster(
        "--workers=2", f"--metrics-listen={HOST}:{mport}", "--shutdown-delay=1.5"
    )
    c.wait_log("Ready with 2 worker(s)")
    wait_serving(mport)
    assert wait_for(lambda: probe(mport, "/readyz")[0] == 200, timeout=15)
    assert probe(mport, "/livez")[0] == 200
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert wait_for(lambda: probe(mport, "/readyz")[0] == 503, timeout=2)
    assert time.monotonic() - t0 < 0.1 + 0.1  # flip, plus one probe's round trip
    # The workers serve on during the delay, closing keep-alive connections (once
    # each has handled the master's word: its signal handlers run between waits).
    time.sleep(0.3)
    for _ in range(4):
        conn = http.client.HTTPConnection(HOST, c.port, timeout=5)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.read() == b"hello"
        assert resp.getheader("Connection") == "close"
        conn.close()
    assert probe(mport, "/livez")[0] == 200
    assert c.wait_exit(12) == 0
    assert time.monotonic() - t0 > 1.4


def test_second_signal_ends_the_delay(cluster):
    c = cluster("--shutdown-delay=30")
    c.wait_log("Serving on")
    wait_serving(c.port)
    # Answered: run() has installed its signal handlers.
    conn = http.client.HTTPConnection(HOST, c.port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"hello"
    conn.close()
    c.signal(signal.SIGTERM)
    c.wait_log("shutdown_delay")
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait_exit(10) == 0
    assert time.monotonic() - t0 < 5
