"""WSGI applications used by the benchmarks (identical for every server)."""

HELLO = b"Hello, world!"
_HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO))),
]


def hello(environ, start_response):
    """Hello world: 13 bytes with a Content-Length."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


APPS = {"hello": hello}
