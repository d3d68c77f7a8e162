"""``request_timeout``: an application call still running after it is answered 504 (or
its connection cut once the response has started), interrupted with
``maitre.RequestTimeout`` and its stack logged once; a thread blocked in C code, which
no asynchronous exception interrupts, shows as stuck in ``/metrics``; under a master,
a worker whose threads are all stuck is replaced. Real servers on 127.0.0.1, every
wait bounded. waitress has no request timeout ("will never support" it, #267)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest
from helpers import (
    HOST,
    TARGET,
    Cluster,
    LogCapture,
    RawConnection,
    get,
    maitre_only,
    wait_for,
)

pytestmark = maitre_only("waitress has no request timeout")

if TARGET == "maitre":
    from maitre import RequestAbandoned, RequestTimeout
    from prometheus_client.parser import text_string_to_metric_families

#: set by a test to let the thread blocked in C (``/stuck``) go
release = threading.Event()
#: what the application saw, by path
seen: dict = {}


def hanging_application_call(environ):
    # A Python loop of short sleeps: RequestTimeout is raised between two of them.
    for _ in range(600):
        time.sleep(0.01)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/loop":
        hanging_application_call(environ)
    elif path == "/chunked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return streaming()
    elif path == "/length":
        write = start_response("200 OK", [("Content-Length", "100000")])
        write(b"x" * 1000)
        hanging_application_call(environ)
    elif path == "/caught":
        try:
            hanging_application_call(environ)
        except RequestTimeout:
            seen["caught"] = True
        body = b"returned anyway"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    elif path == "/stuck":
        # Blocked in C (a lock acquired with a timeout), where an asynchronous
        # exception waits until the call returns; so would time.sleep(30).
        release.wait(30)
    body = b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def streaming():
    yield b"first part"
    hanging_application_call(None)
    yield b"never sent"


@pytest.fixture
def timed(serve_app):
    def start(**settings):
        release.clear()
        seen.clear()
        settings.setdefault("request_timeout", 1)
        settings.setdefault("threads", 1)
        settings.setdefault("metrics_listen", f"{HOST}:0")
        settings.setdefault("shutdown_timeout", 2)
        return serve_app(app, **settings)

    yield start
    release.set()


def metrics(served) -> dict:
    host, port = served.server.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def read_to_close(port: int, path: str, timeout: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends for one request until it closes; and how long."""
    start = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(get(path))
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return data, time.monotonic() - start


def test_the_setting_is_refused_negative():
    from maitre.adjustments import Adjustments

    with pytest.raises(ValueError, match="request_timeout must not be negative"):
        Adjustments(request_timeout=-1)
    assert Adjustments(request_timeout="2.5").request_timeout == 2.5
    assert Adjustments().request_timeout == 0


def test_request_timeout_is_a_request_abandoned():
    import maitre

    assert issubclass(RequestTimeout, RequestAbandoned)
    assert maitre.RequestTimeout is RequestTimeout
    assert "RequestTimeout" in maitre.__all__


def test_a_hung_request_gets_504_its_stack_logged_and_its_thread_back(timed):
    with LogCapture("maitre") as log, LogCapture("maitre.access") as access:
        served = timed(access_log="logging")
        start = time.monotonic()
        with served.connect() as conn:
            response = conn.request(get("/loop"))
            took = time.monotonic() - start
            assert response.status == 504, response
            assert response.header("Connection") == "close"
            assert conn.is_closed(), "the connection must close after the 504"
        assert 0.9 < took < 2.5, took
        # One thread: this answer proves the hung one went back to the pool.
        assert served.request(get("/hello")).status == 200
        assert wait_for(lambda: any(" 504 " in m for m in access.messages()), 5)
        timeouts = log.messages("request_timeout")
        assert len(timeouts) == 1, timeouts
        [line] = timeouts
        assert '"GET /loop"' in line and "504" in line
        # The stack of the thread at that moment names the application's code.
        assert "in hanging_application_call" in line, line
        assert "in app" in line, line
    figures = metrics(served)
    assert figures["maitre_requests_timed_out_total"] == 1
    assert figures["maitre_threads_stuck"] == 0


