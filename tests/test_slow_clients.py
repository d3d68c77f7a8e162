"""Slow and idle clients: what a client that takes its time may cost the others.

A connection that stalls, or trickles its head (slowloris), is closed once
channel_timeout has passed, while a connection that keeps being used, or whose
application takes long, is not; a client that reads its response slowly, or not
at all, holds no worker (the response waits in the connection's queue); a slow
uploader holds no worker either (the body is received before the app runs), and a
body that trickles in below min_request_body_rate is cut; idle keep-alive
connections starve nobody."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from apps import body_length_recorder, hello_app, path_body_app
from helpers import (
    HOST,
    TARGET,
    LogCapture,
    RawConnection,
    get,
    maitre_only,
    wait_for,
)
from subprocess_server import ChildServer

MIB = 1 << 20


# ------------------------------------------- stalled heads and bodies (slowloris)

TIMEOUTS = {"channel_timeout": 2, "cleanup_interval": 1}


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET / HTTP/1.1\r\nHo",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
    ids=["nothing", "partial-head", "partial-body", "partial-chunked-body"],
)
def test_stalled_connection_closed_after_channel_timeout(serve_app, sent):
    """A connection that stops sending (before, inside the head or inside the
    body) is closed once idle for channel_timeout (checked every
    cleanup_interval), and the app never runs."""
    app, calls = body_length_recorder()
    srv = serve_app(app, **TIMEOUTS)
    with srv.connect() as conn:
        if sent:
            conn.send(sent)
        start = time.monotonic()
        data = b""
        while time.monotonic() - start < 10:
            chunk = conn.read_available(0.5)
            data += chunk
            if conn.eof:
                break
        elapsed = time.monotonic() - start
        assert conn.eof, "connection still open after 10 s"
        assert 1.0 <= elapsed <= 8.0, elapsed
        # no response is due; a server may at most say why it closes
        assert data == b"" or data.startswith(b"HTTP/1."), data[:100]
    assert calls == []
    assert srv.request(get("/")).status == 200


def test_active_keepalive_connection_not_closed(serve_app):
    """channel_timeout counts idleness: a keep-alive connection used every
    0.5 s for 4 s (twice channel_timeout) stays open."""
    srv = serve_app(hello_app, **TIMEOUTS)
    with srv.connect() as conn:
        for _ in range(8):
            assert conn.request(get("/")).status == 200
            time.sleep(0.5)
        assert conn.request(get("/")).status == 200


def test_slow_app_not_cut_by_channel_timeout(serve_app):
    """A request whose app runs longer than channel_timeout is still answered:
    the connection is not idle, the server is."""

    def app(environ, start_response):
        time.sleep(3.5)
        return hello_app(environ, start_response)

    srv = serve_app(app, **TIMEOUTS)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert (resp.status, resp.body) == (200, b"Hello, world!")


@maitre_only("waitress restarts its idle timer on every byte received")
def test_slowloris_head_dropped_after_channel_timeout(serve_app):
    """A client trickling its head one byte every 0.2 s (slowloris) is cut off:
    a head not complete within channel_timeout (2 s) of its first byte is
    dropped and the connection closed, although bytes keep arriving."""
    app, calls = body_length_recorder()
    srv = serve_app(app, **TIMEOUTS)
    head = get("/slow", headers=b"X-Pad: " + b"p" * 200 + b"\r\n")
    sock = socket.create_connection((HOST, srv.port), timeout=10)
    closed_at = None
    sent = 0
    try:
        start = time.monotonic()
        sock.settimeout(0.2)
        while time.monotonic() - start < 10 and sent < len(head):
            try:
                sock.sendall(head[sent : sent + 1])
                sent += 1
            except OSError:  # reset by the server
                closed_at = time.monotonic() - start
                break
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data or data.startswith(b"HTTP/1."):
                closed_at = time.monotonic() - start
                break
    finally:
        sock.close()
    assert closed_at is not None, f"still open after {sent} bytes over 10 s"
    assert closed_at <= 7.0, closed_at
    assert sent < len(head)
    assert calls == []
    assert srv.request(get("/")).status == 200


@maitre_only("waitress restarts its idle timer on every byte received")
def test_slowloris_cut_when_the_log_says(serve_app):
    """With the default cleanup_interval (30 s), a head still incomplete after
    channel_timeout (2 s) is cut within a second of it, and the log line gives the
    time it was cut at."""
    with LogCapture("maitre") as log:
        srv = serve_app(hello_app, channel_timeout=2)
        sock = socket.create_connection((HOST, srv.port), timeout=10)
        start = time.monotonic()
        closed_at = None
        try:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            sock.settimeout(0.25)
            while time.monotonic() - start < 10:
                try:
                    sock.sendall(b"X: y\r\n")
                    data = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed_at = time.monotonic() - start
                    break
        finally:
            sock.close()
        assert wait_for(lambda: log.messages("request head incomplete"), timeout=2)
    assert closed_at is not None, "still open after 10 s"
    assert 2 <= closed_at < 3.5, closed_at
    assert log.messages("request head incomplete after 2 s"), log.messages()


# ---------------------------------------------------------------- slow readers


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


def test_slow_readers_of_a_single_big_item_do_not_hold_workers():
    """Four clients reading a 50 MiB one-item response at about 2 KiB/s, with
    threads=4: the rest of each response goes to its connection's queue (memory,
    then a temporary file) and the workers move on, so six other clients are
    served meanwhile, and the server's resident memory stays under 64 MiB."""
    size = 50 * MIB
    with ChildServer(TARGET, "big", threads=4) as child:
        slow = []
        stop = threading.Event()
        received = [0] * 4

        def trickle():
            while not stop.wait(0.5):
                for i, s in enumerate(slow):
                    try:
                        received[i] += len(s.recv(1024))
                    except OSError:
                        pass

        reader = threading.Thread(target=trickle, daemon=True)
        try:
            for _ in range(4):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(1)
                s.connect((HOST, child.port))
                s.sendall(b"GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
                slow.append(s)
            reader.start()
            # the four responses start before anybody else asks
            assert wait_for(lambda: all(received), timeout=10), received
            served = []
            for i in range(6):
                start = time.monotonic()
                with RawConnection(child.port, timeout=10) as conn:
                    resp = conn.request(b"GET /?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (resp.status, resp.body) == (200, b"bb"), i
                served.append(time.monotonic() - start)
            # While the app's four 50 MiB objects are being queued, the process holds
            # them (any server would); once queued, they are freed, and the slow
            # readers' pending output costs memory only up to outbuf_overflow each.
            settle = time.monotonic()
            assert wait_for(lambda: child.rss() < 64 * MIB, timeout=10), child.rss()
            settle = time.monotonic() - settle
            samples = []
            for _ in range(5):
                samples.append(child.rss())
                time.sleep(0.2)
            assert sum(received) < 4 * MIB, received  # still far from done
        finally:
            stop.set()
            if reader.is_alive():
                reader.join(5)
            for s in slow:
                s.close()
    print(
        f"others served in {', '.join(f'{t * 1000:.0f}' for t in served)} ms; "
        f"RSS under 64 MiB {settle:.2f} s after that, then "
        f"{min(samples) / MIB:.1f}-{max(samples) / MIB:.1f} MiB; "
        f"slow readers got {received} bytes"
    )
    assert max(samples) < 64 * MIB, [s / MIB for s in samples]


@maitre_only("waitress serves pipelined requests in one task, paused at the watermark")
def test_pipelined_slow_reader_does_not_hold_a_worker():
    """A slow reader that pipelines two requests for 50 MiB one-item responses, with
    threads=1: the first response is queued whole, and the second request waits
    for the client to read (in the I/O loop, not in the worker), so other clients
    are served meanwhile; the slow reader still gets both responses' heads in
    order as it reads."""
    size = 50 * MIB
    with ChildServer(TARGET, "big", threads=1) as child:
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.settimeout(10)
            slow.connect((HOST, child.port))
            request = b"GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size
            slow.sendall(request * 2)
            first = slow.recv(1024)
            assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first
            time.sleep(0.5)
            for i in range(3):
                with RawConnection(child.port, timeout=10) as conn:
                    resp = conn.request(b"GET /?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (resp.status, resp.body) == (200, b"bb"), i
        finally:
            slow.close()


# -------------------------------------------------------------- slow uploaders


def test_slow_uploader_does_not_hold_a_worker(serve_app):
    """A client that sends its body slowly does not occupy the only worker:
    the body is received before the app runs."""
    srv = serve_app(path_body_app, threads=1)
    with srv.connect() as uploader:
        uploader.send(
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello"
        )
        time.sleep(0.2)
        resp = srv.request(get("/other"))
        assert resp.body == b"/other:"
        uploader.send(b"world")
        assert uploader.read_response().body == b"/up:helloworld"


def _trickler(port: int, results: list, stop: threading.Event):
    """Declares a 1 MB body and sends it a byte every 0.25 s; records what the
    server answered and when the connection ended."""
    start = time.monotonic()
    sock = socket.create_connection((HOST, port), timeout=10)
    got = b""
    try:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        sock.settimeout(0.25)
        while not stop.is_set():
            try:
                sock.sendall(b"x")
            except OSError:
                break
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            got += data
    finally:
        sock.close()
        results.append((time.monotonic() - start, got))


@maitre_only("waitress lets a body trickle in for ever")
def test_trickled_bodies_cut_at_the_minimum_rate(serve_app):
    """connection_limit clients each trickle a byte of a declared 1 MB body every
    0.25 s (4 B/s): once the grace period (channel_timeout here, 2 s) is over,
    each gets a 408 and is closed, and a normal client waiting to be accepted is
    served. Reaching the connection limit is logged, at most once a minute."""
    limit = 5
    with LogCapture("maitre") as log:
        srv = serve_app(
            hello_app,
            connection_limit=limit,
            channel_timeout=2,
            min_request_body_rate=500,
        )
        results: list = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=_trickler, args=(srv.port, results, stop))
            for _ in range(limit)
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            start = time.monotonic()
            with RawConnection(srv.port, timeout=10) as conn:
                resp = conn.request(get("/"))
            waited = time.monotonic() - start
            assert resp.status == 200
            for t in threads:
                t.join(10)
            assert len(results) == limit
            for took, got in results:
                assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), got
                assert took < 6, took
            # the limit reached a second time within the minute: not logged again
            idle = [socket.create_connection((HOST, srv.port)) for _ in range(limit)]
            time.sleep(0.5)
            for s in idle:
                s.close()
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert waited < 6, waited
        reached = log.messages("reached the connection limit")
        assert len(reached) == 1, log.messages()
        assert len(log.messages("408 Request Timeout")) == limit, log.messages()


@maitre_only("waitress lets a body trickle in for ever")
def test_steady_slow_upload_above_the_rate_is_not_cut(serve_app):
    """A body sent steadily above min_request_body_rate is received whole, even
    when it takes longer than the grace period."""

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        out = str(len(body)).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    srv = serve_app(app, channel_timeout=1, min_request_body_rate=1000)
    total = 12_000
    with srv.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // 600):
            conn.send(b"y" * 600)  # 3000 B/s for 4 s
            time.sleep(0.2)
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, str(total).encode())


# ------------------------------------------------------------- idle keep-alive


def test_idle_keepalive_connection_does_not_hold_a_worker(serve_app):
    """Idle keep-alive connections (more than threads) don't starve new ones."""
    srv = serve_app(path_body_app, threads=2)
    idle = [srv.connect() for _ in range(6)]
    try:
        for conn in idle:
            assert conn.request(get("/warm")).body == b"/warm:"
        assert srv.request(get("/fresh")).body == b"/fresh:"
    finally:
        for conn in idle:
            conn.close()
