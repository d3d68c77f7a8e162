"""PEP 3333 contract: environ, wsgi.input, start_response, write(),
wsgi.file_wrapper, request bodies of every size."""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import sys
import time

import pytest
from apps import EnvironRecorder, digest_app
from helpers import (
    DEFAULT_SERVER_NAME,
    IDENT,
    get,
    maitre_only,
    post,
    wait_for,
)

# ---------------------------------------------------------------- environ


def test_environ_core_variables(serve_app):
    """The CGI-style variables have PEP 3333 types and waitress's values."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    with srv.connect() as conn:
        resp = conn.request(
            b"GET /caf%C3%A9/x%2Fy?a=1&b=%20&c=%C3%A9 HTTP/1.1\r\n"
            b"Host: localhost:1234\r\n"
            b"Content-Type: text/plain\r\n"
            b"\r\n"
        )
        client_port = conn.local_port
    assert resp.status == 200
    env = recorder.last
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    # percent-decoded bytes tunnelled through latin-1 (PEP 3333 "bytes as str")
    assert env["PATH_INFO"] == b"/caf\xc3\xa9/x/y".decode("latin-1")
    assert env["PATH_INFO"] == "/cafÃ©/x/y"
    assert env["QUERY_STRING"] == "a=1&b=%20&c=%C3%A9"
    assert env["REQUEST_URI"] == "/caf%C3%A9/x%2Fy?a=1&b=%20&c=%C3%A9"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_TYPE" not in env
    assert env["SERVER_PORT"] == str(srv.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"] == IDENT
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_HOST"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == "localhost:1234"
    for key, value in env.items():
        if key.isupper():
            assert isinstance(value, str), (key, value)


def test_environ_wsgi_variables(serve_app):
    """wsgi.* keys: version, scheme, multithread/multiprocess/run_once,
    input_terminated, errors, file_wrapper."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    assert srv.request(get("/")).status == 200
    env = recorder.last
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert hasattr(env["wsgi.errors"], "write")
    assert hasattr(env["wsgi.errors"], "flush")
    assert callable(env["wsgi.file_wrapper"])
    assert hasattr(env["wsgi.input"], "read")


def test_environ_request_with_body(serve_app):
    """POST: CONTENT_LENGTH and CONTENT_TYPE without HTTP_ prefix, body intact."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    resp = srv.request(
        post(
            "/form", b"a=1&b=2", b"Content-Type: application/x-www-form-urlencoded\r\n"
        )
    )
    assert resp.status == 200
    env = recorder.last
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == "7"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["test.body"] == b"a=1&b=2"


def test_environ_header_mapping(serve_app):
    """HTTP_* keys: duplicates joined with ", ", values decoded as latin-1,
    names containing "_" dropped, surrounding whitespace stripped, untrusted
    proxy headers cleared."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    resp = srv.request(
        b"GET / HTTP/1.1\r\n"
        b"Host: x\r\n"
        b"X-Dup: first\r\n"
        b"X-Dup: second\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"X_Custom: smuggled\r\n"
        b"X-Custom: genuine\r\n"
        b"X_Forwarded_For: 6.6.6.6\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\n"
        b"X-Spaces:   padded value \t\r\n"
        b"X-Empty:\r\n"
        b"\r\n"
    )
    assert resp.status == 200
    env = recorder.last
    assert env["HTTP_X_DUP"] == "first, second"
    assert env["HTTP_X_LATIN"] == "caf\xe9"
    assert env["HTTP_X_CUSTOM"] == "genuine"
    # no trusted proxy: clear_untrusted_proxy_headers (default on) removes it
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert env["HTTP_X_SPACES"] == "padded value"
    assert env["HTTP_X_EMPTY"] == ""


