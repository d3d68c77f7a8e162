"""HTTP/1.0 and 1.1 connection handling on the wire: keep-alive, pipelining,
chunked bodies, 100-continue, HEAD, bodiless statuses."""

from __future__ import annotations

import socket

import pytest
from apps import EnvironRecorder, echo_app, generator_app, hello_app, path_app
from helpers import chunked, get, maitre_only, post


def test_http11_keepalive_two_requests_one_socket(serve_app):
    """HTTP/1.1 is persistent by default: two requests, one TCP connection."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    with srv.connect() as conn:
        r1 = conn.request(get("/one"))
        r2 = conn.request(get("/two"))
        assert (r1.status, r1.body) == (200, b"ok")
        assert (r2.status, r2.body) == (200, b"ok")
        assert r1.header("Connection") is None
        assert r2.header("Connection") is None
        assert conn.is_open()
    assert [e["PATH_INFO"] for e in recorder.environs] == ["/one", "/two"]
    # both requests came over the same client socket
    assert recorder.environs[0]["REMOTE_PORT"] == recorder.environs[1]["REMOTE_PORT"]


def test_http10_without_keepalive_closes(serve_app):
    """HTTP/1.0 without Connection: keep-alive: response, then the server closes."""
    srv = serve_app(hello_app)
    with srv.connect() as conn:
        resp = conn.request(b"GET / HTTP/1.0\r\n\r\n")
        assert resp.version == "HTTP/1.0"
        assert resp.status == 200
        assert resp.body == b"Hello, world!"
        assert resp.header("Connection") == "close"
        assert conn.is_closed()


def test_http10_keepalive_with_content_length_stays_open(serve_app):
    """HTTP/1.0 + Connection: keep-alive + a Content-Length app: stays open."""
    srv = serve_app(hello_app)
    req = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with srv.connect() as conn:
        r1 = conn.request(req)
        assert r1.status == 200
        assert r1.header("Connection") == "Keep-Alive"
        assert r1.header("Content-Length") == "13"
        assert conn.is_open()
        r2 = conn.request(req)
        assert (r2.status, r2.body) == (200, b"Hello, world!")
        assert r2.header("Connection") == "Keep-Alive"


def test_http10_keepalive_without_length_closes(serve_app):
    """HTTP/1.0 keep-alive but no length known: close-delimited body, then close."""
    srv = serve_app(generator_app)
    with srv.connect() as conn:
        resp = conn.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert resp.status == 200
        assert resp.framing == "close"
        assert resp.body == b"first,second,third"
        assert resp.header("Connection") == "close"
        assert not resp.has_header("Transfer-Encoding")
        assert conn.is_closed()


def test_http11_connection_close_honoured(serve_app):
    """HTTP/1.1 Connection: close -> response says Connection: close, socket closed."""
    srv = serve_app(hello_app)
    with srv.connect() as conn:
        resp = conn.request(get("/", headers=b"Connection: close\r\n"))
        assert resp.status == 200
        assert resp.body == b"Hello, world!"
        assert resp.header("Connection") == "close"
        assert conn.is_closed()


def test_pipelined_gets_answered_in_order(serve_app):
    """Five GETs in one send(): five responses, in request order."""
    srv = serve_app(path_app)
    paths = ["/a", "/bb", "/ccc", "/dddd", "/e"]
    with srv.connect() as conn:
        conn.send(b"".join(get(p) for p in paths))
        bodies = [conn.read_response().body for _ in paths]
        assert bodies == [p.encode() for p in paths]
        assert conn.is_open()


def test_pipelined_posts_with_bodies(serve_app):
    """Pipelined POSTs: each body goes to its own request, in order."""
    srv = serve_app(echo_app)
    bodies = [b"alpha", b"", b"gamma" * 1000, b"d"]
    with srv.connect() as conn:
        conn.send(b"".join(post(f"/p{i}", b) for i, b in enumerate(bodies)))
        for i, b in enumerate(bodies):
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == f"POST /p{i}|".encode() + b


def test_pipelined_mixed_chunked_and_length_bodies(serve_app):
    """Pipelined chunked and Content-Length bodies stay correctly delimited."""
    srv = serve_app(echo_app)
    data = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"GET /smuggled HTTP/1.1\r\n", b"Host: x\r\n\r\n")
        + post("/l", b"plain")
        + get("/g")
    )
    with srv.connect() as conn:
        conn.send(data)
        r1 = conn.read_response()
        r2 = conn.read_response()
        r3 = conn.read_response()
    assert r1.body == b"POST /c|GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    assert r2.body == b"POST /l|plain"
    assert r3.body == b"GET /g|"


def test_pipelined_last_request_closes(serve_app):
    """The connection closes after the pipelined request that asked for it."""
    srv = serve_app(path_app)
    with srv.connect() as conn:
        conn.send(get("/1") + get("/2", headers=b"Connection: close\r\n"))
        assert conn.read_response().body == b"/1"
        last = conn.read_response()
        assert last.body == b"/2"
        assert last.header("Connection") == "close"
        assert conn.is_closed()


def test_chunked_request_body_decoded(serve_app):
    """Chunked upload (extension, trailer): decoded body, CONTENT_LENGTH set,
    no Transfer-Encoding or trailer fields in the environ."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    body = (
        b"5;name=value\r\nhello\r\n"
        b"1\r\n \r\n"
        b"A\r\n0123456789\r\n"
        b"10\r\n" + b"x" * 16 + b"\r\n"
        b"0\r\n"
        b"X-Trailer: dropped\r\n"
        b"\r\n"
    )
    req = (
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: text/plain\r\n\r\n" + body
    )
    with srv.connect() as conn:
        resp = conn.request(req)
        assert resp.status == 200
        # the connection is still in sync: a second request works
        assert conn.request(get("/after")).status == 200
    env = recorder.environs[0]
    expected = b"hello 0123456789" + b"x" * 16
    assert env["test.body"] == expected
    assert env["CONTENT_LENGTH"] == str(len(expected))
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert "HTTP_X_TRAILER" not in env
    assert recorder.environs[1]["PATH_INFO"] == "/after"


