"""Shared helpers for the functional tests: target selection, a raw HTTP client, a
server in a subprocess (:class:`ServerProcess`, and :class:`Cluster` for a master
with worker processes) and a log capture (:class:`LogCapture`).

The suite runs against maitre by default.  ``MAITRE_TEST_TARGET=waitress``
runs the very same tests against waitress 3.0.2, which is how the tests
themselves are validated; tests that pin a deliberate difference between
maitre and waitress are marked with :func:`maitre_only`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

TARGET = os.environ.get("MAITRE_TEST_TARGET", "maitre").strip().lower()
if TARGET not in ("maitre", "waitress"):
    raise RuntimeError(
        f"MAITRE_TEST_TARGET must be 'maitre' or 'waitress', not {TARGET!r}"
    )

#: default ``ident`` of the server under test (``Server:`` and SERVER_SOFTWARE)
IDENT = TARGET
#: default ``server_name`` of the server under test
DEFAULT_SERVER_NAME = f"{TARGET}.invalid"

#: every socket used by the tests gets this timeout, in seconds
SOCKET_TIMEOUT = 10.0

HOST = "127.0.0.1"


#: MAITRE_TEST_NO_SKIP=1 runs the maitre-only tests against waitress too, to
#: check that each of them really fails there for the reason it gives
RUN_MAITRE_ONLY = os.environ.get("MAITRE_TEST_NO_SKIP") == "1"


def maitre_only(reason: str):
    """Mark a test that pins a deliberate maitre behaviour waitress lacks."""
    return pytest.mark.skipif(
        TARGET == "waitress" and not RUN_MAITRE_ONLY,
        reason=f"deliberate difference from waitress: {reason}",
    )


def create_server(app, **settings):
    """``create_server`` of the server under test."""
    if TARGET == "waitress":
        from waitress.server import create_server as create
    else:
        from maitre import create_server as create
    return create(app, **settings)


def stop_server(server, thread=None):
    """Close ``server`` and wait for its ``run()`` (in ``thread``) to return."""
    if TARGET == "waitress":
        # waitress's close() called from another thread does not wake its
        # select loop up (the loop would only notice after
        # asyncore_loop_timeout, and only once every client has gone), so
        # close every dispatcher from inside the loop instead
        from waitress import wasyncore

        if thread is not None:
            try:
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            except OSError:
                pass
            thread.join(5)
        server.task_dispatcher.shutdown(timeout=2)
        server.close()
    else:
        server.close()
        if thread is not None:
            thread.join(10)
    if thread is not None:
        assert not thread.is_alive(), "server.run() did not return after close()"


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete response was read."""