def test_environ_http10_without_host_uses_server_name(serve_app):
    """No Host header (HTTP/1.0): SERVER_NAME is the server_name setting."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    assert srv.request(b"GET /x HTTP/1.0\r\n\r\n").status == 200
    assert recorder.last["SERVER_NAME"] == DEFAULT_SERVER_NAME
    assert recorder.last["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in recorder.last

    recorder2 = EnvironRecorder()
    srv2 = serve_app(recorder2, server_name="example.test")
    assert srv2.request(b"GET /x HTTP/1.0\r\n\r\n").status == 200
    assert recorder2.last["SERVER_NAME"] == "example.test"


def test_environ_ident_and_url_scheme_settings(serve_app):
    """ident sets SERVER_SOFTWARE and Server:, url_scheme sets wsgi.url_scheme."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder, ident="custom-ident/1.0", url_scheme="https")
    resp = srv.request(get("/"))
    assert resp.header("Server") == "custom-ident/1.0"
    assert recorder.last["SERVER_SOFTWARE"] == "custom-ident/1.0"
    assert recorder.last["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    "path, script_name, path_info",
    [
        ("/app/foo/bar", "/app", "/foo/bar"),
        ("/app/", "/app", "/"),
        ("/app", "/app", ""),
        ("/app?x=1", "/app", ""),
        # not under the prefix: PATH_INFO untouched (waitress keeps SCRIPT_NAME)
        ("/application", "/app", "/application"),
        ("/other", "/app", "/other"),
    ],
)
def test_url_prefix(serve_app, path, script_name, path_info):
    """url_prefix becomes SCRIPT_NAME and is stripped from PATH_INFO only when
    the path is the prefix or starts with prefix + "/"."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder, url_prefix="/app")
    assert srv.request(get(path)).status == 200
    assert recorder.last["SCRIPT_NAME"] == script_name
    assert recorder.last["PATH_INFO"] == path_info


def test_waitress_client_disconnected_callable(serve_app):
    """environ["waitress.client_disconnected"] is a callable returning False
    while the client is connected."""
    seen = []

    def app(environ, start_response):
        seen.append(environ["waitress.client_disconnected"]())
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = serve_app(app)
    assert srv.request(get("/")).status == 200
    assert seen == [False]


@maitre_only("maitre.client_disconnected is maitre's own name for the callable")
def test_maitre_client_disconnected_callable(serve_app):
    """environ["maitre.client_disconnected"] exists too and returns False."""
    seen = []

    def app(environ, start_response):
        seen.append(environ["maitre.client_disconnected"]())
        seen.append(environ["waitress.client_disconnected"]())
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = serve_app(app)
    assert srv.request(get("/")).status == 200
    assert seen == [False, False]


@pytest.mark.parametrize(
    "name",
    [
        "waitress.client_disconnected",
        pytest.param(
            "maitre.client_disconnected",
            marks=maitre_only("maitre.client_disconnected is maitre's own name"),
        ),
    ],
)
def test_client_disconnected_turns_true(serve_app, name):
    """With channel_request_lookahead > 0 the callable turns True once the
    client has gone away while the app is still running."""
    results = []

    def app(environ, start_response):
        check = environ[name]
        results.append(wait_for(check, timeout=10))
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = serve_app(app, channel_request_lookahead=1)
    conn = srv.connect()
    conn.send(get("/"))
    time.sleep(0.1)
    conn.close()
    assert wait_for(lambda: results, timeout=15)
    assert results == [True]


# ------------------------------------------------------------- wsgi.input

INPUT_BODY = b"line one\nline two\n\nlast line without newline"


def _input_app(environ, start_response):
    stream = environ["wsgi.input"]
    op = environ["PATH_INFO"].strip("/")
    if op == "read":
        result = [stream.read()]
    elif op == "read-n":
        result = [stream.read(4), stream.read(5), stream.read(0), stream.read(1000)]
    elif op == "readline":
        result = [stream.readline() for _ in range(5)]
    elif op == "readline-limit":
        result = [stream.readline(4), stream.readline(100), stream.readline(-1)]
    elif op == "readlines":
        result = stream.readlines()
    elif op == "iterate":
        result = list(stream)
    elif op == "after-eof":
        result = [stream.read(), stream.read(), stream.read(10), stream.readline()]
    elif op == "mixed":
        result = [stream.readline(), stream.read(3), stream.readline(), stream.read()]
    else:
        raise AssertionError(op)
    out = json.dumps([r.decode("latin-1") for r in result]).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


@pytest.mark.parametrize(
    "op, expected",
    [
        ("read", [INPUT_BODY]),
        ("read-n", [b"line", b" one\n", b"", b"line two\n\nlast line without newline"]),
        ("readline", [b"line one\n", b"line two\n", b"\n", INPUT_BODY[19:], b""]),
        ("readline-limit", [b"line", b" one\n", b"line two\n"]),
        ("readlines", [b"line one\n", b"line two\n", b"\n", INPUT_BODY[19:]]),
        ("iterate", [b"line one\n", b"line two\n", b"\n", INPUT_BODY[19:]]),
        ("after-eof", [INPUT_BODY, b"", b"", b""]),
        ("mixed", [b"line one\n", b"lin", b"e two\n", INPUT_BODY[18:]]),
    ],
)
@pytest.mark.parametrize("encoding", ["length", "chunked"])
def test_wsgi_input_methods(serve_app, op, expected, encoding):
    """wsgi.input supports read(), read(n), readline(), readline(limit),
    readlines(), iteration, and returns b"" after EOF, for both body framings."""
    srv = serve_app(_input_app)
    if encoding == "length":
        req = post(f"/{op}", INPUT_BODY)
    else:
        req = (
            (
                f"POST /{op} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"".join(
                b"%x\r\n%s\r\n" % (len(p), p)
                for p in (INPUT_BODY[:7], INPUT_BODY[7:20], INPUT_BODY[20:])
            )
            + b"0\r\n\r\n"
        )
    resp = srv.request(req)
    assert resp.status == 200, resp.body
    assert [s.encode("latin-1") for s in json.loads(resp.body)] == expected


def test_wsgi_input_without_body(serve_app):
    """A GET without a body has an empty, readable wsgi.input."""
    got = []

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        got.extend([stream.read(), stream.read(10), stream.readline()])
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = serve_app(app)
    assert srv.request(get("/")).status == 200
    assert got == [b"", b"", b""]


def test_wsgi_input_unread_body_does_not_desync(serve_app):
    """An app that ignores the request body does not break the next request."""

    def app(environ, start_response):
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    srv = serve_app(app)
    with srv.connect() as conn:
        assert conn.request(post("/first", b"GET /evil HTTP/1.1\r\n\r\n")).body == (
            b"/first"
        )
        assert conn.request(get("/second")).body == b"/second"


# ------------------------------------------------------------ body sizes


@pytest.mark.parametrize("size", [0, 1, 65536, 1000003])
def test_request_body_sizes(serve_app, size):
    """Bodies of 0, 1, 64 KiB and ~1 MB bytes reach the app intact."""
    srv = serve_app(digest_app)
    body = os.urandom(size)
    resp = srv.request(post("/", body))
    assert resp.status == 200
    info = json.loads(resp.body)
    assert info["length"] == size
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    if size:
        assert info["content_length"] == str(size)


@pytest.mark.timeout(120)
def test_request_body_50mb(serve_app):
    """A 50 MB POST is read fully by the app (length and sha256 match)."""
    srv = serve_app(digest_app)
    size = 50 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    for _ in range(50):
        digest.update(block)
    with srv.connect() as conn:
        conn.send(
            f"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        for _ in range(50):
            conn.send(block)
        resp = conn.read_response()
    assert resp.status == 200
    info = json.loads(resp.body)
    assert info["length"] == size
    assert info["sha256"] == digest.hexdigest()


@pytest.mark.parametrize("encoding", ["length", "chunked"])
def test_inbuf_overflow_spill_is_transparent(serve_app, encoding):
    """inbuf_overflow=1024 and a 100 KB body: spilling to a temporary file is
    invisible to the app."""
    srv = serve_app(digest_app, inbuf_overflow=1024)
    body = os.urandom(100 * 1024)
    if encoding == "length":
        req = post("/", body)
    else:
        req = (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + 3000]), body[i : i + 3000])
                for i in range(0, len(body), 3000)
            )
            + b"0\r\n\r\n"
        )
    resp = srv.request(req)
    info = json.loads(resp.body)
    assert info["length"] == len(body)
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    assert info["content_length"] == str(len(body))


# --------------------------------------------------------- start_response


def test_write_callable_then_iterable(serve_app):
    """Data passed to write() comes first, then the iterable's items."""

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"ab")
        write(b"cd")
        return [b"ef", b"gh"]

    srv = serve_app(app)
    for req in (get("/"), b"GET / HTTP/1.0\r\n\r\n"):
        resp = srv.request(req)
        assert resp.status == 200
        assert resp.body == b"abcdefgh"


