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


# The realistic scenarios (jinja, json, django) ask for one page of an inventory
# through a URL with an integer converter; bench/inventory.py makes its rows.
PAGE = 7
PAGE_PATH = f"/items/{PAGE}/"
PATHS = {"jinja": PAGE_PATH, "json": PAGE_PATH, "django": PAGE_PATH}
_HERE = os.path.dirname(os.path.abspath(__file__))
_BUILT = {}


def _flask_app():
    from flask import Flask

    app = Flask("bench")

    @app.route("/")
    def index():
        return "Hello, world!"

    return app


def _flask_jinja_app():
    """Flask rendering bench/templates/items.html: a layout, a 20-row table."""
    from flask import Flask, render_template
    from inventory import PAGES, page_rows

    app = Flask("bench", template_folder=os.path.join(_HERE, "templates"))

    @app.route("/items/<int:page>/")
    def items(page):
        rows = page_rows(page)
        return render_template(
            "items.html",
            page=page,
            pages=range(1, PAGES + 1),
            rows=rows,
            total=sum(row["total"] for row in rows),
        )

    return app


def _flask_json_app():
    """Flask returning the same page as JSON (a dict, serialised by Flask)."""
    from flask import Flask
    from inventory import PAGES, page_rows

    app = Flask("bench")

    @app.route("/items/<int:page>/")
    def items(page):
        return {"page": page, "pages": PAGES, "items": page_rows(page)}

    return app


def _django_app():
    """The Django project bench/djsite (default middleware, cached templates)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# Framework apps are built on first use only (a server imports Flask or Django
# only when it serves them).
_BUILDERS = {
    "flask": _flask_app,
    "jinja": _flask_jinja_app,
    "json": _flask_json_app,
    "django": _django_app,
}


def __getattr__(name):
    # ``apps:flask``, ``apps:django``... for servers that import their target.
    if name in _BUILDERS:
        return load(name)
    raise AttributeError(name)


APPS = {
    "hello": hello,
    "big": big,
    "stream": stream,
    "file": file,
    "upload": upload,
    "slow": slow,
}


def load(name):
    """The WSGI application called NAME."""
    if name in _BUILDERS:
        if name not in _BUILT:
            _BUILT[name] = _BUILDERS[name]()
        return _BUILT[name]
    if name not in APPS:
        names = sorted([*APPS, *_BUILDERS])
        raise SystemExit(f"unknown app {name!r}; expected one of {names}")
    return APPS[name]


def path(name):
    """The request path a scenario asks for ("/" unless PATHS says otherwise)."""
    return PATHS.get(name, "/")
