"""Response generation: large bodies and output buffering settings, headers
the app may override, connection-level settings (timeouts, limits)."""

from __future__ import annotations

import hashlib
import time

import pytest
from apps import echo_app, hello_app
from helpers import IDENT, get, post

BLOCK = bytes(range(256)) * 256  # 64 KiB


def _big_app(environ, start_response):
    """``/N`` answers N blocks of 64 KiB; ``?length`` adds a Content-Length."""
    count = int(environ["PATH_INFO"].strip("/"))
    headers = [("Content-Type", "application/octet-stream")]
    if environ["QUERY_STRING"] == "length":
        headers.append(("Content-Length", str(count * len(BLOCK))))
    start_response("200 OK", headers)
    return (BLOCK for _ in range(count))


def _expected_digest(count):
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(BLOCK)
    return digest.hexdigest()


@pytest.mark.parametrize("query", ["length", "chunked"])
@pytest.mark.parametrize(
    "settings",
    [{}, {"outbuf_overflow": 65536}, {"outbuf_high_watermark": 262144}],
    ids=["defaults", "small-outbuf-overflow", "small-high-watermark"],
)
def test_large_response_intact(serve_app, query, settings):
    """A 20 MiB response arrives byte-exact whatever the output buffering
    settings (spilling to a file, pausing the app), chunked or with a length."""
    srv = serve_app(_big_app, **settings)
    count = 320
    with srv.connect() as conn:
        resp = conn.request(get(f"/{count}?{query}"))
        assert resp.status == 200
        assert resp.framing == ("length" if query == "length" else "chunked")
        assert len(resp.body) == count * len(BLOCK)
        assert hashlib.sha256(resp.body).hexdigest() == _expected_digest(count)


def test_small_recv_bytes(serve_app):
    """recv_bytes=7: requests split over many reads are still parsed right."""
    srv = serve_app(echo_app, recv_bytes=7)
    with srv.connect() as conn:
        conn.send(post("/a", b"body-one") + get("/b") + post("/c", b"x" * 100))
        assert conn.read_response().body == b"POST /a|body-one"
        assert conn.read_response().body == b"GET /b|"
        assert conn.read_response().body == b"POST /c|" + b"x" * 100


def test_app_date_header_kept(serve_app):
    """A Date set by the app is sent as is, and only once."""
    date = "Tue, 15 Nov 1994 08:12:31 GMT"

    def app(environ, start_response):
        start_response("200 OK", [("Date", date), ("Content-Length", "0")])
        return []

    resp = serve_app(app).request(get("/"))
    assert resp.header_list("Date") == [date]
    assert resp.header("Server") == IDENT


def test_app_server_header_kept(serve_app):
    """A Server set by the app is sent as is, and only once."""

    def app(environ, start_response):
        start_response("200 OK", [("Server", "my-app/2"), ("Content-Length", "0")])
        return []

    resp = serve_app(app).request(get("/"))
    assert resp.header_list("Server") == ["my-app/2"]


def test_non_latin1_header_value_gives_500(serve_app):
    """A header value that cannot be encoded as latin-1 is a 500."""

    def app(environ, start_response):
        start_response("200 OK", [("X-Euro", "\u20ac"), ("Content-Length", "2")])
        return [b"no"]

    with serve_app(app).connect() as conn:
        resp = conn.request(get("/"))
        assert resp.status == 500
        assert not resp.has_header("X-Euro")
        assert conn.is_closed()


@pytest.mark.parametrize("value", ["close", "Close", "CLOSE"])
def test_connection_close_case_insensitive(serve_app, value):
    """The Connection header value is case-insensitive."""
    with serve_app(hello_app).connect() as conn:
        resp = conn.request(get("/", headers=f"Connection: {value}\r\n".encode()))
        assert resp.status == 200
        assert resp.header("Connection") == "close"
        assert conn.is_closed()


def test_absolute_form_request_target(serve_app):
    """An absolute-form target (as sent to proxies) gives the path and query."""
    seen = []

    def app(environ, start_response):
        seen.append((environ["PATH_INFO"], environ["QUERY_STRING"]))
        return hello_app(environ, start_response)

    srv = serve_app(app)
    resp = srv.request(
        b"GET http://example.com/abs/path?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    assert resp.status == 200
    assert seen == [("/abs/path", "x=1")]


def test_empty_line_between_pipelined_requests_ignored(serve_app):
    """One CRLF before a request line (after a previous request) is ignored."""
    srv = serve_app(echo_app)
    with srv.connect() as conn:
        conn.send(post("/a", b"1") + b"\r\n" + get("/b"))
        assert conn.read_response().body == b"POST /a|1"
        assert conn.read_response().body == b"GET /b|"


def test_expect_100_on_http10_ignored(serve_app):
    """Expect: 100-continue in an HTTP/1.0 request gets no interim response."""
    srv = serve_app(echo_app)
    with srv.connect() as conn:
        conn.send(
            b"POST /e HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"
        )
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"POST /e|abc"


def test_expect_100_with_body_sent_eagerly(serve_app):
    """A client that sends its body without waiting for 100 Continue still
    gets its final response, and the connection stays in sync."""
    srv = serve_app(echo_app)
    with srv.connect() as conn:
        resp = conn.request(post("/e", b"eager", b"Expect: 100-continue\r\n"))
        assert resp.body == b"POST /e|eager"
        assert conn.request(get("/next")).body == b"GET /next|"


def test_idle_connection_closed_after_channel_timeout(serve_app):
    """An idle keep-alive connection is closed after channel_timeout."""
    srv = serve_app(hello_app, channel_timeout=1, cleanup_interval=1)
    with srv.connect() as conn:
        assert conn.request(get("/")).status == 200
        t0 = time.monotonic()
        assert conn.is_closed(timeout=8)
        assert time.monotonic() - t0 >= 0.5


def test_connection_limit(serve_app):
    """With connection_limit=5 at most 5 connections are served at once; the
    others wait (not refused) and are served when connections close."""
    srv = serve_app(hello_app, connection_limit=5)
    conns = [srv.connect() for _ in range(10)]
    try:
        for conn in conns:
            conn.send(get("/"))
        time.sleep(0.5)
        answered = [c for c in conns if c.read_available(0.05)]
        assert 1 <= len(answered) <= 5
        waiting = [c for c in conns if c not in answered]
        for conn in answered:
            conn.close()
        # the waiting ones get served as connections are freed
        deadline = time.monotonic() + 20
        while waiting and time.monotonic() < deadline:
            for conn in list(waiting):
                data = conn.read_available(0.05)
                if data:
                    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
                    waiting.remove(conn)
                    conn.close()
        assert not waiting
    finally:
        for conn in conns:
            conn.close()
