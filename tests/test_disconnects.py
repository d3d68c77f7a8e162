"""Clients that go away: mid-upload, mid-response, or while the app runs.

Whatever the moment, the server frees what the connection held (its open
descriptors return to their baseline: sockets and temporary files), no worker
thread waits forever (the server, with a single worker, serves the next client),
``client_disconnected`` turns true for an app still running (with request
lookahead), and an app blocked on a slow client is released with an error.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import pytest
from helpers import HOST, TARGET, RawConnection, get, wait_for
from subprocess_server import ChildServer

MIB = 1 << 20


def _close(sock: socket.socket, reset: bool):
    """Close ``sock``: with a FIN, or with an RST (SO_LINGER 0) if ``reset``."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=10)


def _assert_serves(port: int, request: bytes = get("/ok"), timeout: float = 15.0):
    with RawConnection(port, timeout=timeout) as conn:
        resp = conn.request(request)
        assert resp.status == 200
        return resp


def _assert_fds_back(child: ChildServer, baseline: int):
    """The child's descriptors return to ``baseline`` (lingering closes may
    take a couple of seconds)."""
    ok = wait_for(lambda: child.fds() <= baseline, timeout=15, interval=0.1)
    assert ok, f"{child.fds()} descriptors open, {baseline} before: {child.fd_kinds()}"


# maitre keeps up to this many temporary files of finished request bodies open,
# to reuse them for later ones (POOLED_FILES in src/engine/body.rs).
POOLED_BODY_FILES = 8 if TARGET == "maitre" else 0


# --------------------------------------------------------------- mid-upload


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_gone_mid_upload_frees_everything(reset):
    """Clients that send part of a large body (spilling to a temporary file)
    and vanish: every socket and temporary file is released, and the server,
    with one worker thread, still serves."""
    with ChildServer(TARGET, "crc", threads=1, inbuf_overflow=65536) as child:
        _assert_serves(
            child.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
        )
        baseline = child.fds()
        chunk = b"u" * MIB
        # Two rounds: what is kept for reuse is bounded, and does not grow.
        for _ in range(2):
            for _ in range(20):
                sock = _connect(child.port)
                sock.sendall(
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                    % (50 * MIB)
                )
                sock.sendall(chunk)
                _close(sock, reset)
            _assert_fds_back(child, baseline + POOLED_BODY_FILES)
        resp = _assert_serves(
            child.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        )
        assert resp.body.startswith(b"3 ")


# -------------------------------------------------------------- mid-response


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_gone_mid_response_frees_everything(reset):
    """Clients that read the start of a 200 MiB response and vanish: the app is
    stopped, its sockets and spill files are released, and the server, with
    one worker thread, still serves."""
    with ChildServer(TARGET, "stream", threads=1, outbuf_overflow=65536) as child:
        _assert_serves(child.port, get("/?n=10"))
        baseline = child.fds()
        for _ in range(10):
            sock = _connect(child.port)
            sock.sendall(get(f"/?n={200 * MIB}"))
            got = 0
            while got < MIB:
                data = sock.recv(65536)
                assert data
                got += len(data)
            _close(sock, reset)
        _assert_fds_back(child, baseline)
        resp = _assert_serves(child.port, get("/?n=5"))
        assert len(resp.body) == 5


# ---------------------------------------------------------- while app runs


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_gone_while_app_runs_frees_everything(reset):
    """Clients that send a request and vanish while the app runs: the app's
    answer goes nowhere, the connection is released, and the single worker
    thread goes on to serve the next client."""
    with ChildServer(TARGET, "sleep", threads=1) as child:
        _assert_serves(child.port, get("/?ms=0"))
        baseline = child.fds()
        for i in range(10):
            sock = _connect(child.port)
            sock.sendall(get(f"/gone{i}?ms=100"))
            time.sleep(0.02)
            _close(sock, reset)
        resp = _assert_serves(child.port, get("/after?ms=0"), timeout=20)
        assert resp.body == b"/after"
        _assert_fds_back(child, baseline)


