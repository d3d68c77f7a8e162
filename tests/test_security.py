"""Regression tests for waitress's published security advisories, one named test
per advisory (several for the advisories that covered several flaws), and for the
injection defences that are not a refused request (header names with ``_``, untrusted
proxy headers, CR/LF in a response header) and a program exiting with the server
running. The other refused requests are in test_refused_requests.py.

Each refused request is sent with a valid request pipelined behind it: the refusal
must close the connection, and the request behind it must never reach the
application nor be answered.
"""

from __future__ import annotations

import concurrent.futures
import random
import socket
import struct
import subprocess
import sys
import time

import pytest
from apps import EnvironRecorder, Recorder, hello_app
from helpers import (
    HOST,
    TARGET,
    RawConnection,
    assert_error_response,
    assert_refused,
    get,
    maitre_only,
)
from subprocess_server import ChildServer

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def chunked_post(te: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /p HTTP/1.1\r\nHost: x\r\n"
        + extra
        + b"Transfer-Encoding: "
        + te
        + b"\r\n\r\n"
        + body
    )


# ------------------------------------------------------------ CVE-2019-16785


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /a HTTP/1.1\nHost: x\n\n",
        b"GET /a HTTP/1.1\r\nHost: x\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\n\n",
        # the LF-only request hides a second request from a CRLF-only proxy
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-Hide: 1\n\nGET /hidden HTTP/1.1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\nhello\n0\n\n",
    ],
    ids=["lf-only", "lf-in-fields", "lf-final-line", "lf-hiding-request", "lf-chunks"],
)
def test_cve_2019_16785_bare_lf_line_terminator(serve_app, raw):
    """CVE-2019-16785 (GHSA-pg36-wpm5-g57p): waitress accepted a bare LF as a
    line terminator, so a proxy ending lines with CRLF only saw a different
    request.  A bare LF in the head or in the chunked framing is a 400 and close."""
    app = Recorder()
    assert_refused(serve_app(app), app, raw)


# ------------------------------------------------------------ CVE-2019-16786


@pytest.mark.parametrize(
    "te", [b"gzip, chunked", b"chunked, gzip", b"identity", b"compress"]
)
def test_cve_2019_16786_unsupported_transfer_encoding_501(serve_app, te):
    """CVE-2019-16786 (GHSA-g2xc-35jw-c63p): waitress used chunked framing when
    any Transfer-Encoding value said chunked; a body with another coding (or
    chunked not last, where the length cannot be determined) is refused with
    501 and close, never decoded as chunked."""
    app = Recorder()
    assert_refused(serve_app(app), app, chunked_post(te, b"0\r\n\r\n" + SMUGGLED), 501)


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED,
        pytest.param(
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
            b"0\r\n\r\n" + SMUGGLED,
            marks=maitre_only("waitress unfolds it into a valid chunked framing"),
        ),
    ],
    ids=["two-header-lines", "folded-list", "folded-value"],
)
def test_cve_2019_16786_several_or_folded_transfer_encoding(serve_app, raw):
    """CVE-2019-16786: several Transfer-Encoding header lines, or one folded
    over lines (obs-fold), are refused (maitre: 400; waitress joins/unfolds them
    and answers 501), and the connection is closed."""
    app = Recorder()
    expected = 400 if TARGET == "maitre" else (400, 501)
    assert_refused(serve_app(app), app, raw, expected)


# ------------------------------------------------------------ CVE-2019-16792


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 0\r\nContent-Length: 35\r\n",
        b"Content-Length: 35\r\nContent-Length: 35\r\n",
        b"Content-Length: 0, 35\r\n",
        b"Content-Length: 35x\r\n",
        b"Content-Length: x\r\n",
        b"Content-Length: \r\n",
    ],
    ids=[
        "duplicated-0-35",
        "duplicated-same",
        "list",
        "trailing-junk",
        "word",
        "empty",
    ],
)
def test_cve_2019_16792_invalid_content_length_is_not_zero(serve_app, headers):
    """CVE-2019-16792 (GHSA-4ppp-gpcr-7qf6): waitress took a duplicated or
    invalid Content-Length as 0, so the body (here a whole request, exactly 35
    bytes) was served as a second, smuggled request.  It is a 400 and close."""
    assert len(SMUGGLED) == 35
    app = Recorder()
    raw = b"POST /p HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + SMUGGLED
    assert_refused(serve_app(app), app, raw)


