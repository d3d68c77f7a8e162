"""Check a server's answer for one scenario before it is timed.

    python bench/check.py SCENARIO PORT

Talks HTTP/1.1 to 127.0.0.1:PORT over one keep-alive connection with a small
client of its own (so it sees exactly what arrives on the wire) and checks the
status, the framing and the body (exact bytes, or length and SHA-256 for the
file).  Prints one line, ``ok: NOTE`` (exit 0) or ``fails: REASON`` (exit 1).
``--wait PORT SECONDS`` only waits until GET / answers at all (exit 0) or
not (exit 1).
"""

import functools
import hashlib
import os
import socket
import sys
import time

import app_loop
import apps

HOST = "127.0.0.1"
TIMEOUT = 30.0
PIPELINE_DEPTH = 16


class Fail(Exception):
    """The server's answer is wrong."""


def request(method="GET", body=b"", path="/"):
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    if body:
        head += (
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        )
    return head.encode("ascii") + b"\r\n" + body


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")

    def close(self):
        self.file.close()
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        line = self.file.readline(65537)
        if not line:
            raise Fail("connection closed before a complete response")
        return line

    def response(self):
        """Read one response: (status, {lowercase name: value}, body, framing)."""
        status_line = self._line().decode("latin-1").rstrip("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise Fail(f"bad status line {status_line[:60]!r}")
        headers = {}
        while True:
            line = self._line().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            framing, body = "chunked", self._chunked()
        elif "content-length" in headers:
            framing = "content-length"
            body = self.file.read(int(headers["content-length"]))
        else:
            framing, body = "close", self.file.read()
        return int(parts[1]), headers, body, framing

    def _chunked(self):
        pieces = []
        while True:
            size = int(self._line().split(b";")[0].strip(), 16)
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):
                    pass
                return b"".join(pieces)
            pieces.append(self.file.read(size))
            self._line()


def _expect(status, body, want, what):
    if status != 200:
        raise Fail(f"{what}: status {status}")
    if body != want:
        raise Fail(
            f"{what}: body of {len(body)} B {body[:16]!r}..., expected {len(want)} B"
        )


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(apps.BLOCK), b""):
            digest.update(block)
    return digest.digest()


# The realistic scenarios: the page the app itself gives when called directly.
FRAMEWORK_PAGES = {
    "jinja": ("text/html", b"Inventory, page 7 of 10"),
    "json": ("application/json", b'"page":7'),
    "django": ("text/html", b"Inventory, page 7 of 10"),
}


@functools.cache
def _own_answer(scenario):
    """(headers, body) of the app called in this process with the environ of
    bench/app_loop.py.  Computed before the first request is sent (importing
    Django takes a while), so that no keep-alive timeout runs out meanwhile."""
    app = apps.load(scenario)
    _, headers, body = app_loop.call(app, app_loop.environ_for(scenario))
    return headers, body


def _framework_page(scenario, status, headers, body):
    """The server's answer must be exactly the app's own: same bytes, same
    Content-Type, and, for Django, the headers its default middleware adds."""
    what = f"GET {apps.path(scenario)}"
    want_type, marker = FRAMEWORK_PAGES[scenario]
    want_headers, want = _own_answer(scenario)
    if marker not in want:
        raise Fail(f"{what}: the app itself did not render the page ({want[:60]!r})")
    _expect(status, body, want, what)
    if not headers.get("content-type", "").startswith(want_type):
        raise Fail(f"{what}: Content-Type {headers.get('content-type')!r}")
    for name, value in want_headers:
        if name.lower() in ("x-frame-options", "x-content-type-options"):
            if headers.get(name.lower()) != value:
                raise Fail(
                    f"{what}: {name} {headers.get(name.lower())!r}, not {value!r}"
                )


def exchange(conn, scenario):
    """One request of SCENARIO on CONN, checked: (headers, framing, notes)."""
    notes = []
    if scenario == "upload":
        conn.send(request("POST", b"u" * apps.UPLOAD_SIZE))
    else:
        conn.send(request(path=apps.path(scenario)))
    status, headers, body, framing = conn.response()
    if scenario in ("hello", "flask", "slow", "idle"):
        _expect(status, body, apps.HELLO, "GET /")
    elif scenario in FRAMEWORK_PAGES:
        _framework_page(scenario, status, headers, body)
    elif scenario == "big":
        _expect(status, body, apps.BIG, "GET /")
    elif scenario == "stream":
        if "content-length" in headers:
            raise Fail("the stream came with a Content-Length")
        _expect(status, body, apps.CHUNK * apps.STREAM_CHUNKS, "stream")
        notes.append(f"stream framing: {framing}")
    elif scenario == "file":
        path = os.environ[apps.FILE_ENV]
        size = os.path.getsize(path)
        if status != 200 or len(body) != size:
            raise Fail(f"file: status {status}, {len(body)} of {size} bytes")
        if hashlib.sha256(body).digest() != _file_digest(path):
            raise Fail("file: body differs from the file (SHA-256)")
        if headers.get("x-file-wrapper") != "yes":
            notes.append("no wsgi.file_wrapper: the app's fallback iterator served")
    elif scenario == "upload":
        _expect(status, body, str(apps.UPLOAD_SIZE).encode(), "upload")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    return headers, framing, notes


def pipeline(conn):
    conn.sock.settimeout(5)
    conn.send(request() * PIPELINE_DEPTH)
    answered = 0
    try:
        for _ in range(PIPELINE_DEPTH):
            status, _, body, _ = conn.response()
            _expect(status, body, apps.HELLO, f"pipelined #{answered + 1}")
            answered += 1
    except (Fail, OSError) as exc:
        raise Fail(
            f"pipelining broken: {answered} of {PIPELINE_DEPTH} pipelined "
            f"requests answered ({exc})"
        ) from None


def check(scenario, port):
    """Check SCENARIO twice on one connection; return notes ('' if none)."""
    if scenario in FRAMEWORK_PAGES:
        _own_answer(scenario)
    conn = Connection(port)
    try:
        if scenario == "pipeline":
            pipeline(conn)
            return ""
        headers, framing, notes = exchange(conn, scenario)
        if framing == "close" or headers.get("connection", "").lower() == "close":
            notes.append("closes the connection after the response (no keep-alive)")
        else:
            try:
                exchange(conn, scenario)
            except (Fail, OSError) as exc:
                notes.append(f"keep-alive: the 2nd request failed ({exc})")
        return "; ".join(notes)
    finally:
        conn.close()


def wait(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = Connection(port)
        except OSError:
            time.sleep(0.1)
            continue
        try:
            conn.sock.settimeout(5)
            conn.send(request())
            conn.response()
            return True
        except (Fail, OSError):
            time.sleep(0.1)
        finally:
            conn.close()
    return False


def main(argv):
    if len(argv) == 3 and argv[0] == "--wait":
        return 0 if wait(int(argv[1]), float(argv[2])) else 1
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        note = check(argv[0], int(argv[1]))
    except (Fail, OSError, ValueError) as exc:
        print(f"fails: {exc}")
        return 1
    print(f"ok: {note}" if note else "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
