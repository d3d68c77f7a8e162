"""The HTTP request parser, with waitress's ``waitress.parser`` interface.

A thin face over the parser the server itself runs (``maitre._maitre.RequestParser``,
src/wsgi/parser.rs, over src/http): feeding a request to ``HTTPRequestParser`` a byte at
a time gives the outcome the server gives on the wire. Where maitre is deliberately
stricter than waitress (Content-Length with Transfer-Encoding, Transfer-Encoding on
HTTP/1.0, no Host on HTTP/1.1, obs-fold, ...), that outcome is maitre's:
``error`` is then a ``BadRequest``.

    parser = HTTPRequestParser(Adjustments())
    while data and not parser.completed:
        data = data[parser.received(data):]
"""

from __future__ import annotations

from typing import Any

from . import _maitre
from .utilities import (
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    ServerNotImplemented,
    find_double_newline,
)

__all__ = [
    "HTTPRequestParser",
    "ParsingError",
    "TransferEncodingNotImplemented",
    "crack_first_line",
    "find_double_newline",
    "split_uri",
]

_ERRORS: dict[int, type[Error]] = {
    400: BadRequest,
    413: RequestEntityTooLarge,
    431: RequestHeaderFieldsTooLarge,
    501: ServerNotImplemented,
}


class ParsingError(Exception):
    """A malformed request (the server answers 400)."""


class TransferEncodingNotImplemented(Exception):
    """A transfer coding other than chunked (the server answers 501)."""


class HTTPRequestParser:
    """Collects one HTTP request: feed it with ``received(data)`` until ``completed``.

    After the head: ``command``, ``path`` (percent-decoded), ``query``, ``fragment``,
    ``request_uri``, ``version`` ("1.0"/"1.1"), ``headers`` (``{"CONTENT_TYPE": ...,
    "X_FORWARDED_FOR": ...}``, repeated fields joined with ", "), ``content_length``,
    ``chunked``, ``expect_continue``, ``connection_close``. Once ``completed``:
    ``error`` (None, or the ``maitre.utilities`` error the server would answer) and the
    body from ``get_body_stream()``. Blank lines before a request line are skipped
    (RFC 9112 section 2.2), so ``empty`` stays False.
    """

    completed = False
    empty = False
    expect_continue = False
    headers_finished = False
    chunked = False
    content_length = 0
    header_bytes_received = 0
    body_bytes_received = 0
    version = "1.0"
    error: Error | None = None
    connection_close = False
    first_line = b""
    command = ""
    request_uri = ""
    proxy_scheme = ""
    proxy_netloc = ""
    path = ""
    query = ""
    fragment = ""

    def __init__(self, adj: Any) -> None:
        """``adj`` is a ``maitre.adjustments.Adjustments``."""
        self.adj = adj
        self.headers: dict[str, str] = {}
        self.url_scheme = adj.url_scheme
        self._parser: Any = None
        self._stream: Any = None

    def _engine_parser(self) -> Any:
        # Made on the first bytes, as waitress reads its limits from ``adj`` then.
        if self._parser is None:
            adj = self.adj
            self._parser = _maitre.RequestParser(
                adj.max_request_header_size,
                adj.max_request_body_size,
                adj.inbuf_overflow,
            )
        return self._parser

    def received(self, data: bytes) -> int:
        """Feed received bytes; returns how many were used. The call that completes the
        head uses nothing after it: feed the rest again (it starts the body). Bytes
        after the body belong to the next request."""
        if self.completed:
            return 0
        parser = self._engine_parser()
        consumed = parser.received(bytes(data))
        if not self.headers_finished and parser.head_complete:
            self._head_received()
        self.header_bytes_received = parser.header_bytes
        self.body_bytes_received = parser.body_bytes
        if parser.completed:
            self.completed = True
            self.headers_finished = True
            error = parser.error
            if error is not None:
                status, message = error
                self.error = _ERRORS.get(status, BadRequest)(message)
            elif self.chunked:
                # The application gets the body decoded, with its length.
                self.headers["CONTENT_LENGTH"] = str(parser.body_length)
        return consumed

    def _head_received(self) -> None:
        parser = self._parser
        self.headers_finished = True
        self.command = parser.method
        self.request_uri = parser.target
        self.version = parser.version
        self.first_line = (
            f"{self.command} {self.request_uri} HTTP/{self.version}".encode("latin-1")
        )
        headers = parser.headers
        # The application gets the body decoded: its transfer coding would mislead it.
        headers.pop("TRANSFER_ENCODING", None)
        self.headers = headers
        (
            self.proxy_scheme,
            self.proxy_netloc,
            self.path,
            self.query,
            self.fragment,
        ) = split_uri(self.request_uri.encode("latin-1"))
        self.chunked = parser.body_kind == "chunked"
        self.content_length = parser.content_length
        self.expect_continue = parser.expect_continue
        self.connection_close = not parser.keep_alive

    def get_body_stream(self) -> Any:
        """The body as a file-like object (``read``, ``readline``, ``readlines``,
        iteration), empty until the request is complete."""
        if self._stream is not None:
            return self._stream
        stream = self._engine_parser().take_body()
        if self.completed:
            self._stream = stream
        return stream

    def close(self) -> None:
        """Release the body (and its temporary file, if it spilled to one)."""
        if self._parser is not None:
            self._parser.close()
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def split_uri(uri: bytes) -> tuple[str, str, str, str, str]:
    """``(scheme, netloc, path, query, fragment)`` of a request-target, as latin-1
    strings; ``path`` is percent-decoded, as the server puts it in PATH_INFO."""
    scheme, netloc, path, query, fragment = _maitre.split_uri(bytes(uri))
    return scheme, netloc, path, query, fragment


def crack_first_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """``(method, uri, version)`` of a request line such as ``b"GET / HTTP/1.1"``
    (version ``b"1.1"``; ``b""`` when the line has none), split as waitress splits it:
    ``(b"", b"", b"")`` if the line is not ``METHOD SP URI [SP HTTP/d.d]``, and
    ParsingError for a lower-case method. Syntax only: the server itself serves
    HTTP/1.0 and 1.1 (1.2-1.9 as 1.1) and answers any other version with 400."""
    method, uri, version, error = _maitre.crack_first_line(bytes(line))
    if error is not None:
        raise ParsingError(error)
    return method, uri, version