@dataclass
class Response:
    """One parsed HTTP response."""

    version: str
    status: int
    reason: str
    headers: list = field(default_factory=list)  # [(name, value)] in wire order
    body: bytes = b""
    raw_head: bytes = b""
    chunked: bool = False
    #: how the body length was determined: "none", "length", "chunked" or "close"
    framing: str = "none"
    #: True if the body was cut short by the peer closing the connection
    truncated: bool = False

    def header(self, name: str) -> str | None:
        """Value of the header ``name`` (case-insensitive), joined with ", "."""
        values = self.header_list(name)
        if not values:
            return None
        return ", ".join(values)

    def header_list(self, name: str) -> list:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def has_header(self, name: str) -> bool:
        return bool(self.header_list(name))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class RawConnection:
    """A client socket that sends raw bytes and parses responses.

    Every operation is bounded by the socket timeout, so a server that does
    not answer makes the test fail instead of hang.
    """

    def __init__(self, port: int, host: str = HOST, timeout: float = SOCKET_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.eof = False

    # -- context manager -------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    # -- sending ---------------------------------------------------------
    def send(self, data: bytes):
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    # -- low-level reading -----------------------------------------------
    def _fill(self, size: int = 65536) -> bool:
        """Read more bytes into the buffer; False at EOF (or reset)."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(min(size, 1 << 20))
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        """Bytes up to and including ``marker``."""
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                return self._take(idx + len(marker))
            if not self._fill():
                raise ConnectionClosed(
                    f"connection closed while waiting for {marker!r}; "
                    f"got {bytes(self.buf[:200])!r}"
                )

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._fill(max(65536, size - len(self.buf))):
                raise ConnectionClosed(
                    f"connection closed after {len(self.buf)} of {size} bytes"
                )
        return self._take(size)

    def _take(self, size: int) -> bytes:
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    def read_until_close(self) -> bytes:
        while self._fill():
            pass
        return self._take(len(self.buf))

    def read_available(self, wait: float = 0.2) -> bytes:
        """Whatever arrives within ``wait`` seconds (b"" if nothing)."""
        self.sock.settimeout(wait)
        try:
            self._fill()
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        return self._take(len(self.buf))

    def is_closed(self, timeout: float = SOCKET_TIMEOUT) -> bool:
        """Wait up to ``timeout`` for the server to close the connection.

        Returns True on EOF/reset, False if the connection is still open after
        ``timeout``.  Unexpected bytes sent by the server are an error.
        """
        if self.buf:
            extra = bytes(self.buf)
            raise AssertionError(f"unexpected extra bytes from server: {extra!r}")
        if self.eof:
            return True
        self.sock.settimeout(timeout)
        try:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                return False
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        if data:
            raise AssertionError(f"unexpected extra bytes from server: {data!r}")
        self.eof = True
        return True

    def is_open(self, wait: float = 0.3) -> bool:
        """True if the server has not closed the connection within ``wait``."""
        return not self.is_closed(timeout=wait)

    # -- response parsing ------------------------------------------------
    def read_head(self) -> Response:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError(f"bad status line {status_line!r}")
        version = parts[0]
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise AssertionError(f"bad response header line {line!r}")
            headers.append((name, value.strip(" \t")))
        return Response(
            version=version,
            status=status,
            reason=reason,
            headers=headers,
            raw_head=head,
        )

    def read_response(self, method: str = "GET", allow_truncated=False) -> Response:
        """Read one complete response (interim 1xx responses included).

        The body is delimited as RFC 9112 says: none for HEAD/1xx/204/304,
        chunked, Content-Length, or else up to the connection close.  With
        ``allow_truncated`` a body cut short by a close is returned with
        ``truncated=True`` instead of raising.
        """
        resp = self.read_head()
        if method == "HEAD" or resp.status < 200 or resp.status in (204, 304):
            resp.framing = "none"
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        decoded = []  # chunks decoded so far, kept if the body is cut short
        try:
            if te:
                if te != "chunked":
                    raise AssertionError(f"unexpected Transfer-Encoding {te!r}")
                resp.framing = "chunked"
                resp.chunked = True
                resp.body = self._read_chunked(decoded)
            elif cl is not None:
                resp.framing = "length"
                resp.body = self.read_exact(int(cl))
            else:
                resp.framing = "close"
                resp.body = self.read_until_close()
        except ConnectionClosed:
            if not allow_truncated:
                raise
            resp.truncated = True
            rest = self._take(len(self.buf))
            if resp.chunked:
                # decoded chunks plus the data of an incomplete last chunk
                partial = rest.split(b"\r\n", 1)
                resp.body = b"".join(decoded) + (
                    partial[1] if len(partial) > 1 else b""
                )
            else:
                resp.body = rest
        return resp

    def _read_chunked(self, body: list) -> bytes:
        while True:
            line = self.read_until(b"\r\n")[:-2]
            size_text = line.split(b";", 1)[0].strip()
            size = int(size_text, 16)
            if size == 0:
                # trailer section, up to the empty line
                while self.read_until(b"\r\n") != b"\r\n":
                    pass
                return b"".join(body)
            body.append(self.read_exact(size))
            if self.read_exact(2) != b"\r\n":
                raise AssertionError("chunk data not followed by CRLF")

    def request(self, data: bytes, method: str | None = None) -> Response:
        """Send ``data`` and read one final response (1xx skipped)."""
        if method is None:
            method = data.split(b" ", 1)[0].decode("latin-1")
        self.send(data)
        while True:
            resp = self.read_response(method)
            if resp.status >= 200:
                return resp


def get(path: str = "/", host: str = "localhost", headers: bytes = b"") -> bytes:
    """Bytes of a minimal HTTP/1.1 GET request."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1") + headers + b"\r\n"
    )