# ---------------------------------------------------------- client_disconnected


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_disconnected_turns_true_while_app_runs(serve_app, reset):
    """With channel_request_lookahead > 0 the engine watches the connection
    while the app runs: ``client_disconnected()`` is False while the client
    waits and turns True once it has gone (FIN or RST), so a long-running app
    can stop early; the single worker then serves the next client."""
    name = (
        "maitre.client_disconnected"
        if TARGET == "maitre"
        else ("waitress.client_disconnected")
    )
    started = threading.Event()
    results = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        check = environ[name]
        results.append(("before", check()))
        started.set()
        results.append(("after", wait_for(check, timeout=10)))
        start_response("200 OK", [("Content-Length", "4")])
        return [b"late"]

    srv = serve_app(app, threads=1, channel_request_lookahead=5)
    sock = _connect(srv.port)
    try:
        sock.sendall(get("/long"))
        assert started.wait(10)
        time.sleep(0.2)
    finally:
        _close(sock, reset)
    assert wait_for(lambda: len(results) == 2, timeout=15)
    assert results == [("before", False), ("after", True)]
    _assert_serves(srv.port)


def test_client_disconnected_stays_false_for_a_patient_client(serve_app):
    """A client that waits for a slow app is not reported as gone, even one that
    has already pipelined its next request."""
    seen = []

    def app(environ, start_response):
        check = environ["waitress.client_disconnected"]
        if environ["PATH_INFO"] == "/slow":
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                seen.append(check())
                time.sleep(0.05)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    srv = serve_app(app, channel_request_lookahead=5)
    with srv.connect() as conn:
        conn.send(get("/slow") + get("/next"))
        assert conn.read_response().status == 200
        assert conn.read_response().status == 200
    assert seen and not any(seen)


# -------------------------------------------------- blocked writer released


def test_writer_blocked_on_a_vanished_client_is_released(serve_app, caplog):
    """An app paused by outbuf_high_watermark (its client stopped reading) is
    released with an exception from write() once the client goes away, the
    disconnect is logged, and the single worker serves the next client."""
    caplog.set_level(logging.INFO)
    outcome = []
    last_write = [time.monotonic()]  # when write() last returned

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = b"z" * 65536
        try:
            for _ in range(100_000):  # 6 GiB: far more than any buffer
                write(block)
                last_write[0] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - recording what the server raised
            outcome.append(type(exc).__name__)
            raise
        outcome.append("finished")
        return []

    srv = serve_app(
        app, threads=1, outbuf_high_watermark=MIB, outbuf_overflow=256 * 1024
    )
    sock = _connect(srv.port)
    try:
        sock.sendall(get("/fast"))
        sock.recv(1024)  # the head arrived; now stop reading
        # paused: write() has not returned for a second
        assert wait_for(lambda: time.monotonic() - last_write[0] > 1.0, timeout=15)
        assert not outcome
    finally:
        _close(sock, reset=False)
    assert wait_for(lambda: outcome, timeout=15), "write() still blocked"
    assert outcome != ["finished"]
    assert wait_for(
        lambda: any(
            "Client disconnected while serving /fast" in r.getMessage()
            for r in caplog.records
            if r.name.split(".")[0] == TARGET
        ),
        timeout=5,
    ), [r.getMessage() for r in caplog.records]
    _assert_serves(srv.port)


# ------------------------------------------------------------ socket errors


def test_no_socket_error_logs_when_disabled(serve_app, caplog):
    """log_socket_errors=False: clients resetting mid-upload, mid-response and
    while the app runs leave no warning or error in the log (the app-level
    "Client disconnected" notice is INFO)."""
    caplog.set_level(logging.DEBUG)

    def app(environ, start_response):
        environ["wsgi.input"].read()
        if environ["PATH_INFO"] == "/big":
            start_response("200 OK", [])
            return (b"b" * 65536 for _ in range(2000))
        time.sleep(0.05)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    srv = serve_app(app, log_socket_errors=False, outbuf_high_watermark=MIB)
    for i in range(15):
        sock = _connect(srv.port)
        kind = i % 3
        if kind == 0:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n"
            )
            sock.sendall(b"u" * 100_000)
        elif kind == 1:
            sock.sendall(get("/big"))
            sock.recv(65536)
        else:
            sock.sendall(get("/slow"))
        _close(sock, reset=True)
    _assert_serves(srv.port)
    time.sleep(0.5)
    noisy = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        # the server's own logger ("<target>.queue" reports queue depth)
        if r.name == TARGET and r.levelno >= logging.WARNING
    ]
    assert noisy == []
