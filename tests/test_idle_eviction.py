"""No lockout by idle connections: at ``connection_limit`` the connection idle longest
is closed to admit a new one (as nginx does), and ``keepalive_timeout`` closes
keep-alive connections that wait too long between requests.

waitress stops accepting at its limit until a connection closes (``channel_timeout``,
120 s by default) and has no ``keepalive_timeout``: the whole module is maitre-only.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
from apps import hello_app
from helpers import HOST, RawConnection, get, maitre_only, post, wait_for

pytestmark = [
    maitre_only(
        "idle connections are evicted at connection_limit, and keepalive_timeout "
        "(waitress stops accepting until a connection closes)"
    ),
    pytest.mark.timeout(120),
]

LIMIT = 20


def ending(sock: socket.socket, timeout: float) -> str:
    """How the server ended the connection within ``timeout``: "eof" (a clean close),
    "reset", "open" (not ended), or the bytes it sent instead."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        return "open"
    except ConnectionResetError:
        return "reset"
    return "eof" if data == b"" else f"data {data[:80]!r}"


def evicted(served) -> int:
    return served.server.stats()["Connections Evicted"]


def test_idle_keepalive_clients_are_evicted_for_new_ones(serve_app):
    """connection_limit keep-alive clients that made a request each and stay
    connected do not keep new clients out: each newcomer is served at once, the
    connections idle longest are closed cleanly to make room, and counted."""
    served = serve_app(hello_app, connection_limit=LIMIT, threads=4)
    idle = []
    victims = []
    try:
        for _ in range(LIMIT):
            conn = RawConnection(served.port)
            idle.append(conn)
            assert conn.request(get("/")).status == 200
        # Idle for longer than the least idleness that allows an eviction.
        time.sleep(1.2)
        results = []

        def victim(i):
            t0 = time.monotonic()
            conn = RawConnection(served.port)
            victims.append(conn)
            resp = conn.request(get(f"/v{i}"))
            results.append((resp.status, time.monotonic() - t0))

        threads = [threading.Thread(target=victim, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert sorted(s for s, _ in results) == [200] * 10, results
        assert max(took for _, took in results) < 3.0, results
        # As many of the idle clients were closed, each cleanly (no reset, no bytes).
        ends = [ending(c.sock, 0.1) for c in idle]
        assert ends.count("eof") == 10, ends
        assert set(ends) == {"eof", "open"}, ends
        assert evicted(served) >= 10
        # The clients left open are still served.
        for conn, end in zip(idle, ends):
            if end == "open":
                assert conn.request(get("/again")).status == 200
    finally:
        for conn in idle + victims:
            conn.close()


def test_the_connection_idle_longest_goes(serve_app):
    """Of two idle keep-alive connections, the one idle longest is evicted for a
    newcomer; the other is still served."""
    served = serve_app(hello_app, connection_limit=2, threads=2)
    a, b = RawConnection(served.port), RawConnection(served.port)
    c = None
    try:
        assert a.request(get("/a")).status == 200
        time.sleep(0.05)
        assert b.request(get("/b")).status == 200
        time.sleep(1.2)
        c = RawConnection(served.port)
        resp = c.request(get("/c"))
        assert resp.status == 200
        # a was idle longest: it went; b is still served.
        assert ending(a.sock, 2) == "eof"
        assert b.request(get("/b2")).status == 200
    finally:
        for conn in (a, b, c):
            if conn is not None:
                conn.close()


def test_silent_connections_to_a_tls_listener_do_not_lock_it(serve_app, pki):
    """Three times connection_limit TCP connections to a TLS listener that never
    send a ClientHello: HTTPS clients arriving after them are all served quickly.
    (On Linux the silent ones that waited in the backlog are evicted at once; the
    portable engine, which cannot tell how long they waited, works through
    connection_limit of them a second.)"""
    served = serve_app(hello_app, connection_limit=LIMIT, **pki.settings())
    silent = []
    try:
        for _ in range(3 * LIMIT):
            silent.append(socket.create_connection((HOST, served.port), timeout=10))
        # The first ones are taken; the rest wait in the backlog.
        time.sleep(1.2)
        ctx = pki.context()
        results = []

        def victim(i):
            t0 = time.monotonic()
            conn = http.client.HTTPSConnection(
                "localhost", served.port, context=ctx, timeout=15
            )
            try:
                conn.request("GET", f"/v{i}")
                resp = conn.getresponse()
                results.append((resp.status, resp.read(), time.monotonic() - t0))
            except Exception as exc:  # reported by the assertion below
                results.append((repr(exc), b"", time.monotonic() - t0))
            finally:
                conn.close()

        threads = [threading.Thread(target=victim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [r[:2] for r in results] == [(200, b"Hello, world!")] * 8, results
        assert max(r[2] for r in results) < 6.0, results
        assert evicted(served) >= 2 * LIMIT  # the backlog, then the first victims
    finally:
        for s in silent:
            s.close()


def test_busy_connections_are_never_evicted(serve_app):
    """At the limit with a request in progress on every connection, a newcomer
    waits (accepting is paused) and no request in flight is dropped; it is served
    once a connection has gone idle."""
    limit = 4
    release = threading.Event()
    entered = []

    def app(environ, start_response):
        entered.append(environ["PATH_INFO"])
        release.wait(20)
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    served = serve_app(app, connection_limit=limit, threads=limit)
    busy = [RawConnection(served.port) for _ in range(limit)]
    newcomer = None
    try:
        for i, conn in enumerate(busy):
            conn.send(get(f"/busy{i}"))
        assert wait_for(lambda: len(entered) == limit, timeout=10)
        newcomer = RawConnection(served.port)
        newcomer.send(get("/new"))
        # Longer than an idle connection would need to be evicted: nobody is idle.
        assert newcomer.read_available(2.5) == b""
        assert evicted(served) == 0
        release.set()
        for i, conn in enumerate(busy):
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, f"/busy{i}".encode())
        # The busy ones are idle now (keep-alive): one is evicted for the newcomer.
        t0 = time.monotonic()
        resp = newcomer.read_response()
        assert (resp.status, resp.body) == (200, b"/new")
        assert time.monotonic() - t0 < 5
        assert evicted(served) == 1
    finally:
        release.set()
        for conn in busy + [newcomer]:
            if conn is not None:
                conn.close()


def test_keepalive_timeout_closes_idle_keepalive_connections_only(serve_app):
    """keepalive_timeout closes a keep-alive connection that waits between requests;
    a slow upload, and a connection that has not sent its first request, are governed
    by channel_timeout instead."""
    served = serve_app(
        hello_app, keepalive_timeout=1, channel_timeout=6, cleanup_interval=1
    )
    idle = RawConnection(served.port)
    fresh = RawConnection(served.port)
    upload = RawConnection(served.port)
    try:
        assert idle.request(get("/")).status == 200
        t0 = time.monotonic()
        body = b"x" * 10
        head = post("/up", body)[: -len(body)]
        upload.send(head)
        for i in range(10):  # a byte every 0.3 s: 3 s, longer than keepalive_timeout
            upload.send(body[i : i + 1])
            time.sleep(0.3)
        resp = upload.read_response()
        answered = time.monotonic()
        assert resp.status == 200
        # Closed meanwhile (well before channel_timeout), cleanly.
        assert ending(idle.sock, 0.5) == "eof"
        assert time.monotonic() - t0 < 6
        assert ending(fresh.sock, 0.1) == "open"
        # The upload's connection is itself idle now: closed after keepalive_timeout.
        assert upload.is_closed(timeout=5)
        assert 0.8 < time.monotonic() - answered < 3.5
    finally:
        for conn in (idle, fresh, upload):
            conn.close()


def test_keepalive_timeout_is_an_engine_setting():
    from maitre.adjustments import Adjustments
    from maitre.server import _engine_settings

    assert _engine_settings(Adjustments())["keepalive_timeout"] == 0
    assert _engine_settings(Adjustments(keepalive_timeout="2.5"))[
        "keepalive_timeout"
    ] == pytest.approx(2.5)
    with pytest.raises(ValueError):
        Adjustments(keepalive_timeout=-1)