def post(path: str, body: bytes, headers: bytes = b"", version: str = "1.1") -> bytes:
    """Bytes of an HTTP POST request with a Content-Length body."""
    return (
        f"POST {path} HTTP/{version}\r\nHost: localhost\r\n"
        f"Content-Length: {len(body)}\r\n".encode("latin-1")
        + headers
        + b"\r\n"
        + body
    )


def chunked(*pieces: bytes) -> bytes:
    """Encode ``pieces`` as a chunked body (with the final 0-chunk)."""
    out = b""
    for piece in pieces:
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` elapses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def error_body(reason: str, message: str, ident: str = IDENT) -> bytes:
    """An error body exactly as waitress formats it."""
    return f"{reason}\r\n\r\n{message}\r\n\r\n(generated by {ident})".encode()


def assert_error_response(resp: Response, status: int, reason: str, ident=IDENT):
    """Status, reason, headers and body framing of a server-generated error."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.reason == reason
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.header("Connection") == "close"
    assert resp.header("Content-Length") == str(len(resp.body))
    assert resp.header("Server") == ident
    assert resp.body.startswith(f"{reason}\r\n\r\n".encode()), resp.body
    assert resp.body.endswith(f"\r\n\r\n(generated by {ident})".encode()), resp.body


#: a valid request pipelined behind a refused one: it must never be answered
SENTINEL = b"GET /sentinel HTTP/1.1\r\nHost: x\r\n\r\n"

#: reason phrases of the statuses a refused request gets
REFUSAL_REASONS = {
    400: "Bad Request",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}


def assert_refused(srv, app, raw: bytes, status=400):
    """``raw`` (+ a pipelined request) gets ``status`` (one of them, if a tuple),
    the connection is closed, and the app never runs."""
    statuses = status if isinstance(status, tuple) else (status,)
    with srv.connect() as conn:
        conn.send(raw + SENTINEL)
        resp = conn.read_response()
        assert resp.status in statuses, (resp.status, resp.body)
        assert_error_response(resp, resp.status, REFUSAL_REASONS[resp.status])
        # any byte after the error response (the sentinel's answer) fails here
        assert conn.is_closed()
    assert app.calls == [], app.calls


class ServerProcess:
    """A child process running a server (a CLI, a script), its stdout and stderr
    collected line by line in threads. ``kill()`` (call it in a ``finally``) kills it
    by PID if it is still running."""

    def __init__(self, args, cwd=None, env=None, pass_fds=(), timeout=30.0):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
        )
        self.stdout_lines: list = []
        self.stderr_lines: list = []
        self._threads = [
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.proc.stdout, self.stdout_lines),
                (self.proc.stderr, self.stderr_lines),
            )
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, lines):
        for line in iter(stream.readline, b""):
            lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def wait_for_lines(self, text: str, count: int = 1) -> list:
        """The first ``count`` stderr lines containing ``text``; fails the test if
        the process exits or ``timeout`` passes first."""
        deadline = time.monotonic() + self.timeout
        while True:
            found = [line for line in list(self.stderr_lines) if text in line]
            if len(found) >= count:
                return found[:count]
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(2)
                found = [line for line in self.stderr_lines if text in line]
                if len(found) >= count:
                    return found[:count]
                pytest.fail(
                    f"process exited ({self.proc.returncode}) before logging "
                    f"{count} x {text!r}:\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {count} x {text!r} in {self.timeout}s:\n{self.stderr}")
            time.sleep(0.02)

    def wait_for_line(self, text: str) -> str:
        """The first stderr line containing ``text`` (see ``wait_for_lines``)."""
        return self.wait_for_lines(text)[0]

    def wait(self) -> int:
        """Wait for the process to exit on its own; its exit status."""
        import subprocess

        try:
            code = self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process did not exit in {self.timeout}s:\n{self.stderr}")
        for t in self._threads:
            t.join(5)
        return code

    def stop(self, signum=None) -> int:
        """Send ``signum`` (SIGTERM by default) and wait for the exit status."""
        import signal

        os.kill(self.proc.pid, signal.SIGTERM if signum is None else signum)
        return self.wait()

    def kill(self):
        import signal

        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for t in self._threads:
            t.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()


class LogCapture(logging.Handler):
    """Records (monotonic time of emission, logger name, message) of a logger."""

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.records: list = []
        self.logger = logging.getLogger(name)

    def emit(self, record):
        self.records.append((time.monotonic(), record.name, record.getMessage()))

    def messages(self, containing: str = "") -> list:
        return [m for _, _, m in self.records if containing in m]

    def __enter__(self):
        self._level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)


class Cluster:
    """``python -m maitre`` with a master, its log, and its workers' pids."""

    def __init__(self, appdir, *args, app="wapp:app", env=None, port=None, **kw):
        self.port = port or free_port()
        argv = [sys.executable, "-m", "maitre", f"--listen={HOST}:{self.port}"]
        self.proc = ServerProcess(
            argv + list(args) + [app], cwd=appdir, env=env, timeout=20, **kw
        )
        self.pid = self.proc.proc.pid

    def wait_log(self, text: str, count: int = 1) -> list:
        return self.proc.wait_for_lines(text, count)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.proc.stderr_lines))

    def workers(self) -> set:
        """Pids of the workers alive now (children of the master)."""
        path = f"/proc/{self.pid}/task/{self.pid}/children"
        try:
            with open(path) as f:
                return {int(p) for p in f.read().split()}
        except FileNotFoundError:
            return set()

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=10.0) -> int:
        try:
            return self.proc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"master did not exit in {timeout}s:\n{self.proc.stderr}")

    def stop(self):
        """Teardown: TERM, then KILL the master and any worker still there."""
        workers = self.workers()
        if self.proc.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.proc.wait(8)
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1 and two client certificates
    (one from another CA), written to files in ``tmp``."""

    def __init__(self, tmp):
        import trustme  # the TLS tests skip without it (importorskip)

        self.dir = tmp
        self.ca = trustme.CA(organization_name="maitre tests")
        self.other_ca = trustme.CA(organization_name="someone else")
        self.server = self.ca.issue_cert("localhost", "127.0.0.1")
        self.client = self.ca.issue_cert(
            "alice@example.com",
            common_name="alice",
            organization_name="Example, Inc.",
        )
        self.stranger = self.other_ca.issue_cert("mallory@example.com")
        self.ca_file = self.write("ca.pem", self.ca.cert_pem.bytes())
        self.cert_file = self.write(
            "server.pem", b"".join(b.bytes() for b in self.server.cert_chain_pems)
        )
        self.key_file = self.write("server.key", self.server.private_key_pem.bytes())

    def write(self, name, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def settings(self, **more):
        s = {"ssl_certificate": self.cert_file, "ssl_private_key": self.key_file}
        s.update(more)
        return s

    def client_context(self, cert=None, **kw) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if cert is not None:
            cert.configure_cert(ctx)
        for name, value in kw.items():
            setattr(ctx, name, value)
        return ctx

    def context(self, **kw) -> ssl.SSLContext:
        """A client context trusting the CA, with ``kw`` set on it (e.g.
        ``maximum_version``)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        for name, value in kw.items():
            setattr(ctx, name, value)
        return ctx


def find_chromium() -> str | None:
    """A headless-capable Chromium on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def headless(chromium: str, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs headless Chromium with ``args`` (a page to dump or to screenshot)."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class RssSampler:
    """Samples ``read()``, a process's resident memory, every ``interval`` seconds in a
    thread: ``base`` is the first figure, ``peak`` the largest seen (sampled once more
    on exit). Sampling stops when the process is gone."""

    def __init__(self, read, interval: float = 0.05):
        self.read = read
        self.base = self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _sample(self) -> bool:
        try:
            self.peak = max(self.peak, self.read())
        except (OSError, KeyError, RuntimeError):
            return False
        return True

    def _run(self, interval):
        while not self._stop.wait(interval) and self._sample():
            pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._sample()
