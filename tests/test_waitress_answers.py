"""Answers that must be waitress's own: the error texts, the status line of an error,
which error wins, the request-target and version rules. Each was found by running
waitress 3.0.2's own test suite (scripts/waitress-suite) or by trying maitre as a
waitress user would; every test runs against maitre and waitress alike, except where
marked ``maitre_only`` (a deliberate difference, named in the README).
"""

from __future__ import annotations

import pytest
from apps import hello_app
from helpers import assert_error_response, error_body, maitre_only

HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def _answer(srv, raw: bytes):
    with srv.connect() as conn:
        conn.send(raw)
        resp = conn.read_response()
        closed = conn.is_closed()
    return resp, closed


def _path_app(environ, start_response):
    body = "|".join(
        environ[k] for k in ("PATH_INFO", "QUERY_STRING", "REQUEST_URI")
    ).encode("latin-1")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


# -------------------------------------------------------------- error texts


@pytest.mark.parametrize(
    "raw, message",
    [
        (HEAD + b"5;\r\nhello\r\n0\r\n\r\n", "Invalid chunk extension"),
        (HEAD + b"5\r\nhelloXX0\r\n\r\n", "Chunk not properly terminated"),
        (HEAD + b"zz\r\nhello\r\n0\r\n\r\n", "Invalid chunk size"),
        (HEAD + b"5\r\rhello\r\n0\r\n\r\n", "Invalid chunk size"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            'Bare CR or LF found in header line "X-A: a\rb"',
        ),
        (b"GET / HTTP/1.0\r\n Host: 0\r\n\r\n", 'Malformed header line " Host: 0"'),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", "Bad URI"),
        (b"GET /\xe9 HTTP/1.0\r\n\r\n", "Bad URI"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", None),
    ],
    ids=[
        "chunk-extension",
        "chunk-end",
        "chunk-size",
        "chunk-size-line-end",
        "bare-cr-in-header-line",
        "whitespace-first-header-line",
        "target-utf8",
        "target-latin1",
        "content-length",
    ],
)
def test_error_texts_are_waitress(serve_app, raw, message):
    """The body of a 400 says what waitress says for the same fault."""
    srv = serve_app(hello_app)
    resp, closed = _answer(srv, raw)
    assert_error_response(resp, 400, "Bad Request")
    assert resp.body == error_body(
        "Bad Request", message or "Content-Length is invalid"
    )
    assert closed


# ---------------------------------------------- the status line of an error


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_error_answers_in_the_request_version(serve_app, version):
    """A request refused after its request line was read is answered in its own
    version: an HTTP/1.1 client gets ``HTTP/1.1 400``, not ``HTTP/1.0 400``."""
    srv = serve_app(hello_app)
    raw = f"POST / HTTP/{version}\r\nHost: x\r\nContent-Length: x\r\n\r\n".encode()
    resp, closed = _answer(srv, raw)
    assert resp.version == f"HTTP/{version}"
    assert_error_response(resp, 400, "Bad Request")
    assert closed


@maitre_only("an HTTP/1.1 request without Host is refused (RFC 9112 3.2)")
def test_missing_host_answers_in_http11(serve_app):
    srv = serve_app(hello_app)
    resp, closed = _answer(srv, b"GET / HTTP/1.1\r\n\r\n")
    assert (resp.version, resp.status) == ("HTTP/1.1", 400)
    assert resp.body == error_body("Bad Request", "Missing Host header")
    assert closed


def test_unsupported_transfer_coding_answers_in_http11(serve_app):
    srv = serve_app(hello_app)
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
    resp, _ = _answer(srv, raw)
    assert (resp.version, resp.status) == ("HTTP/1.1", 501)


# ------------------------------------------------------- which error wins


def test_chunked_body_over_the_limit_gets_413_whatever_its_framing(serve_app):
    """A client that has sent more than max_request_body_size of a chunked body is
    told 413, even if the chunks are malformed too (here an empty extension);
    waitress's own test_request_body_too_large_chunked_encoding sends this."""
    srv = serve_app(hello_app, max_request_body_size=1000)
    repeat = b"20;\r\n" + b"This string has 32 characters.\r\n"
    resp, closed = _answer(srv, HEAD + repeat * (1050 // len(repeat) + 1))
    assert resp.version == "HTTP/1.1"
    assert_error_response(resp, 413, "Request Entity Too Large")
    assert resp.body == error_body(
        "Request Entity Too Large", "exceeds max_body of 1000"
    )
    assert closed


def test_malformed_chunked_body_under_the_limit_gets_400(serve_app):
    srv = serve_app(hello_app, max_request_body_size=1000)
    resp, _ = _answer(srv, HEAD + b"20;\r\n" + b"x" * 32 + b"\r\n")
    assert_error_response(resp, 400, "Bad Request")
    assert resp.body == error_body("Bad Request", "Invalid chunk extension")


# ------------------------------------------------------- versions and targets


@pytest.mark.parametrize("minor", range(2, 10))
def test_higher_minor_version_is_served(serve_app, target, minor):
    """RFC 9110 section 2.5: HTTP/1.2 to 1.9 are served (as the highest minor
    version the server knows: 1.1 in maitre, 1.0 in waitress)."""
    srv = serve_app(_path_app)
    with srv.connect() as conn:
        conn.send(f"GET /v?x HTTP/1.{minor}\r\nHost: x\r\n\r\n".encode())
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"/v|x|/v?x")
        if target == "maitre":
            # served as HTTP/1.1: answered so, and the connection stays open
            assert resp.version == "HTTP/1.1"
            conn.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.read_response().body == b"/next||/next"


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10"])
@maitre_only("a version other than HTTP/1.x is refused (RFC 9110 2.5)")
def test_other_versions_are_refused(serve_app, version):
    srv = serve_app(hello_app)
    resp, closed = _answer(srv, b"GET / " + version + b"\r\nHost: x\r\n\r\n")
    assert (resp.version, resp.status) == ("HTTP/1.0", 400)
    assert closed


def test_double_slash_path_is_not_an_authority(serve_app):
    """``GET //host/x`` is a path, never a host (waitress issue 260): nothing of it
    is lost. Leading slashes are collapsed to one in PATH_INFO, as waitress 3.0.2
    does (an application building a URL from PATH_INFO never makes the
    scheme-relative ``//host/x``); REQUEST_URI keeps the target as sent."""
    srv = serve_app(_path_app)
    resp, _ = _answer(srv, b"GET //host/x?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (resp.status, resp.body) == (200, b"/host/x|q=1|//host/x?q=1")