def test_chunked_request_sent_in_small_pieces(serve_app):
    """A chunked body split at every byte boundary is reassembled."""
    srv = serve_app(echo_app)
    req = (
        b"POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"abc", b"defgh", b"ij")
    )
    with srv.connect() as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(req)):
            conn.send(req[i : i + 1])
        resp = conn.read_response()
    assert resp.body == b"POST /slow|abcdefghij"


def test_chunked_response_for_unknown_length(serve_app):
    """HTTP/1.1, generator without Content-Length: Transfer-Encoding: chunked."""
    srv = serve_app(generator_app)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
    assert resp.status == 200
    assert resp.header("Transfer-Encoding") == "chunked"
    assert not resp.has_header("Content-Length")
    assert resp.body == b"first,second,third"


def test_chunked_response_raw_framing(serve_app):
    """The chunked framing on the wire is well-formed and ends with 0 CRLF CRLF."""
    srv = serve_app(generator_app)
    with srv.connect() as conn:
        conn.send(get("/", headers=b"Connection: close\r\n"))
        raw = conn.read_until_close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body.endswith(b"0\r\n\r\n")
    decoded, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        assert size > 0 or rest == b"\r\n"  # an empty item never ends the body
        if size == 0:
            break
        decoded += rest[:size]
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    assert decoded == b"first,second,third"


@maitre_only("waitress closes the connection after every chunked response")
def test_chunked_response_keeps_connection_alive(serve_app):
    """After a chunked response the HTTP/1.1 connection stays usable."""
    srv = serve_app(generator_app)
    with srv.connect() as conn:
        r1 = conn.request(get("/"))
        assert r1.header("Transfer-Encoding") == "chunked"
        assert r1.header("Connection") is None
        r2 = conn.request(get("/"))
        assert r2.body == b"first,second,third"