# ------------------------------------------------------------ CVE-2019-16789


@pytest.mark.parametrize(
    "value",
    [b"\x0bchunked", b"\x0cchunked", b"chunked\x0b", b"\x1cchunked", b"\x00chunked"],
    ids=["vt-before", "ff-before", "vt-after", "fs-before", "nul-before"],
)
def test_cve_2019_16789_non_printable_not_stripped_as_whitespace(serve_app, value):
    """CVE-2019-16789 (GHSA-m5ff-3wj3-8ph4): waitress stripped characters such
    as \\x0b from header values as if they were whitespace, so
    ``Transfer-Encoding: \\x0bchunked`` (ignored by a proxy) framed the body as
    chunked.  Control characters in a field value are a 400 and close."""
    app = Recorder()
    # a server ignoring the TE reads 40 bytes; one taking it as chunked serves
    # the smuggled request
    raw = chunked_post(value, b"0\r\n\r\n" + SMUGGLED, extra=b"Content-Length: 40\r\n")
    assert_refused(serve_app(app), app, raw)


def test_cve_2019_16789_obs_text_is_not_whitespace(serve_app):
    """CVE-2019-16789: \\x85 (NEL in latin-1, whitespace to Python's str.strip)
    is obs-text, a valid field-value byte, so ``\\x85chunked`` is an unknown
    transfer coding: 501 and close, never chunked."""
    app = Recorder()
    raw = chunked_post(b"\x85chunked", b"0\r\n\r\n" + SMUGGLED)
    assert_refused(serve_app(app), app, raw, 501)


# -------------------------------------------------------------- CVE-2020-5236

#: header values known to make backtracking validators take exponential or
#: quadratic time, each about 200 KB
ADVERSARIAL_VALUES = {
    # the CVE-2020-5236 trigger: field-vchar runs separated by whitespace,
    # with a byte at the end the field-content pattern cannot match
    "vchar-space-runs-then-ctl": b"a " * 100_000 + b"\x01",
    "vchar-space-runs-valid": b"a " * 100_000 + b"z",
    "space-tab-runs-then-ctl": b"x" + b" \t" * 100_000 + b"\x7f",
    "spaces-then-vchar": b" " * 200_000 + b"x",
    "obs-text-runs": b"\x80 \xff\t" * 50_000 + b"\x00",
    "quote-runs": b'"\\' * 100_000,
}


#: waitress 3.0.2's header regex is still quadratic in leading whitespace (its
#: lazy OWS retries the field-content match at every offset): minutes for this one
SLOW_IN_WAITRESS = {"spaces-then-vchar"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[maitre_only("waitress 3.0.2 takes minutes (quadratic regex)")]
            if name in SLOW_IN_WAITRESS
            else [],
        )
        for name in ADVERSARIAL_VALUES
    ],
)
def test_cve_2020_5236_header_validation_is_linear(serve_app, name):
    """CVE-2020-5236 (GHSA-73m2-3pwg-5fgc): waitress's header-value regular
    expression backtracked catastrophically on crafted values.  A 200 KB
    adversarial header value is answered (200, or 400 if it holds a control
    character) within 5 s, and the server keeps serving."""
    value = ADVERSARIAL_VALUES[name]
    srv = serve_app(hello_app)
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Evil: " + value + b"\r\n\r\n"
    expected = 400 if any(b < 0x20 and b != 0x09 or b == 0x7F for b in value) else 200
    start = time.monotonic()
    with srv.connect() as conn:
        resp = conn.request(raw)
    elapsed = time.monotonic() - start
    assert resp.status == expected
    assert elapsed < 5, f"{elapsed:.1f}s for a {len(value)}-byte header"
    assert srv.request(get("/")).status == 200


