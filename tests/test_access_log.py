"""The access log (``access_log``, ``access_log_format``): every gunicorn atom
against known requests, escaping that stops log forgery, rotation with a renamed
file (``reopen_logs()`` and SIGUSR1), stdout and the ``logging`` sink, and whole
lines from two processes appending to one file. waitress has no access log."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

import pytest
from helpers import (
    HOST,
    RawConnection,
    ServerProcess,
    chunked,
    create_server,
    free_port,
    maitre_only,
    wait_for,
)

pytestmark = maitre_only("waitress has no access log")

#: Apache's combined format, field by field
COMBINED = re.compile(
    r"^(?P<h>\S+) (?P<l>\S+) (?P<u>\S+) \[(?P<t>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d "
    r'[+-]\d{4})\] "(?P<r>(?:[^"\\]|\\x[0-9A-F]{2})*)" (?P<s>\d{3}) (?P<b>\d+|-) '
    r'"(?P<f>(?:[^"\\]|\\x[0-9A-F]{2})*)" "(?P<a>(?:[^"\\]|\\x[0-9A-F]{2})*)"$'
)


def app(environ, start_response):
    """``/status/NNN``: that status; ``/sleep``: 50 ms; ``/read``: the body's
    length; ``/big``: 2 MiB in 64 KiB pieces; else ``hello world``."""
    path = environ["PATH_INFO"]
    environ["REMOTE_USER"] = "from-app"
    if path.startswith("/status/"):
        status = path.rsplit("/", 1)[1]
        start_response(f"{status} Whatever", [("X-Res", "r-" + status)])
        return [b""]
    if path == "/sleep":
        time.sleep(0.05)
    if path == "/read":
        body = environ["wsgi.input"].read()
        out = str(len(body)).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(32 * 65536))])

        def pieces():
            for _ in range(32):
                time.sleep(0.01)
                yield b"x" * 65536

        return pieces()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Res", "res-value")])
    return [b"hello world"]


def read_lines(path, count, timeout=5.0):
    """The log's lines once it holds ``count`` of them (fails after ``timeout``)."""
    lines = []

    def enough():
        nonlocal lines
        try:
            with open(path, "rb") as f:
                lines = f.read().decode("latin-1").splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= count

    assert wait_for(enough, timeout), f"{len(lines)} of {count} lines: {lines}"
    return lines


@pytest.fixture
def logged(serve_app, tmp_path):
    """Factory: serve ``app`` with an access log file; returns (served, path)."""

    def start(fmt=None, **settings):
        path = tmp_path / "access.log"
        if fmt is not None:
            settings["access_log_format"] = fmt
        served = serve_app(app, access_log=str(path), **settings)
        return served, path

    return start


