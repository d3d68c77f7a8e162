"""Overload shedding and departed clients: ``max_queued_requests`` and
``queue_timeout`` answer 503 from the engine, on time, while every thread is busy;
``/readyz`` says so while the queue is full (in one process and under a master); a
request whose client reset the connection while it waited for a thread is never run
(499 in the access log), while a client that only half-closed still gets its
response. waitress has none of this."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import (
    HOST,
    TARGET,
    Cluster,
    LogCapture,
    free_port,
    maitre_only,
    wait_for,
)

pytestmark = maitre_only("waitress queues without bound and runs every request")

if TARGET == "maitre":
    from prometheus_client.parser import text_string_to_metric_families

calls: list = []
release = threading.Event()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    calls.append(path)
    if path.startswith("/slow"):
        time.sleep(0.3)
    elif path.startswith("/long"):
        time.sleep(1.5)
    elif path.startswith("/block"):
        release.wait(30)
    body = b"ok " + path.encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def served(serve_app):
    def start(**settings):
        calls.clear()
        release.clear()
        settings.setdefault("metrics_listen", f"{HOST}:0")
        return serve_app(app, **settings)

    yield start
    release.set()


def metrics_get(served, path="/metrics"):
    """(status, body) of a GET on the metrics listener."""
    host, port = served.server.metrics_address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def shed(served, reason: str) -> float:
    """maitre_requests_shed_total{reason=...}."""
    text = metrics_get(served)[1]
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "maitre_requests_shed_total" and s.labels == {
                "reason": reason
            }:
                return s.value
    raise AssertionError(f"no shed series for {reason}:\n{text}")


def fetch(port: int, path: str, results: list, start: threading.Barrier | None = None):
    """One request on a new connection: appends (status, headers, seconds taken)."""
    if start is not None:
        start.wait(10)
    conn = http.client.HTTPConnection(HOST, port, timeout=15)
    try:
        t0 = time.monotonic()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        results.append((resp.status, dict(resp.getheaders()), time.monotonic() - t0))
    except Exception as e:  # counted as lost below
        results.append((None, {"error": repr(e)}, 0.0))
    finally:
        conn.close()


def send_raw(port: int, path: str) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def occupy(port: int, path: str = "/block") -> socket.socket:
    """Sends a request that holds a thread until ``release`` is set."""
    sock = send_raw(port, path)
    assert wait_for(lambda: path in calls, 5)
    return sock


def read_response(sock: socket.socket, path: str) -> bytes:
    """What arrives until the body ``ok <path>`` has (or the connection closes)."""
    sock.settimeout(10)
    data = b""
    while not data.endswith(b"ok " + path.encode()):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_burst_is_shed_fast(served):
    srv = served(threads=2, max_queued_requests=4)
    n = 40
    results: list = []
    start = threading.Barrier(n)
    clients = [
        threading.Thread(target=fetch, args=(srv.port, f"/slow/{i}", results, start))
        for i in range(n)
    ]
    with LogCapture("maitre") as log:
        for c in clients:
            c.start()
        for c in clients:
            c.join(30)
        # Said, but not once per request: a line a second at most.
        assert wait_for(lambda: log.messages("503 Service Unavailable to"), 5)
    said = log.messages("max_queued_requests (4) reached")
    assert 1 <= len(said) <= 3, said
    assert len(results) == n
    lost = [r for r in results if r[0] not in (200, 503)]
    assert lost == []
    refused = [r for r in results if r[0] == 503]
    assert refused, "nothing was shed"
    assert len(refused) < n
    for _, headers, took in refused:
        assert took < 0.5, took
        assert headers["Retry-After"] == "1"
        assert headers["Connection"] == "close"
    # Every request the engine took ran: none was lost between the queue and a thread.
    assert len(calls) == n - len(refused)
    assert shed(srv, "queue_full") == len(refused)
    assert shed(srv, "queue_timeout") == 0


def assert_logged(access_records, line: str) -> None:
    """``line`` comes out of the access log within 5 s."""
    assert wait_for(lambda: line in access_records.messages(), 5), access_records


def test_a_request_that_waited_queue_timeout_gets_503_on_time(served, access_records):
    srv = served(
        threads=1,
        queue_timeout=0.3,
        access_log="logging",
        access_log_format="%(r)s %(s)s",
    )
    first: list = []
    holder = threading.Thread(target=fetch, args=(srv.port, "/long", first))
    holder.start()
    assert wait_for(lambda: "/long" in calls, 5)
    late: list = []
    fetch(srv.port, "/late", late)
    status, headers, took = late[0]
    assert status == 503
    assert 0.25 < took < 0.8, took
    assert headers["Retry-After"] == "1"
    assert headers["Connection"] == "close"
    holder.join(10)
    assert first[0][0] == 200
    assert "/late" not in calls
    assert shed(srv, "queue_timeout") == 1
    assert_logged(access_records, "GET /late HTTP/1.1 503")


def test_readyz_says_503_while_the_queue_is_full(served):
    srv = served(threads=1, max_queued_requests=1)
    assert metrics_get(srv, "/readyz")[0] == 200
    holder = occupy(srv.port)
    waiting = send_raw(srv.port, "/queued")
    assert wait_for(lambda: metrics_get(srv, "/readyz")[0] == 503, 3)
    # The next one is turned away at once.
    refused: list = []
    fetch(srv.port, "/refused", refused)
    assert refused[0][0] == 503
    release.set()
    assert read_response(waiting, "/queued").endswith(b"ok /queued")
    assert wait_for(lambda: metrics_get(srv, "/readyz")[0] == 200, 3)
    assert "/refused" not in calls
    holder.close()
    waiting.close()


@pytest.mark.parametrize("leave", ["reset", "close"])
def test_a_departed_client_request_is_not_run(served, access_records, leave):
    # A plain close() before any response byte sends the FIN a half-close sends: the
    # interim 100 tells them apart (a closed socket answers it with a reset).
    srv = served(threads=1, access_log="logging", access_log_format="%(r)s %(s)s")
    holder = occupy(srv.port)
    gone = send_raw(srv.port, "/gone")
    time.sleep(0.1)  # its request waits for the thread
    if leave == "reset":
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()
    assert_logged(access_records, "GET /gone HTTP/1.1 499")
    assert shed(srv, "client_gone") == 1
    release.set()
    assert read_response(holder, "/block").endswith(b"ok /block")
    # Served in order after it: had /gone run, it would have run first.
    after: list = []
    fetch(srv.port, "/after", after)
    assert after[0][0] == 200
    assert "/gone" not in calls
    holder.close()


def test_a_half_closed_client_still_gets_its_response(served, access_records):
    srv = served(threads=1, access_log="logging", access_log_format="%(r)s %(s)s")
    holder = occupy(srv.port)
    half = send_raw(srv.port, "/half")
    time.sleep(0.1)
    half.shutdown(socket.SHUT_WR)  # FIN after a complete request: still reading
    time.sleep(0.2)
    release.set()
    assert read_response(holder, "/block").endswith(b"ok /block")
    got = read_response(half, "/half")
    # The interim 100 that told it from a closed socket, then its response.
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), got
    assert got.endswith(b"ok /half")
    assert "/half" in calls
    assert shed(srv, "client_gone") == 0
    holder.close()
    half.close()


def test_a_half_closed_http10_client_gets_no_interim_response(served):
    srv = served(threads=1)
    holder = occupy(srv.port)
    half = socket.create_connection((HOST, srv.port), timeout=10)
    half.sendall(b"GET /half10 HTTP/1.0\r\n\r\n")
    half.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    release.set()
    assert read_response(holder, "/block").endswith(b"ok /block")
    got = read_response(half, "/half10")
    assert got.startswith(b"HTTP/1.0 200 OK\r\n"), got
    assert "/half10" in calls
    holder.close()
    half.close()


MASTER_APP = """
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(3)
    body = b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def probe(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_readyz_under_a_master_says_503_when_every_worker_is_full(tmp_path):
    (tmp_path / "shedapp.py").write_text(MASTER_APP)
    mport = free_port()
    c = Cluster(
        tmp_path,
        "--workers=2",
        "--threads=1",
        "--max-queued-requests=1",
        f"--metrics-listen={HOST}:{mport}",
        app="shedapp:app",
    )
    try:
        c.wait_log("Ready with 2 worker(s)")
        assert wait_for(lambda: probe(mport, "/readyz") == 200, 15)
        results: list = []
        clients = [
            threading.Thread(target=fetch, args=(c.port, "/slow", results))
            for _ in range(10)
        ]
        for t in clients:
            t.start()
            time.sleep(0.02)
        # Each worker: one request running, one waiting (the others were shed).
        assert wait_for(lambda: probe(mport, "/readyz") == 503, 2.5)
        for t in clients:
            t.join(20)
        assert sorted({r[0] for r in results}) == [200, 503]
        assert wait_for(lambda: probe(mport, "/readyz") == 200, 5)
    finally:
        c.stop()


@pytest.mark.parametrize("name", ["max_queued_requests", "queue_timeout"])
def test_negative_values_are_refused_naming_the_setting(name):
    from maitre.adjustments import Adjustments

    with pytest.raises(ValueError, match=name):
        Adjustments(**{name: -1})


def test_the_settings_come_from_the_table():
    from maitre.adjustments import Adjustments

    adj = Adjustments(max_queued_requests="8", queue_timeout="2.5")
    assert (adj.max_queued_requests, adj.queue_timeout) == (8, 2.5)
    kw = Adjustments.parse_args(["--max-queued-requests=3", "--queue-timeout=0.5"])[0]
    assert (kw["max_queued_requests"], kw["queue_timeout"]) == ("3", "0.5")
    default = Adjustments()
    assert (default.max_queued_requests, default.queue_timeout) == (0, 0)