# ------------------------------------------------------------ CVE-2022-24761


@pytest.mark.parametrize(
    "value", [b"+10", b"0x01", b"-0", b"1_0", b"\xd9\xa1", b"1.0", b"1e1", b" 1 0"]
)
def test_cve_2022_24761_content_length_only_digits(serve_app, value):
    """CVE-2022-24761 (GHSA-4f7p-27jc-3c36): waitress parsed Content-Length
    with int(), which accepts ``+10``, ``0x01`` (with base 0), ``1_0`` and
    non-ASCII digits.  Only 1*DIGIT is a length: anything else is a 400."""
    app = Recorder()
    raw = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n"
    assert_refused(serve_app(app), app, raw + b"x" * 10)


@pytest.mark.parametrize(
    "size", [b"+5", b"0x5", b"-5", b"5_0", b"\xd9\xa5", b" 5", b"5 5", b"5.0"]
)
def test_cve_2022_24761_chunk_size_only_hex_digits(serve_app, size):
    """CVE-2022-24761: chunk sizes were parsed with int(x, 16), accepting
    ``+5``, ``0x5`` and other forms.  Only 1*HEXDIG is a chunk size."""
    app = Recorder()
    raw = chunked_post(b"chunked", size + b"\r\nhello\r\n0\r\n\r\n")
    assert_refused(serve_app(app), app, raw)


@pytest.mark.parametrize(
    "ext",
    [b";a b", b";=v", b";a=\x01", b';a="x', b";a=b c", b";a=\r", b";a@b", b";;"],
)
def test_cve_2022_24761_chunk_extensions_validated(serve_app, ext):
    """CVE-2022-24761: chunk extensions were not validated (anything up to the
    CRLF was skipped).  An extension that is not ``;name[=token|quoted]`` is a
    400; valid ones are still accepted (see the next test)."""
    app = Recorder()
    raw = chunked_post(b"chunked", b"5" + ext + b"\r\nhello\r\n0\r\n\r\n")
    assert_refused(serve_app(app), app, raw)


def test_cve_2022_24761_valid_chunk_extensions_accepted(serve_app):
    """CVE-2022-24761: valid chunk extensions are accepted and ignored."""
    app = Recorder()
    srv = serve_app(app)
    body = b'5;a\r\nhello\r\n1;b=c;d="e f"\r\n!\r\n0;last\r\n\r\n'
    with srv.connect() as conn:
        resp = conn.request(chunked_post(b"chunked", body))
        assert (resp.status, resp.body) == (200, b"/p|hello!")
        assert conn.request(get("/after")).status == 200
    assert app.calls == ["/p", "/after"]


# ------------------------------------------------------------ CVE-2022-31015