def test_write_callable_with_content_length(serve_app):
    """write() with a declared Content-Length keeps the connection alive."""

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "6")])
        write(b"abc")
        write(b"def")
        return []

    srv = serve_app(app)
    with srv.connect() as conn:
        r1 = conn.request(get("/"))
        assert (r1.body, r1.header("Content-Length")) == (b"abcdef", "6")
        r2 = conn.request(get("/"))
        assert r2.body == b"abcdef"


def test_exc_info_before_headers_sent_replaces_response(serve_app):
    """start_response(..., exc_info) before any body was sent replaces status
    and headers."""

    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("handled")
        except ValueError:
            start_response(
                "503 Service Unavailable",
                [("X-Second", "2"), ("Content-Length", "3")],
                sys.exc_info(),
            )
        return [b"err"]

    srv = serve_app(app)
    resp = srv.request(get("/"))
    assert resp.status == 503
    assert resp.reason == "Service Unavailable"
    assert resp.header("X-Second") == "2"
    assert resp.header("X-First") is None
    assert resp.body == b"err"


def test_exc_info_after_headers_sent_reraises(serve_app):
    """start_response(..., exc_info) after body bytes were sent re-raises:
    the client gets a truncated response and a closed connection."""
    reraised = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        write = start_response("200 OK", [("Content-Length", "100")])
        write(b"partial")
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError:
                reraised.append(True)
                raise
        return [b"never"]

    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(get("/"))
        resp = conn.read_response(allow_truncated=True)
        assert resp.status == 200
        assert resp.truncated
        assert resp.body == b"partial"
    assert reraised == [True]
    assert srv.request(get("/ok")).body == b"ok"  # the server still serves


