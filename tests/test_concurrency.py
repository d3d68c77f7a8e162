"""Concurrency: slow apps never stall other connections; many concurrent clients
all get correct answers; a backed-up queue is logged. Slow readers and uploaders
are in test_slow_clients.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from apps import path_body_app
from helpers import get, post


def _quick_or_blocking_app(release: threading.Event, started: threading.Event):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            started.set()
            release.wait(20)
            body = b"slow done"
        else:
            body = b"quick"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


def test_slow_app_does_not_stall_other_connections(serve_app):
    """While one request is blocked in the app, a request on another
    connection is answered (threads=4)."""
    release, started = threading.Event(), threading.Event()
    srv = serve_app(_quick_or_blocking_app(release, started), threads=4)
    slow = srv.connect()
    try:
        slow.send(get("/slow"))
        assert started.wait(10)
        t0 = time.monotonic()
        resp = srv.request(get("/quick"))
        elapsed = time.monotonic() - t0
        assert (resp.status, resp.body) == (200, b"quick")
        assert elapsed < 5
        assert not release.is_set()
    finally:
        release.set()
    with slow:
        assert slow.read_response().body == b"slow done"


def test_blocked_and_computing_requests_leave_room_for_a_quick_one(serve_app):
    """With one request blocked in the app (GIL released) and one computing in
    Python without end (GIL held), a third request is still answered by the
    idle third thread (threads=3): a thread that computes does not keep the
    others asleep for longer than a short budget, and one that blocks does not
    count as busy."""
    release = threading.Event()
    blocked, computing = threading.Event(), threading.Event()

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/block":
            blocked.set()
            release.wait(20)
        elif path == "/compute":
            computing.set()
            deadline = time.monotonic() + 20
            while not release.is_set() and time.monotonic() < deadline:
                pass
        body = path.encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    srv = serve_app(app, threads=3)
    block, compute = srv.connect(), srv.connect()
    try:
        block.send(get("/block"))
        assert blocked.wait(10)
        compute.send(get("/compute"))
        assert computing.wait(10)
        resp = srv.request(get("/quick"))
        assert (resp.status, resp.body) == (200, b"/quick")
        assert not release.is_set()
    finally:
        release.set()
    with block, compute:
        assert block.read_response().body == b"/block"
        assert compute.read_response().body == b"/compute"


def test_sleeping_app_runs_concurrently(serve_app):
    """Four requests to an app sleeping 0.5 s on four connections finish in
    well under the 2 s they would take one after another."""

    def app(environ, start_response):
        time.sleep(0.5)
        start_response("200 OK", [("Content-Length", "5")])
        return [b"slept"]

    srv = serve_app(app, threads=4)
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: srv.request(get("/")).body, range(4)))
    elapsed = time.monotonic() - t0
    assert results == [b"slept"] * 4
    assert elapsed < 1.6


def test_many_concurrent_clients(serve_app):
    """20 clients x 10 keep-alive requests each, all correct and in order."""
    srv = serve_app(path_body_app, threads=4)

    def client(n):
        with srv.connect() as conn:
            out = []
            for i in range(10):
                body = f"{n}-{i}".encode() * (i + 1)
                out.append(conn.request(post(f"/c{n}", body)).body)
            return out

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(client, range(20)))
    for n, bodies in enumerate(results):
        assert bodies == [
            f"/c{n}:".encode() + f"{n}-{i}".encode() * (i + 1) for i in range(10)
        ]


def test_queue_backlog_is_logged(serve_app, caplog):
    """Requests waiting for a thread for a while are reported on the ``<server>.queue``
    logger as "Task queue depth is N" (waitress warns per queued task, maitre once the
    queue has not emptied for a second, at most once a second)."""
    from helpers import TARGET

    def slow(environ, start_response):
        time.sleep(0.1)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    srv = serve_app(slow, threads=1)

    def client(_):
        with srv.connect() as conn:
            return conn.request(get("/")).status

    with caplog.at_level("WARNING", logger=f"{TARGET}.queue"):
        with ThreadPoolExecutor(25) as pool:
            statuses = list(pool.map(client, range(25)))
    assert statuses == [200] * 25
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == f"{TARGET}.queue" and r.levelname == "WARNING"
    ]
    assert warnings, "no queue-depth warning"
    assert all(m.startswith("Task queue depth is ") for m in warnings)
