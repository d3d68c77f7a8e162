"""Small WSGI applications shared by the functional tests."""

from __future__ import annotations

import hashlib
import json


def hello_app(environ, start_response):
    """200, a fixed body with a Content-Length."""
    body = b"Hello, world!"
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def path_app(environ, start_response):
    """Echoes ``PATH_INFO`` back with an explicit Content-Length."""
    body = environ["PATH_INFO"].encode("latin-1")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def echo_app(environ, start_response):
    """Echoes the method, path and request body: ``METHOD PATH|BODY``."""
    body = environ["wsgi.input"].read()
    out = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}|".encode() + body
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(out))),
        ],
    )
    return [out]


def digest_app(environ, start_response):
    """Reads wsgi.input in blocks; answers JSON with the length and sha256."""
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    total = 0
    while True:
        block = stream.read(65536)
        if not block:
            break
        total += len(block)
        digest.update(block)
    out = json.dumps(
        {
            "length": total,
            "sha256": digest.hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH"),
        }
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(out)))],
    )
    return [out]


def generator_app(environ, start_response):
    """A response body of several pieces and no Content-Length."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first,"
        yield b""  # empty items must not end a chunked body
        yield b"second,"
        yield b"third"

    return body()


class EnvironRecorder:
    """App that stores every environ it sees and answers 200 "ok"."""

    def __init__(self):
        self.environs = []

    def __call__(self, environ, start_response):
        if environ.get("CONTENT_LENGTH") or environ["REQUEST_METHOD"] == "POST":
            environ["test.body"] = environ["wsgi.input"].read()
        self.environs.append(dict(environ))
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")]
        )
        return [b"ok"]

    @property
    def last(self):
        return self.environs[-1]


def body_length_recorder():
    """An app answering the length of the body it read, and the list of
    (PATH_INFO, body length) of its calls."""
    calls = []

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        calls.append((environ["PATH_INFO"], len(body)))
        out = str(len(body)).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    return app, calls


def path_body_app(environ, start_response):
    """Answers ``PATH:BODY``: the path and the request body it read."""
    body = environ["PATH_INFO"].encode() + b":" + environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class Recorder:
    """An app that records the paths it was called for and echoes the body."""

    def __init__(self):
        self.calls = []

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read()
        self.calls.append(environ["PATH_INFO"])
        out = f"{environ['PATH_INFO']}|".encode() + body
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