def _bad_start_response_app(kind):
    def app(environ, start_response):
        if kind == "twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
        elif kind == "crlf-value":
            start_response("200 OK", [("X-Split", "a\r\nX-Injected: 1")])
        elif kind == "lf-value":
            start_response("200 OK", [("X-Split", "a\nb")])
        elif kind == "crlf-name":
            start_response("200 OK", [("X-Split\r\nX-Injected", "1")])
        elif kind == "crlf-status":
            start_response("200 OK\r\nX-Injected: 1", [])
        elif kind == "bytes-status":
            start_response(b"200 OK", [])
        elif kind == "int-value":
            start_response("200 OK", [("X-Number", 5)])
        elif kind == "bytes-name":
            start_response("200 OK", [(b"X-Bytes", "1")])
        else:
            raise AssertionError(kind)
        return [b"should not be sent"]

    return app


@pytest.mark.parametrize(
    "kind",
    [
        "twice",
        "crlf-value",
        "lf-value",
        "crlf-name",
        "crlf-status",
        "bytes-status",
        "int-value",
        "bytes-name",
    ],
)
def test_invalid_start_response_gives_500(serve_app, kind):
    """Misuse of start_response (second call without exc_info, CR/LF in
    status or headers, non-str status/name/value) is a 500, never a split
    response."""
    srv = serve_app(_bad_start_response_app(kind))
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert resp.status == 500
        assert b"should not be sent" not in resp.body
        assert not resp.has_header("X-Injected")
        assert resp.header("Connection") == "close"
        assert conn.is_closed()
    assert srv.request(get("/")).status == 500  # and the server still serves


@pytest.mark.parametrize(
    "header",
    [
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
        "transfer-encoding",
    ],
)
def test_hop_by_hop_header_from_app_gives_500(serve_app, header):
    """A hop-by-hop header set by the app is rejected with a 500."""

    def app(environ, start_response):
        start_response("200 OK", [(header, "chunked"), ("Content-Length", "2")])
        return [b"no"]

    srv = serve_app(app)
    resp = srv.request(get("/"))
    assert resp.status == 500
    assert resp.body != b"no"


