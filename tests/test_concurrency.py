"""Concurrency: slow apps, slow readers and slow uploaders never stall other
connections; many concurrent clients all get correct answers."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


def test_slow_reader_does_not_block_other_clients(serve_app):
    """A client that does not read its 4 MB response does not keep the only
    worker thread (threads=1) from serving another client."""
    big = bytes(range(256)) * (4 * 4096)  # 4 MiB

    def app(environ, start_response):
        body = big if environ["PATH_INFO"] == "/big" else b"quick"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    srv = serve_app(app, threads=1)
    with srv.connect() as lazy:
        # a small receive window so that the response cannot sit in kernel
        # buffers: the server has to hold it while the client does not read
        lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.send(get("/big"))
        time.sleep(0.2)
        resp = srv.request(get("/quick"))
        assert (resp.status, resp.body) == (200, b"quick")
        # the lazy client's response is intact (only its start is read: through
        # a 4 KiB window the whole of it would take long)
        head = lazy.read_head()
        assert head.header("Content-Length") == str(len(big))
        assert lazy.read_exact(16384) == big[:16384]
    # the server is unaffected by the lazy client hanging up mid-response
    assert srv.request(get("/quick")).body == b"quick"


def test_trickle_reader_does_not_hold_a_worker(serve_app):
    """A client that keeps reading its streamed response, but slowly (16 KiB
    every 10 ms, 1.6 MB/s), does not keep the only worker thread: the server
    waits for a fast client's socket instead of queueing, but not for one this
    slow, and another client is served meanwhile."""
    chunk = bytes(range(256)) * 256  # 64 KiB
    chunks = 128  # 8 MiB

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"] == "/quick":
            return [b"quick"]
        return (chunk for _ in range(chunks))

    srv = serve_app(app, threads=1)
    stop = threading.Event()
    received = []

    def trickle(sock):
        while not stop.is_set():
            data = sock.recv(16384)
            if not data:
                return
            received.append(len(data))
            time.sleep(0.01)

    with srv.connect() as slow:
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.send(get("/stream"))
        reader = threading.Thread(target=trickle, args=(slow.sock,), daemon=True)
        reader.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        resp = srv.request(get("/quick"))
        elapsed = time.monotonic() - t0
        stop.set()
        reader.join(5)
    assert resp.body.endswith(b"quick")
    assert elapsed < 1.0, elapsed
    assert sum(received) > 0


def test_slow_uploader_does_not_hold_a_worker(serve_app):
    """A client that sends its body slowly does not occupy the only worker:
    the body is received before the app runs."""
    srv = serve_app(_echo, threads=1)
    with srv.connect() as uploader:
        uploader.send(
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello"
        )
        time.sleep(0.2)
        resp = srv.request(get("/other"))
        assert resp.body == b"/other:"
        uploader.send(b"world")
        assert uploader.read_response().body == b"/up:helloworld"


def _echo(environ, start_response):
    body = environ["PATH_INFO"].encode() + b":" + environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def test_idle_keepalive_connection_does_not_hold_a_worker(serve_app):
    """Idle keep-alive connections (more than threads) don't starve new ones."""
    srv = serve_app(_echo, threads=2)
    idle = [srv.connect() for _ in range(6)]
    try:
        for conn in idle:
            assert conn.request(get("/warm")).body == b"/warm:"
        assert srv.request(get("/fresh")).body == b"/fresh:"
    finally:
        for conn in idle:
            conn.close()


def test_many_concurrent_clients(serve_app):
    """20 clients x 10 keep-alive requests each, all correct and in order."""
    srv = serve_app(_echo, threads=4)

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
