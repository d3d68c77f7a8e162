"""Broken applications: each mistake gets the right outcome on the wire, a log
line through the server's logger (``maitre``; ``waitress`` for the reference run),
and the server keeps serving others.

tests/test_errors.py and tests/test_wsgi.py pin the exact 500 response, the
truncation and close after a late exception, and app_iter.close(); this module adds
the log lines, the mistakes those do not cover (non-bytes items, invalid status
lines, a close() that raises, ...) and what exactly reaches the wire when a
response is cut short.
"""

from __future__ import annotations

import logging
import sys

import pytest
from helpers import TARGET, get, maitre_only, wait_for

LOGGER = TARGET  # the server's logger: "maitre", or "waitress" for the reference


@pytest.fixture
def logs(caplog):
    """The server logger's records, captured from INFO up."""
    caplog.set_level(logging.INFO)

    class Logs:
        def records(self, level=logging.DEBUG):
            return [
                r
                for r in caplog.records
                if r.name.split(".")[0] == LOGGER and r.levelno >= level
            ]

        def wait(self, text, level=logging.INFO, timeout=5.0):
            """The first record at ``level`` or above containing ``text``."""

            def find():
                for r in self.records(level):
                    if text in r.getMessage():
                        return r
                return None

            assert wait_for(lambda: find() is not None, timeout=timeout), (
                f"no {logging.getLevelName(level)} log containing {text!r}; got "
                f"{[(r.levelname, r.getMessage()) for r in self.records()]}"
            )
            return find()

    return Logs()