def test_date_and_server_headers(serve_app):
    """Every response has Server: <ident> and a current RFC 7231 Date."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]

    srv = serve_app(app)
    resp = srv.request(get("/"))
    assert resp.header("Server") == IDENT
    date = email.utils.parsedate_to_datetime(resp.header("Date"))
    assert resp.header("Date").endswith(" GMT")
    assert abs(date.timestamp() - time.time()) < 60


def test_content_length_computed_for_one_item_list(serve_app):
    """A one-item list without Content-Length gets one computed, no chunking."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"exactly this"]

    srv = serve_app(app)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert resp.header("Content-Length") == "12"
        assert not resp.has_header("Transfer-Encoding")
        assert resp.body == b"exactly this"
        assert conn.is_open()


def test_app_headers_preserved(serve_app):
    """Headers set by the app reach the client, repeated ones included."""

    def app(environ, start_response):
        start_response(
            "201 Created",
            [
                ("Content-Type", "application/json"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("X-Custom", "caf\xe9"),
                ("Content-Length", "2"),
            ],
        )
        return [b"{}"]

    srv = serve_app(app)
    resp = srv.request(get("/"))
    assert resp.status == 201
    assert resp.reason == "Created"
    assert resp.header_list("Set-Cookie") == ["a=1", "b=2"]
    assert resp.header("X-Custom") == "caf\xe9"
    assert resp.header("Content-Type") == "application/json"


def test_content_length_too_short_closes(serve_app):
    """App sends fewer bytes than its Content-Length: the connection closes."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc", b"de"]

    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(get("/"))
        resp = conn.read_response(allow_truncated=True)
        assert resp.truncated
        assert resp.body == b"abcde"
        assert conn.eof


def test_content_length_excess_is_not_sent(serve_app):
    """App sends more than its Content-Length: extra bytes never reach the
    wire as the start of the next response."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abc", b"HTTP/1.1 200 OK\r\n\r\n"]

    srv = serve_app(app)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert resp.body == b"abc"
        extra = conn.read_available(0.3)
        assert extra == b""
        if not conn.eof:
            follow = conn.request(get("/"))
            assert follow.body == b"abc"


# ------------------------------------------------------- wsgi.file_wrapper


def test_file_wrapper_real_file(serve_app, tmp_path):
    """wsgi.file_wrapper on a real file: exact body and a Content-Length."""
    data = os.urandom(300_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    opened = []

    def app(environ, start_response):
        f = open(path, "rb")
        opened.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 8192)

    srv = serve_app(app)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert resp.status == 200
        assert resp.header("Content-Length") == str(len(data))
        assert resp.body == data
        # and the connection is still usable
        assert conn.request(get("/")).body == data
    assert wait_for(lambda: all(f.closed for f in opened))


def test_file_wrapper_honours_app_content_length(serve_app, tmp_path):
    """A Content-Length from the app equal to the file size is kept as is."""
    data = b"0123456789" * 1000
    path = tmp_path / "f.txt"
    path.write_bytes(data)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    srv = serve_app(app)
    resp = srv.request(get("/"))
    assert resp.header_list("Content-Length") == [str(len(data))]
    assert resp.body == data


def test_file_wrapper_bytesio(serve_app):
    """wsgi.file_wrapper on a BytesIO (no fileno) works."""
    data = os.urandom(100_000)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 4096)

    srv = serve_app(app)
    with srv.connect() as conn:
        resp = conn.request(get("/"))
        assert resp.status == 200
        assert resp.body == data
        assert conn.request(get("/")).body == data


def test_file_wrapper_read_only_filelike(serve_app):
    """wsgi.file_wrapper on an object with only read() and close() works,
    and close() is called."""
    data = b"abcdefghij" * 5000
    closed = []

    class ReadOnly:
        def __init__(self):
            self._io = io.BytesIO(data)

        def read(self, size=-1):
            return self._io.read(size)

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](ReadOnly(), 1000)

    srv = serve_app(app)
    for req in (get("/"), b"GET / HTTP/1.0\r\n\r\n"):
        resp = srv.request(req)
        assert resp.status == 200
        assert resp.body == data
    assert wait_for(lambda: closed == [True, True])
