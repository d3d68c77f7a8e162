"""WSGI applications used by the benchmarks (identical for every server).

Each scenario of bench/run.sh serves one of these by name (``APPS`` below, or
``apps:NAME`` for servers that import their target, such as granian).  The
expected responses are defined here too, so that bench/check.py checks exactly
what the apps send.
"""

import os
import time

HELLO = b"Hello, world!"
_TEXT = ("Content-Type", "text/plain")
_HELLO_HEADERS = [_TEXT, ("Content-Length", str(len(HELLO)))]

MIB = 1024 * 1024
# 1 MiB response, one bytes object: a recognisable pattern, not zeros.
BIG = bytes(range(256)) * (MIB // 256)
# 16 MiB streamed as 256 chunks of 64 KiB without a Content-Length.
CHUNK = bytes(range(255, -1, -1)) * (64 * 1024 // 256)
STREAM_CHUNKS = 256
STREAM_SIZE = STREAM_CHUNKS * len(CHUNK)
# Upload size (the wrk script bench/lua/upload.lua sends exactly this).
UPLOAD_SIZE = 8 * MIB
# File served by ``file``: created by bench/run.sh, its path in this env var.
FILE_ENV = "BENCH_FILE"
BLOCK = 64 * 1024
SLOW_SECONDS = 0.01


def hello(environ, start_response):
    """Hello world: 13 bytes with a Content-Length."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


def big(environ, start_response):
    """1 MiB in one bytes object, with a Content-Length."""
    start_response("200 OK", [_TEXT, ("Content-Length", str(len(BIG)))])
    return [BIG]


def _chunks():
    for _ in range(STREAM_CHUNKS):
        yield CHUNK


def stream(environ, start_response):
    """16 MiB from a generator of 64 KiB chunks, no Content-Length."""
    start_response("200 OK", [_TEXT])
    return _chunks()


def _blocks(f):
    with f:
        while True:
            data = f.read(BLOCK)
            if not data:
                return
            yield data


def file(environ, start_response):
    """The file named by $BENCH_FILE through wsgi.file_wrapper.

    A server without wsgi.file_wrapper gets what PEP 3333 asks an application
    to fall back to (a plain iterator of blocks); the X-File-Wrapper header says
    which one was used.
    """
    f = open(os.environ[FILE_ENV], "rb")  # noqa: SIM115 - closed by the server
    size = os.fstat(f.fileno()).st_size
    wrapper = environ.get("wsgi.file_wrapper")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size)),
            ("X-File-Wrapper", "yes" if wrapper else "no"),
        ],
    )
    if wrapper is not None:
        return wrapper(f, BLOCK)
    return _blocks(f)


def upload(environ, start_response):
    """Read wsgi.input fully (64 KiB reads, up to CONTENT_LENGTH); answer its length."""
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    total = 0
    while remaining > 0:
        data = stream.read(min(BLOCK, remaining))
        if not data:
            break
        total += len(data)
        remaining -= len(data)
    body = str(total).encode("ascii")
    start_response("200 OK", [_TEXT, ("Content-Length", str(len(body)))])
    return [body]


def slow(environ, start_response):
    """Hello world after a 10 ms time.sleep (a blocking call that frees the GIL)."""
    time.sleep(SLOW_SECONDS)
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


_FLASK = []


def _flask_app():
    if not _FLASK:
        from flask import Flask

        app = Flask("bench")

        @app.route("/")
        def index():
            return "Hello, world!"

        _FLASK.append(app)
    return _FLASK[0]


def __getattr__(name):
    # Flask is imported only when the Flask app is asked for (``apps:flask``).
    if name == "flask":
        return _flask_app()
    raise AttributeError(name)


APPS = {
    "hello": hello,
    "big": big,
    "stream": stream,
    "file": file,
    "upload": upload,
    "slow": slow,
    "flask": None,  # built on first use by load()
}


def load(name):
    """The WSGI application called NAME."""
    if name not in APPS:
        raise SystemExit(f"unknown app {name!r}; expected one of {sorted(APPS)}")
    return _flask_app() if name == "flask" else APPS[name]
