"""A server under test in a child process, for the tests that measure the server
process itself: its memory (VmRSS/VmHWM), its open descriptors and its CPU time, all
read from /proc/PID.

Run as a script, this module is the child: ``python subprocess_server.py TARGET APP
[setting=value ...]`` serves one of :data:`APPS` on 127.0.0.1 (ephemeral port) with
``TARGET`` (maitre or waitress) and prints ``PORT <n>`` once it listens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------- apps (child side)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def crc(environ, start_response):
    """Reads the whole body in blocks: answers ``<length> <crc32>``."""
    stream = environ["wsgi.input"]
    total = 0
    value = 0
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        total += len(block)
        value = zlib.crc32(block, value)
    out = f"{total} {value}".encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


def stream(environ, start_response):
    """``/?n=<bytes>``: that many bytes in 1 MiB items, without a Content-Length."""
    size = int(environ["QUERY_STRING"].partition("n=")[2] or 0)
    block = bytes(range(256)) * 4096  # 1 MiB

    def body():
        left = size
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            yield piece

    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return body()


def big(environ, start_response):
    """``/?n=<bytes>``: one bytes object of that many bytes, made for this request
    and returned as a one-item list (the shape whose whole body exists at once)."""
    size = int(environ["QUERY_STRING"].partition("n=")[2] or 0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"b" * size]


def fields(environ, start_response):
    """Answers the number of ``X...`` header fields the environ holds."""
    out = str(sum(1 for k in environ if k.startswith("HTTP_X"))).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


def sleep(environ, start_response):
    """``/?ms=<n>``: sleeps, then answers with the path (to tag requests)."""
    ms = int(environ["QUERY_STRING"].partition("ms=")[2] or 0)
    time.sleep(ms / 1000)
    out = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


APPS = {
    "hello": hello,
    "crc": crc,
    "stream": stream,
    "big": big,
    "fields": fields,
    "sleep": sleep,
}


def _setting(text: str):
    name, _, value = text.partition("=")
    try:
        return name, int(value)
    except ValueError:
        return name, value


def _child(argv):
    target, app_name, *settings = argv
    if target == "waitress":
        from waitress.server import create_server
    else:
        from maitre import create_server
    kw = dict(_setting(s) for s in settings)
    kw.setdefault("host", "127.0.0.1")
    kw.setdefault("port", 0)
    server = create_server(APPS[app_name], **kw)
    print(f"PORT {server.effective_port}", flush=True)
    server.run()


# ---------------------------------------------------------- parent side


class ChildServer:
    """The server under test in a child process; use as a context manager (the child
    is killed by PID on exit)."""

    def __init__(self, target: str, app: str, **settings):
        args = [sys.executable, str(HERE / "subprocess_server.py"), target, app]
        args += [f"{k}={v}" for k, v in settings.items()]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.pid = self.proc.pid
        self.stderr_lines: list = []
        self.port = self._read_port()
        self._pump = threading.Thread(target=self._drain, daemon=True)
        self._pump.start()

    def _read_port(self) -> int:
        deadline = time.monotonic() + 30
        line = b""
        result: list = []

        def read():
            result.append(self.proc.stdout.readline())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if result:
            line = result[0]
        if not line.startswith(b"PORT "):
            self.kill()
            err = self.proc.stderr.read().decode(errors="replace")
            raise RuntimeError(f"server child did not start: {line!r}\n{err}")
        return int(line.split()[1])

    def _drain(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr_lines.append(line.decode(errors="replace").rstrip("\n"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream_ in (self.proc.stdout, self.proc.stderr):
            if stream_ is not None:
                stream_.close()

    # -- /proc measurements -------------------------------------------------
    def status_kib(self, field: str) -> int:
        """A ``kB`` field of /proc/PID/status, e.g. ``VmRSS`` or ``VmHWM``."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def rss(self) -> int:
        """Resident set size, bytes."""
        return self.status_kib("VmRSS") * 1024

    def hwm(self) -> int:
        """Peak resident set size, bytes."""
        return self.status_kib("VmHWM") * 1024

    def fds(self) -> int:
        """Open file descriptors."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_kinds(self) -> dict:
        """Open descriptors by kind (socket, pipe, anon_inode, file)."""
        kinds: dict = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                link = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            kind = link.split(":", 1)[0] if ":" in link else "file"
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (all threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    _child(sys.argv[1:])