def ok_or(broken):
    """An app: ``/ok`` answers "ok", anything else runs ``broken``."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        return broken(environ, start_response)

    return app


def assert_still_serving(srv):
    for _ in range(2):
        resp = srv.request(get("/ok"))
        assert (resp.status, resp.body) == (200, b"ok")


# ------------------------------------------------- mistakes before any output


def raise_before_start_response(environ, start_response):
    raise RuntimeError("broken-marker")


def raise_after_start_response(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("broken-marker")


def start_response_twice(environ, start_response):
    start_response("200 OK", [])
    start_response("404 Not Found", [])
    return [b"never"]


def no_start_response(environ, start_response):
    return [b"never"]


def header_not_a_pair(environ, start_response):
    start_response("200 OK", [("X-A", "1", "extra")])
    return [b"never"]


def header_value_crlf(environ, start_response):
    start_response("200 OK", [("X-A", "1\r\nX-Injected: 1")])
    return [b"never"]


def header_name_not_latin1(environ, start_response):
    start_response("200 OK", [("X-\u20ac", "1")])
    return [b"never"]


def status_not_latin1(environ, start_response):
    start_response("200 \u20ac", [])
    return [b"never"]


def status_not_str(environ, start_response):
    start_response(200, [])
    return [b"never"]


def generator_raising_first(environ, start_response):
    start_response("200 OK", [])
    raise RuntimeError("broken-marker")
    yield b"never"  # pragma: no cover


BEFORE_OUTPUT = [
    raise_before_start_response,
    raise_after_start_response,
    start_response_twice,
    no_start_response,
    header_not_a_pair,
    header_value_crlf,
    header_name_not_latin1,
    status_not_latin1,
    status_not_str,
    generator_raising_first,
]


@pytest.mark.parametrize("broken", BEFORE_OUTPUT, ids=lambda f: f.__name__)
def test_mistake_before_output_gives_500_and_a_log(serve_app, logs, broken):
    """A mistake before any byte of the response went out: the generic 500,
    the connection closed, the exception logged at ERROR with its traceback
    ("Exception while serving <path>"), and the server keeps serving."""
    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        resp = conn.request(get("/broken"))
        assert resp.status == 500
        assert b"never" not in resp.body and b"Injected" not in resp.raw_head
        assert conn.is_closed()
    record = logs.wait("Exception while serving /broken", logging.ERROR)
    assert record.exc_info is not None
    assert_still_serving(srv)


def _deep_helper():
    raise LookupError("deep-marker")


def raise_in_a_helper(environ, start_response):
    return _deep_helper()


def test_logged_exception_carries_its_traceback(serve_app, logs):
    """The log record's exc_info is the whole (type, value, traceback): error
    trackers and formatters that read records get the application's stack (on
    Python 3.9 to 3.11 the exception value alone does not carry it)."""
    srv = serve_app(ok_or(raise_in_a_helper))
    assert srv.request(get("/broken")).status == 500
    record = logs.wait("Exception while serving /broken", logging.ERROR)
    exc_type, exc, tb = record.exc_info
    assert exc_type is LookupError and str(exc) == "deep-marker"
    assert tb is not None
    text = logging.Formatter().formatException(record.exc_info)
    assert "in raise_in_a_helper" in text and "in _deep_helper" in text, text
    assert text.rstrip().endswith("LookupError: deep-marker"), text


# --------------------------------------------------------- non-bytes items


@pytest.mark.parametrize(
    "items",
    [["text"], [b"ok", "text"], [None], [b"a", 42]],
    ids=["str", "str-second", "none", "int-second"],
)
def test_non_bytes_body_item_fails_the_response(serve_app, logs, items):
    """A body item that is not bytes (PEP 3333) is an application error: it is
    logged, never sent, and the connection is closed so the client cannot
    take what it got for a complete response."""

    def broken(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter(items)

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        conn.send(get("/broken"))
        raw = conn.read_until_close()
    assert b"text" not in raw.partition(b"\r\n\r\n")[2]
    if raw.startswith(b"HTTP/1.1 200 "):
        # the head went out with an earlier item: the body must be cut short
        # (chunked without its last chunk), never end as a complete message
        assert not raw.endswith(b"0\r\n\r\n"), raw
    else:
        assert raw.startswith(b"HTTP/1.1 500 "), raw[:100]
    logs.wait("Exception while serving /broken", logging.ERROR)
    assert_still_serving(srv)


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(
            "text",
            marks=maitre_only("waitress sends the 200 head before failing on a str"),
        ),
        None,
        42,
    ],
)
def test_non_bytes_first_item_gives_500(serve_app, item):
    """A first body item that is not bytes is found before the head goes out:
    a clean 500 rather than a 200 cut short."""

    def broken(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [item, b"more"]

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        resp = conn.request(get("/broken"))
        assert resp.status == 500
        assert conn.is_closed()
    assert_still_serving(srv)


# ------------------------------------------------------- invalid status lines


@maitre_only("waitress sends any status string to the client as is")
@pytest.mark.parametrize(
    "status",
    ["OK", "20 OK", "2000 OK", "200OK", "abc Bad", "", " 200 OK", "200\tOK"],
)
def test_invalid_status_line_gives_500(serve_app, logs, status):
    """A status that is not ``<3 digits> <reason>`` never reaches the wire as
    a status line: 500, logged, and the server keeps serving."""

    def broken(environ, start_response):
        start_response(status, [("Content-Length", "5")])
        return [b"never"]

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        resp = conn.request(get("/broken"))
        assert resp.status == 500
        assert conn.is_closed()
    logs.wait("Exception while serving /broken", logging.ERROR)
    assert_still_serving(srv)


# ----------------------------------------------------- failures mid-response


@pytest.mark.parametrize("framing", ["chunked", "length", "write"])
def test_iterator_raising_after_headers_cuts_the_connection(serve_app, logs, framing):
    """The app fails after the head and part of the body went out: the client
    sees the connection closed before the end of the message (no last chunk,
    fewer bytes than Content-Length), never a complete response; the exception
    is logged; the server keeps serving."""

    def broken(environ, start_response):
        headers = [("Content-Length", "10000")] if framing != "chunked" else []
        write = start_response("200 OK", headers)
        if framing == "write":
            write(b"a" * 3000)
        yield b"b" * 3000
        raise RuntimeError("broken-marker")

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        conn.send(get("/broken"))
        resp = conn.read_response(allow_truncated=True)
        assert resp.status == 200
        assert resp.truncated
        assert conn.eof
        raw = resp.raw_head
    if framing == "chunked":
        assert b"Transfer-Encoding: chunked" in raw
    else:
        assert len(resp.body) < 10000
    assert b"Internal Server Error" not in resp.body
    record = logs.wait("Exception while serving /broken", logging.ERROR)
    assert "broken-marker" in str(record.exc_info[1])
    assert_still_serving(srv)


def test_close_raising_after_a_complete_body(serve_app, logs):
    """app_iter.close() raising after the whole body was sent: the client has
    its complete response, the connection is closed (the app is in an unknown
    state), the exception is logged."""

    class Body:
        def __iter__(self):
            yield b"complete"

        def close(self):
            raise RuntimeError("close-marker")

    def broken(environ, start_response):
        start_response("200 OK", [("Content-Length", "8")])
        return Body()

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        resp = conn.request(get("/broken"))
        assert (resp.status, resp.body) == (200, b"complete")
        assert conn.is_closed()
    record = logs.wait("Exception while serving /broken", logging.ERROR)
    assert "close-marker" in str(record.exc_info[1])
    assert_still_serving(srv)


def test_exc_info_reraised_after_headers_is_logged(serve_app, logs):
    """start_response(..., exc_info) after the head went out re-raises the
    original exception (PEP 3333); it is logged as such and the connection
    is closed."""

    def broken(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "100")])
        write(b"partial")
        try:
            raise KeyError("original-marker")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"never"]

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        conn.send(get("/broken"))
        resp = conn.read_response(allow_truncated=True)
        assert (resp.status, resp.body, resp.truncated) == (200, b"partial", True)
    record = logs.wait("Exception while serving /broken", logging.ERROR)
    assert "original-marker" in str(record.exc_info[1])
    assert_still_serving(srv)


# ------------------------------------------------- Content-Length mismatches


@pytest.mark.parametrize("via", ["iterable", "write"])
def test_body_shorter_than_content_length(serve_app, logs, via):
    """The app sends fewer bytes than its Content-Length: the connection is
    closed (the client would otherwise wait for the rest, or read the next
    response as body), and a warning is logged."""

    def broken(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "10")])
        if via == "write":
            write(b"abc")
            return [b"de"]
        return [b"abc", b"de"]

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        conn.send(get("/broken") + get("/ok"))
        resp = conn.read_response(allow_truncated=True)
        assert resp.truncated
        assert resp.body == b"abcde"
        assert conn.eof
    logs.wait("too few bytes", logging.WARNING)
    assert_still_serving(srv)


@pytest.mark.parametrize("via", ["iterable", "write"])
def test_body_longer_than_content_length(serve_app, logs, via):
    """The app sends more bytes than its Content-Length: the extra bytes are
    not sent (they would be read as the start of the next response), and a
    warning is logged once."""

    def broken(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "3")])
        if via == "write":
            write(b"abcdef")
        return [b"abc", b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\n\r\n"]

    srv = serve_app(ok_or(broken))
    with srv.connect() as conn:
        resp = conn.request(get("/broken"))
        assert (resp.status, resp.body) == (200, b"abc")
        extra = conn.read_available(0.3)
        assert extra == b"", extra
        if not conn.eof:
            follow = conn.request(get("/ok"))
            assert (follow.status, follow.body) == (200, b"ok")
    logs.wait("exceeded the number of bytes specified by Content-Length")
    warnings = [
        r for r in logs.records(logging.WARNING) if "exceeded" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert_still_serving(srv)