def test_http10_response_without_length_is_close_delimited(serve_app):
    """HTTP/1.0 and no Content-Length: raw body until close, never chunked."""
    srv = serve_app(generator_app)
    with srv.connect() as conn:
        resp = conn.request(b"GET / HTTP/1.0\r\n\r\n")
        assert resp.version == "HTTP/1.0"
        assert resp.framing == "close"
        assert not resp.has_header("Transfer-Encoding")
        assert not resp.has_header("Content-Length")
        assert resp.body == b"first,second,third"
        assert conn.eof


def test_expect_100_continue(serve_app):
    """Expect: 100-continue gets exactly "HTTP/1.1 100 Continue" before the body
    is sent, then the final response."""
    srv = serve_app(echo_app)
    with srv.connect() as conn:
        conn.send(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert conn.read_exact(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"payload")
        resp = conn.read_response("POST")
        assert resp.status == 200
        assert resp.body == b"POST /e|payload"
        # no second interim response for the next request without Expect
        resp = conn.request(post("/f", b"x"))
        assert resp.status == 200
        assert resp.body == b"POST /f|x"


@maitre_only(
    "waitress sends 100 Continue even when the declared body is too large "
    "and answers 413 only after the client sent the body"
)
def test_expect_100_continue_too_large_gets_413(serve_app):
    """Expect + Content-Length over max_request_body_size: 413, no 100 Continue."""
    srv = serve_app(echo_app, max_request_body_size=1000)
    with srv.connect() as conn:
        conn.send(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        resp = conn.read_response("POST")
        assert resp.status == 413
        assert resp.header("Connection") == "close"
        assert conn.is_closed()


def test_head_has_headers_but_no_body(serve_app):
    """HEAD: the app's headers incl. its Content-Length, no body; the
    connection stays usable."""

    def app(environ, start_response):
        body = b"Hello, world!"
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")]
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.read_response("HEAD")
        assert head.status == 200
        assert head.header("Content-Length") == "13"
        assert head.header("Content-Type") == "text/plain"
        assert head.header("Connection") is None
        follow = conn.request(get("/"))
        assert follow.status == 200
        assert follow.body == b"Hello, world!"


@maitre_only("waitress sends the application's body bytes in HEAD responses")
@pytest.mark.parametrize("app", [hello_app, generator_app], ids=["list", "generator"])
def test_head_body_from_app_is_dropped(serve_app, app):
    """HEAD with an app that returns a body: not one body byte is sent (the
    next response starts right after the head); a one-item body still gives
    the Content-Length a GET would have."""
    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.read_response("HEAD")
        assert head.status == 200
        if app is hello_app:
            assert head.header("Content-Length") == "13"
        assert conn.read_available(0.3) == b""
        if not conn.eof:
            follow = conn.request(get("/"))
            assert follow.status == 200


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_status_sends_no_body(serve_app, status):
    """204 and 304 responses carry no body even if the app returns bytes, and
    neither Transfer-Encoding nor a non-zero Content-Length."""

    def app(environ, start_response):
        start_response(status, [("X-Status", status[:3])])
        return [b"ignored body"]

    srv = serve_app(app)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert resp.status == int(status[:3])
        assert resp.header("X-Status") == status[:3]
        assert not resp.has_header("Transfer-Encoding")
        assert resp.header("Content-Length") in (None, "0")
        assert conn.read_available(0.3) == b""


@maitre_only("waitress closes the connection after a 204/304 without Content-Length")
@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_status_keeps_connection_alive(serve_app, status):
    """After a 204/304 the HTTP/1.1 connection stays usable."""

    def app(environ, start_response):
        start_response(status, [("X-Status", status[:3])])
        return [b""]

    srv = serve_app(app)
    with srv.connect() as conn:
        assert conn.request(get("/")).status == int(status[:3])
        follow = conn.request(get("/"))
        assert follow.status == int(status[:3])