def test_default_is_the_combined_format(logged):
    served, path = logged()
    resp = served.request(
        b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://ref.example/\r\n"
        b"User-Agent: Agent/1.0 (test)\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n"
    )
    assert resp.status == 200
    [line] = read_lines(path, 1)
    m = COMBINED.match(line)
    assert m, line
    assert m["h"] == "127.0.0.1" and m["l"] == "-" and m["u"] == "user"
    assert m["r"] == "GET /p?q=1 HTTP/1.1"
    assert (m["s"], m["b"]) == ("200", "11")
    assert m["f"] == "http://ref.example/" and m["a"] == "Agent/1.0 (test)"
    stamp = time.strptime(m["t"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(time.mktime(stamp) - time.mktime(time.localtime())) < 120


def test_every_atom(logged):
    fmt = (
        "|".join(f"%({a})s" for a in "h l u t r m U q H s B b f a T M D L p".split())
        + "|%({x-id}i)s|%({x-res}o)s|%({REMOTE_USER}e)s|%({missing}e)s|%%"
    )
    served, path = logged(fmt)
    resp = served.request(
        b"GET /sleep?a=b&c HTTP/1.0\r\nHost: x\r\nX-Id: 42\r\nUser-Agent: U\r\n\r\n"
    )
    assert resp.status == 200
    [line] = read_lines(path, 1)
    f = line.split("|")
    assert f[0:3] == ["127.0.0.1", "-", "-"]
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", f[3])
    assert f[4:9] == ["GET /sleep?a=b&c HTTP/1.0", "GET", "/sleep", "a=b&c", "HTTP/1.0"]
    assert f[9:12] == ["200", "11", "11"]
    assert f[12:14] == ["-", "U"]
    seconds, ms, us, decimal = int(f[14]), int(f[15]), int(f[16]), float(f[17])
    # The app slept 50 ms; every unit says the same duration.
    assert 50 <= ms < 5000 and 50_000 <= us < 5_000_000 and seconds == us // 1_000_000
    assert ms == us // 1000 and abs(decimal - us / 1e6) < 1e-5
    assert f[18] == f"<{os.getpid()}>"
    assert f[19:24] == ["42", "res-value", "from-app", "-", "%"]


def test_chunked_upload_304_and_head(logged):
    served, path = logged('"%(r)s" %(s)s %(B)s %(b)s %({x-res}o)s')
    with served.connect() as conn:
        body = chunked(b"a" * 1000, b"b" * 234)
        conn.send(
            b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + body
        )
        assert conn.read_response().body == b"1234"
        conn.send(b"GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response().status == 304
        conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response("HEAD").status == 200
    lines = read_lines(path, 3)
    assert lines == [
        '"POST /read HTTP/1.1" 200 4 4 -',
        '"GET /status/304 HTTP/1.1" 304 0 - r-304',
        '"HEAD / HTTP/1.1" 200 0 - res-value',
    ]


def test_client_that_disconnects_mid_response(logged):
    served, path = logged("%(s)s %(B)s")
    sock = socket.create_connection((HOST, served.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    # Reset rather than a polite close: the server's next write fails.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    [line] = read_lines(path, 1, timeout=10)
    status, sent = line.split()
    assert status == "200"
    assert 0 < int(sent) < 32 * 65536, line


def test_values_cannot_forge_a_line(logged):
    served, path = logged()
    evil_agent = b'x" 200 1 "-" "forged\tagent\xff\\'
    resp = served.request(
        b'GET /a%22b%0A?q=%0d%0a"x HTTP/1.1\r\nHost: x\r\n'
        b'Referer: "quoted"\r\nUser-Agent: ' + evil_agent + b"\r\n\r\n"
    )
    assert resp.status == 200
    # A raw line break inside a header never reaches the log: the request is refused.
    refused = served.request(
        b"GET /x HTTP/1.1\r\nHost: x\r\nUser-Agent: a\n"
        b'127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] "GET /forged HTTP/1.1" 200 1'
        b' "-" "-"'
        b"\r\n\r\n"
    )
    assert refused.status == 400
    served.request(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = read_lines(path, 3)
    assert len(lines) == 3
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    assert m["r"] == "GET /a%22b%0A?q=%0d%0a\\x22x HTTP/1.1"
    assert m["f"] == "\\x22quoted\\x22"
    assert m["a"] == "x\\x22 200 1 \\x22-\\x22 \\x22forged\\x09agent\\xFF\\x5C"
    # The refused request's own line: its head was not parsed, so only its request
    # line is known; the forged text never reaches the log.
    refused_line = COMBINED.match(lines[1])
    assert refused_line, lines[1]
    assert (refused_line["r"], refused_line["s"]) == ("GET /x HTTP/1.1", "400")
    assert refused_line["a"] == "-"
    assert COMBINED.match(lines[2])["r"] == "GET /next HTTP/1.1"


#: requests the engine answers itself, without the application: (settings, bytes
#: sent, status, the logged request line)
REFUSED = {
    "bad-request-line": (
        {},
        b"GET /x HTTP/1.1 junk\r\nHost: x\r\n\r\n",
        400,
        "GET /x HTTP/1.1 junk",
    ),
    "no-host": ({}, b"GET /no-host HTTP/1.1\r\n\r\n", 400, "GET /no-host HTTP/1.1"),
    "header-too-large": (
        {"max_request_header_size": 1024},
        b"GET /big-head HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n",
        431,
        "GET /big-head HTTP/1.1",
    ),
    "body-too-large": (
        {"max_request_body_size": 1000},
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        413,
        "POST /upload HTTP/1.1",
    ),
    "chunk-too-large": (
        {"max_request_body_size": 1000},
        b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"100000\r\n",
        413,
        "POST /chunks HTTP/1.1",
    ),
}


def lines_with_the_next_request(served, path):
    """Sends one more request; the parsed line logged before its own (that of the
    request the test made), and both lines."""
    served.request(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = read_lines(path, 2)
    assert len(lines) == 2, lines
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    return m, lines


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_requests_get_one_line(logged, case):
    """A request the engine refuses without the application gets exactly one
    line, with what is known of it, like any other; and it is counted."""
    settings, raw, status, request_line = REFUSED[case]
    served, path = logged(**settings)
    with RawConnection(served.port) as conn:
        conn.send(raw)
        resp = conn.read_response()
        assert resp.status == status
        assert conn.is_closed()
    m, lines = lines_with_the_next_request(served, path)
    assert (m["h"], m["r"], m["s"]) == ("127.0.0.1", request_line, str(status))
    assert m["b"] == str(len(resp.body))
    assert COMBINED.match(lines[1])["r"] == "GET /next HTTP/1.1"
    stats = served.server.stats()
    assert stats["Requests"] == 2
    assert stats["Requests By Status"]["4xx"] == 1


def test_head_timeout_is_logged_as_408(logged):
    """A head still incomplete after channel_timeout is cut without an answer (as
    before); the log says 408 with nothing sent, as nginx does."""
    served, path = logged(channel_timeout=1)
    with RawConnection(served.port) as conn:
        conn.send(b"GET /slow-head HTTP/1.1\r\nHost: x\r\n")
        assert conn.read_until_close() == b""
    m, lines = lines_with_the_next_request(served, path)
    assert (m["r"], m["s"], m["b"]) == ("GET /slow-head HTTP/1.1", "408", "-")
    assert served.server.stats()["Requests By Status"]["4xx"] == 1


@pytest.mark.parametrize(
    "settings",
    [
        # the rate is checked every second; the idle sweep (every 30 s) comes later
        {"channel_timeout": 2, "min_request_body_rate": 500},
        {"channel_timeout": 1, "cleanup_interval": 1, "min_request_body_rate": 0},
    ],
    ids=["too-slow", "idle"],
)
def test_body_timeout_is_logged_as_408(logged, settings):
    """A body too slow for min_request_body_rate gets a 408 and its line; with no
    minimum rate, a body that stops for channel_timeout is cut without an answer,
    and logged as 408 with nothing sent. Either way the head was parsed, so its
    headers are in the line."""
    served, path = logged(**settings)
    rate = settings["min_request_body_rate"]
    with RawConnection(served.port) as conn:
        conn.send(
            b"POST /slow-body HTTP/1.1\r\nHost: x\r\nUser-Agent: slow/1\r\n"
            b"Content-Length: 100\r\n\r\nab"
        )
        sent = conn.read_until_close()
    m, lines = lines_with_the_next_request(served, path)
    assert (m["r"], m["s"], m["a"]) == ("POST /slow-body HTTP/1.1", "408", "slow/1")
    if rate:
        assert sent.startswith(b"HTTP/1.1 408 ")
        assert m["b"] == str(len(sent.split(b"\r\n\r\n", 1)[1]))
    else:
        assert (sent, m["b"]) == (b"", "-")


def test_idle_connection_is_not_logged(logged):
    """A connection that sends nothing made no request: closing it logs nothing."""
    served, path = logged("%(r)s %(s)s", channel_timeout=1, cleanup_interval=1)
    with RawConnection(served.port) as conn:
        assert conn.read_until_close() == b""
    served.request(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_lines(path, 1) == ["GET /next HTTP/1.1 200"]


def test_bad_request_line_cannot_forge_a_line(logged):
    """The raw request line of a refused request is escaped like any value: a
    quote and a CR in it stay inside the field, and what follows an LF (the end
    of the line as received) is not logged at all."""
    served, path = logged()
    forged = b'127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] "GET /forged HTTP/1.1" 200 1'
    for raw in (
        b'GET /a" ' + forged + b' "-" "-"\r' + forged + b" HTTP/1.1\r\n\r\n",
        b"GET /b\n" + forged + b' "-" "-"\r\n\r\n',
    ):
        with RawConnection(served.port) as conn:
            conn.send(raw)
            assert conn.read_response().status == 400
    served.request(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = read_lines(path, 3)
    assert len(lines) == 3, lines
    first, second = (COMBINED.match(line) for line in lines[:2])
    assert first and second, lines
    assert first["r"] == (
        "GET /a\\x22 127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \\x22GET /forged "
        "HTTP/1.1\\x22 200 1 \\x22-\\x22 \\x22-\\x22\\x0D127.0.0.1 - - "
        "[01/Jan/2000:00:00:00 +0000] \\x22GET /forged HTTP/1.1\\x22 200 1 HTTP/1.1"
    )
    assert (first["s"], second["r"], second["s"]) == ("400", "GET /b", "400")
    assert COMBINED.match(lines[2])["r"] == "GET /next HTTP/1.1"


def test_reopen_logs_after_rotation(logged):
    served, path = logged("%(U)s")
    for i in range(3):
        served.request(f"GET /before{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    read_lines(path, 3)
    rotated = path.with_name("access.log.1")
    os.rename(path, rotated)
    served.request(b"GET /renamed HTTP/1.1\r\nHost: x\r\n\r\n")
    served.server.reopen_logs()
    for i in range(2):
        served.request(f"GET /after{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert read_lines(path, 2) == ["/after0", "/after1"]
    # What was logged before reopen_logs() went to the renamed file.
    assert read_lines(rotated, 4) == ["/before0", "/before1", "/before2", "/renamed"]


def _write_app(directory):
    (directory / "logapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n"
    )


def _cli(directory, *args, port=None):
    port = port or free_port()
    proc = ServerProcess(
        [sys.executable, "-m", "maitre", f"--listen={HOST}:{port}", *args]
        + ["logapp:app"],
        cwd=str(directory),
    )
    proc.wait_for_line("Serving on")
    return proc, port


def _hammer(port, tag, count):
    """``count`` keep-alive requests tagged ``/tag-i``, answered one by one."""
    with RawConnection(port) as conn:
        for i in range(count):
            conn.send(f"GET /{tag}-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert conn.read_response().status == 200


def test_sigusr1_reopens_the_file(tmp_path):
    _write_app(tmp_path)
    path = tmp_path / "a.log"
    proc, port = _cli(tmp_path, f"--access-log={path}", "--access-log-format=%(U)s")
    try:
        _hammer(port, "one", 2)
        read_lines(path, 2)
        os.rename(path, tmp_path / "a.log.1")
        proc.proc.send_signal(signal.SIGUSR1)
        # The signal is handled between bytecodes of the main thread: wait for the
        # new file rather than guess.
        assert wait_for(path.exists, 5), proc.stderr
        _hammer(port, "two", 2)
        assert read_lines(path, 2) == ["/two-0", "/two-1"]
        assert read_lines(tmp_path / "a.log.1", 2) == ["/one-0", "/one-1"]
    finally:
        proc.stop(signal.SIGTERM)
        proc.kill()


def test_stdout_sink_and_startup_lines(tmp_path):
    _write_app(tmp_path)
    proc, port = _cli(tmp_path, "--access-log=-", "--access-log-format=%(m)s %(U)s")
    try:
        summary = proc.wait_for_line("threads")
        assert re.search(r"maitre \S+: 1 process, 4 threads, access log -$", summary)
        _hammer(port, "out", 3)
        assert wait_for(lambda: len(proc.stdout_lines) >= 3, 5), proc.stdout
        assert proc.stdout_lines[:3] == ["GET /out-0", "GET /out-1", "GET /out-2"]
    finally:
        proc.stop(signal.SIGTERM)
        proc.kill()


def test_logging_sink(serve_app, access_records):
    records = access_records
    served = serve_app(app, access_log="logging", access_log_format="%(r)s %(s)s")
    served.request(b"GET /via-logging HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: records, 5)
    # A request the engine refuses goes to the same logger, with the same format.
    assert served.request(b"GET /refused HTTP/1.1\r\n\r\n").status == 400
    assert wait_for(lambda: len(records) == 2, 5)
    assert records[0].getMessage() == "GET /via-logging HTTP/1.1 200"
    assert records[1].getMessage() == "GET /refused HTTP/1.1 400"
    assert [r.levelno for r in records] == [logging.INFO] * 2


def test_two_processes_write_whole_lines(tmp_path):
    """Two servers append to one file: 10,000 requests give 10,000 whole lines."""
    _write_app(tmp_path)
    path = tmp_path / "shared.log"
    fmt = '%(h)s "%(r)s" %(s)s %(b)s %({x-pad}i)s'
    procs = []
    try:
        for _ in range(2):
            procs.append(
                _cli(tmp_path, f"--access-log={path}", f"--access-log-format={fmt}")
            )
        per_client, clients = 2500, 2
        threads = [
            threading.Thread(target=_hammer, args=(port, f"p{n}c{c}", per_client))
            for n, (_, port) in enumerate(procs)
            for c in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        total = per_client * clients * len(procs)
    finally:
        for proc, _ in procs:
            proc.stop(signal.SIGTERM)
            proc.kill()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == total
    pattern = re.compile(rb'^127\.0\.0\.1 "GET /(p\dc\d-\d+) HTTP/1\.1" 200 2 -$')
    tags = set()
    for line in lines:
        m = pattern.match(line)
        assert m, line
        tags.add(m[1])
    assert len(tags) == total


def test_bad_settings_fail_at_start(tmp_path):
    with pytest.raises(ValueError, match="access_log_format"):
        create_server(app, host=HOST, port=0, access_log="-", access_log_format="%(Z)s")
    with pytest.raises(OSError, match="access_log"):
        create_server(
            app, host=HOST, port=0, access_log=str(tmp_path / "no" / "such" / "dir.log")
        )


#: ``access_log_format=json``: the keys of each line, in order
JSON_KEYS = [
    "remote_addr",
    "remote_user",
    "time",
    "request",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "body_bytes",
    "referer",
    "user_agent",
    "duration",
    "duration_us",
    "pid",
]


def test_json_lines_parse_whatever_the_request_held(logged):
    import json

    served, path = logged("json")
    # Every byte a header value may hold (HTAB, visible ASCII, obs-text), after a
    # letter: leading white space is not part of a value.
    value = bytes([ord("x"), 9, *range(0x20, 0x7F), *range(0x80, 0x100)])
    user = b'\xe9l\xe8ve\\"x'
    auth = __import__("base64").b64encode(user + b":pw")
    resp = served.request(
        b"GET /sleep?a=b&c=%22 HTTP/1.1\r\nHost: x\r\nUser-Agent: "
        + value
        + b"\r\nReferer: "
        + value
        + b"\r\nAuthorization: Basic "
        + auth
        + b"\r\n\r\n"
    )
    assert resp.status == 200
    # Refused before parsing: its request line, with every byte but CR and LF, is
    # logged as received.
    line = bytes(b for b in range(256) if b not in b"\r\n")
    with RawConnection(served.port) as conn:
        conn.send(line + b"\r\nHost: x\r\n\r\n")
        assert conn.read_response().status == 400
    served.request(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = read_lines(path, 3)
    assert len(raw) == 3
    assert all(r.isascii() for r in raw)
    first, refused, last = (json.loads(r) for r in raw)
    for obj in (first, refused, last):
        assert list(obj) == JSON_KEYS
        assert obj["pid"] == os.getpid()
        assert re.fullmatch(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", obj["time"])
    assert first["remote_addr"] == "127.0.0.1"
    assert first["remote_user"] == user.decode("latin-1")
    assert first["request"] == "GET /sleep?a=b&c=%22 HTTP/1.1"
    assert (first["method"], first["path"], first["query"], first["protocol"]) == (
        "GET",
        "/sleep",
        "a=b&c=%22",
        "HTTP/1.1",
    )
    assert (first["status"], first["body_bytes"]) == (200, 11)
    assert first["user_agent"] == first["referer"] == value.decode("latin-1")
    assert 0.05 <= first["duration"] < 5 and first["duration_us"] >= 50_000
    assert abs(first["duration"] - first["duration_us"] / 1e6) < 1e-5
    assert refused["request"] == line.decode("latin-1")
    assert refused["status"] == 400
    assert refused["user_agent"] is None and refused["method"] is None
    assert last["request"] == "GET /next HTTP/1.1" and last["query"] == ""


def test_json_lines_on_the_logging_sink(serve_app, access_records):
    import json

    served = serve_app(app, access_log="logging", access_log_format="json")
    served.request(b"GET /j HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\r\n\r\n")
    assert wait_for(lambda: access_records, 5)
    records = access_records
    obj = json.loads(records[0].getMessage())
    assert (obj["path"], obj["status"], obj["user_agent"]) == ("/j", 200, "\xff")