def test_a_chunked_response_under_way_is_cut_without_its_last_chunk(timed):
    served = timed()
    data, took = read_to_close(served.port, "/chunked")
    assert took < 2.5, took
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    assert b"transfer-encoding: chunked" in head.lower(), head
    assert b"first part" in body
    assert not body.endswith(b"0\r\n\r\n"), body
    assert b"never sent" not in body
    assert served.request(get("/hello")).status == 200


def test_a_response_of_known_length_under_way_is_cut_short(timed):
    served = timed()
    data, took = read_to_close(served.port, "/length")
    assert took < 2.5, took
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 100000" in head
    assert len(body) == 1000, len(body)
    assert served.request(get("/hello")).status == 200


def test_what_an_application_returns_after_catching_the_timeout_is_discarded(timed):
    served = timed()
    data, took = read_to_close(served.port, "/caught")
    assert took < 2.5, took
    assert data.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), data
    assert data.count(b"HTTP/1.1") == 1, data
    assert b"returned anyway" not in data
    assert wait_for(lambda: seen.get("caught"), 5)
    assert served.request(get("/hello")).status == 200


def test_a_thread_blocked_in_c_shows_as_stuck_until_it_returns(timed):
    served = timed(threads=2)
    with LogCapture("maitre") as log:
        data, took = read_to_close(served.port, "/stuck")
        assert data.startswith(b"HTTP/1.1 504"), data
        assert took < 2.5, took
        # The exception waits for the lock's acquire to return: the thread stays in
        # the call, and counts as stuck a moment later.
        assert wait_for(lambda: metrics(served)["maitre_threads_stuck"] == 1, 5)
        assert metrics(served)["maitre_requests_timed_out_total"] == 1
        assert served.server.stats()["Threads Stuck"] == 1
        # The other thread serves.
        assert served.request(get("/hello")).status == 200
        release.set()
        # Back from C, the thread meets RequestTimeout, and the pool has it again.
        assert wait_for(lambda: metrics(served)["maitre_threads_stuck"] == 0, 5)
        assert len(log.messages("request_timeout")) == 1
    with served.connect() as a, served.connect() as b:
        assert a.request(get("/hello")).status == 200
        assert b.request(get("/hello")).status == 200


def test_off_by_default(serve_app):
    served = serve_app(app, threads=1)
    start = time.monotonic()
    with RawConnection(served.port) as conn:
        response = conn.request(get("/chunked"))
    # Not cut: the whole stream, over its six seconds.
    assert response.status == 200 and response.body.endswith(b"never sent")
    assert time.monotonic() - start > 5


STUCK_APP = """
import os
import re
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        time.sleep(60)  # in C: the asynchronous exception waits for it
    if environ["PATH_INFO"] == "/stuck-holding-the-gil":
        # A regular expression that backtracks without end, in C and holding the GIL
        # all along: nothing else in the process runs Python until it is killed.
        re.match(r"(a|aa)+$", "a" * 64 + "b")
    body = f"ok {os.getpid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.mark.parametrize("path", ["/stuck", "/stuck-holding-the-gil"])
def test_a_worker_whose_threads_are_all_stuck_is_replaced(tmp_path, path):
    from test_workers import fetch

    (tmp_path / "stuckapp.py").write_text(STUCK_APP)
    c = Cluster(
        tmp_path,
        "--workers=2",
        "--threads=1",
        "--request-timeout=1",
        "--shutdown-timeout=1",
        app="stuckapp:app",
    )
    try:
        c.wait_log("Ready with 2 worker(s)")
        first = c.workers()
        assert len(first) == 2
        data, took = read_to_close(c.port, path)
        assert data.startswith(b"HTTP/1.1 504"), data
        assert took < 2.5, took
        [line] = c.wait_log("has every thread stuck past request_timeout")
        pid = int(line.split("Worker ")[1].split()[0])
        assert pid in first
        assert wait_for(lambda: pid not in c.workers() and len(c.workers()) == 2, 20), (
            c.proc.stderr
        )
        for _ in range(10):
            assert fetch(c.port).status == 200
    finally:
        c.stop()