def test_cve_2022_31015_socket_closed_while_app_runs(serve_app):
    """CVE-2022-31015 (GHSA-f5x9-8jwc-25rw): a worker thread closed a socket the
    I/O loop was still waiting on; the loop crashed on the closed (or reused)
    descriptor, which could mix connections up.  Many
    clients vanish (close or reset) while their app runs, while others keep
    connecting: the server never crashes, and every answer reaches the client
    that asked for it (each request carries an id the app echoes)."""

    def app(environ, start_response):
        time.sleep(random.uniform(0, 0.02))
        out = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    srv = serve_app(app, threads=4)
    rng = random.Random(31015)

    def vanish(n):
        sock = socket.create_connection((HOST, srv.port), timeout=5)
        try:
            sock.sendall(f"GET /gone/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(rng.uniform(0, 0.01))
            if n % 2:
                # RST instead of FIN
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        finally:
            sock.close()
        return None

    def honest(n):
        with RawConnection(srv.port) as conn:
            for k in range(2):
                path = f"/id/{n}/{k}"
                resp = conn.request(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if resp.status != 200 or resp.body != path.encode():
                    return (path, resp.status, resp.body)
        return None

    jobs = [(vanish if i % 3 == 0 else honest, i) for i in range(180)]
    rng.shuffle(jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs, timeout=60))
    assert [r for r in results if r is not None] == []
    # and the server is still alive and well
    assert srv.request(get("/id/last")).body == b"/id/last"


# ------------------------------------------------------------ CVE-2024-49768


def _exactly(size: int, head: bytes, tail: bytes) -> bytes:
    """``head`` + padding header + ``tail``, exactly ``size`` bytes."""
    pad = size - len(head) - len(tail) - len(b"X-Pad: \r\n")
    assert pad > 0
    return head + b"X-Pad: " + b"p" * pad + b"\r\n" + tail


@pytest.mark.parametrize("lookahead", [0, 5])
def test_cve_2024_49768_no_pipelined_request_after_bad_request(serve_app, lookahead):
    """CVE-2024-49768 (GHSA-9298-4cf8-g4wj): with request lookahead, a request
    pipelined behind one that failed to parse (the first exactly recv_bytes
    long) was still served.  After the error response nothing more on that
    connection runs: the app never sees the second request."""
    app = Recorder()
    srv = serve_app(app, channel_request_lookahead=lookahead)
    bad = _exactly(8192, b"GET /bad HTTP/1.1\r\nHost: x\r\n", b"Bad Header\r\n\r\n")
    assert len(bad) == 8192
    with srv.connect() as conn:
        conn.send(bad + get("/second") + get("/third"))
        resp = conn.read_response()
        assert_error_response(resp, 400, "Bad Request")
        assert conn.is_closed()
    time.sleep(0.3)  # a wrongly queued request would run by now
    assert app.calls == []


def test_cve_2024_49768_no_pipelined_request_after_app_error(serve_app):
    """CVE-2024-49768: with channel_request_lookahead=5, requests pipelined behind
    one whose app raised (500, connection closed) never reach the app."""
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/fail":
            raise RuntimeError("boom")
        return hello_app(environ, start_response)

    srv = serve_app(app, channel_request_lookahead=5)
    with srv.connect() as conn:
        conn.send(get("/fail") + get("/second") + get("/third") + get("/fourth"))
        resp = conn.read_response()
        assert resp.status == 500
        assert conn.is_closed()
    time.sleep(0.3)
    assert calls == ["/fail"]


# ------------------------------------------------------------ CVE-2024-49769


def test_cve_2024_49769_early_close_no_busy_loop():
    """CVE-2024-49769 (GHSA-3f84-rpwh-47g6): a client that closed before the
    server looked at its socket left waitress spinning in a busy loop.  After
    hundreds of connections closed at once, reset, or abandoned mid-request,
    the idle server process uses (almost) no CPU over 2 s."""
    with ChildServer(TARGET, "hello", threads=2) as child:
        for i in range(300):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                if i % 3 == 1:
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                sock.connect((HOST, child.port))
                if i % 3 == 2:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                if i % 5 == 4:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            finally:
                sock.close()
        # the server still answers, so every early close has been seen
        with RawConnection(child.port) as conn:
            assert conn.request(get("/")).status == 200
        time.sleep(1.0)
        before = child.cpu_seconds()
        time.sleep(2.0)
        used = child.cpu_seconds() - before
        assert used < 0.2, f"idle server used {used:.2f}s of CPU in 2s"
        with RawConnection(child.port) as conn:
            assert conn.request(get("/")).status == 200


def test_header_names_with_underscore_dropped(serve_app):
    """Header names containing ``_`` are dropped, so ``X_Forwarded_For`` cannot
    pose as ``X-Forwarded-For`` (both map to HTTP_X_FORWARDED_FOR), and
    ``Content_Length`` / ``Transfer_Encoding`` frame nothing."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder)
    with srv.connect() as conn:
        resp = conn.request(
            b"GET /u HTTP/1.1\r\nHost: x\r\nX_Auth_User: admin\r\nX-Real: 1\r\n"
            b"Content_Length: 5\r\nTransfer_Encoding: chunked\r\n\r\n"
        )
        assert resp.status == 200
        # the 5 "body" bytes were not swallowed: the next request is intact
        assert conn.request(get("/next")).status == 200
    env = recorder.environs[0]
    assert "HTTP_X_AUTH_USER" not in env
    assert env["HTTP_X_REAL"] == "1"
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert "HTTP_TRANSFER_ENCODING" not in env and "HTTP_CONTENT_LENGTH" not in env


@pytest.mark.parametrize("trusted", [None, "10.9.9.9"])
def test_untrusted_proxy_headers_dropped(serve_app, trusted):
    """Proxy headers from a peer that is not the trusted proxy never reach the
    app (clear_untrusted_proxy_headers, on by default), whether no proxy is
    trusted or another one is; REMOTE_ADDR, the scheme and the host stay the
    peer's own."""
    recorder = EnvironRecorder()
    settings = {}
    if trusted:
        settings = {
            "trusted_proxy": trusted,
            "trusted_proxy_headers": "x-forwarded-for x-forwarded-host "
            "x-forwarded-proto x-forwarded-port x-forwarded-by",
        }
    srv = serve_app(recorder, **settings)
    resp = srv.request(
        b"GET / HTTP/1.1\r\nHost: real.example\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 444\r\n"
        b"X-Forwarded-By: 6.6.6.7\r\nForwarded: for=6.6.6.8;proto=https\r\n\r\n"
    )
    assert resp.status == 200
    env = recorder.last
    for key in (
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_PORT",
        "HTTP_X_FORWARDED_BY",
        "HTTP_FORWARDED",
    ):
        assert key not in env, key
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "real.example"


@pytest.mark.parametrize(
    "header",
    [
        ("X-Split", "a\r\nX-Injected: 1"),
        ("X-Split", "a\rX-Injected: 1"),
        ("X-Split", "a\nX-Injected: 1"),
        ("X-Split\r\nX-Injected", "1"),
        ("X-Split", "a\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1"),
    ],
    ids=["crlf-value", "cr-value", "lf-value", "crlf-name", "response-split"],
)
def test_crlf_in_response_header_refused(serve_app, header):
    """CR or LF in a response header from the app (response splitting): a 500,
    and no byte of the injected text ever reaches the wire."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            return hello_app(environ, start_response)
        start_response("200 OK", [("Content-Length", "4"), header])
        return [b"body"]

    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(get("/"))
        raw = conn.read_until_close()
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), raw[:100]
    assert b"Injected" not in raw
    assert raw.count(b"HTTP/1.") == 1
    assert srv.request(get("/ok")).status == 200


# ------------------------------------------------ no abort reaches the process

_EXIT_SCRIPT = """
import socket, sys, threading
if sys.argv[1] == "waitress":
    from waitress.server import create_server
else:
    from maitre import create_server

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]

server = create_server(app, host="127.0.0.1", port=0, threads=2)
threading.Thread(target=server.run, daemon=True).start()
with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as c:
    c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    assert c.recv(100).startswith(b"HTTP/1.1 200 ")
if sys.argv[2] == "close":
    server.close()
else:
    # a heap big enough that the interpreter's teardown takes a while
    heap = {i: [str(i)] for i in range(300_000)}
print("exiting", flush=True)
"""


@pytest.mark.parametrize("how", ["close", "big-heap"])
def test_interpreter_exit_with_server_thread_does_not_abort(how):
    """A program that runs the server in a daemon thread and exits (right after
    close(), or without it while the interpreter tears down a large heap) exits
    normally: the server's threads must not take the GIL back during
    finalization and abort the process (SIGABRT, "FATAL: exception not
    rethrown"). Three runs each, as the abort depends on timing."""
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", _EXIT_SCRIPT, TARGET, how],
            capture_output=True,
            timeout=60,
        )
        assert proc.stdout == b"exiting\n"
        assert (proc.returncode, b"FATAL" in proc.stderr) == (0, False), (
            proc.returncode,
            proc.stderr[-500:],
        )
