"""Refused requests (and the framing rules that decide them), table-driven, over a
real socket.

Each row of :data:`ROWS` is one raw request, the outcome it must get (the final
status, and whether the server then closes the connection), the rule of RFC 9112
(or RFC 9110) it follows where one applies, and how it is checked (``check``):

* ``PIPELINED`` (:func:`test_framing`): the request is sent with a second, valid
  request pipelined right behind it (``GET /sentinel``).  A request that is refused
  must close the connection, and the request behind it must never be answered nor
  reach the application -- anything that could make a proxy in front and this
  server disagree about where a request ends is refused with 400 (or 501/431) and
  the connection closed.  A request that is accepted must leave the connection in
  sync: the sentinel is answered next (unless the row says the connection closes,
  e.g. HTTP/1.0).
* ``ERROR_PAGE`` (:func:`test_malformed_request_rejected`): the request alone gets
  waitress's exact error page with ``Connection: close``, the socket is closed, the
  app never runs, and the server keeps serving.
* ``STRICTER`` (:func:`test_stricter_than_waitress_rejected`): as ``ERROR_PAGE``,
  for requests waitress accepts.
* ``PIPELINED_ERROR_PAGE`` (:func:`test_smuggling_refused`): a request pipelined
  behind, and the exact error page.
* ``AT_ONCE`` (:func:`test_garbage_head_refused_before_it_ends`): a head already
  invalid whose end never comes is refused at once.

Refusals that take more than one request or a setting of their own follow the
table.  The CVE-named cases are in test_security.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from apps import Recorder, hello_app
from helpers import (
    SENTINEL,
    assert_error_response,
    assert_refused,
    chunked,
    get,
    maitre_only,
)

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

REASONS = {
    200: "OK",
    400: "Bad Request",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}

#: settings of the server every PIPELINED row runs against
SETTINGS = {"max_request_header_size": 4096, "max_request_body_size": 1_000_000}

#: how a row is checked (see the module's docstring)
PIPELINED = "pipelined"
ERROR_PAGE = "error-page"
STRICTER = "stricter"
PIPELINED_ERROR_PAGE = "pipelined-error-page"
AT_ONCE = "at-once"


@dataclass(frozen=True)
class Row:
    id: str
    raw: bytes
    #: the final status expected
    status: int
    #: whether the server closes the connection after answering
    closes: bool
    #: the rule followed, e.g. "RFC 9112 6.3 p5" (required for PIPELINED rows)
    rule: str = ""
    #: for accepted requests: what the app must see, "METHOD PATH|BODY"
    echo: bytes | None = None
    #: set when waitress 3.0.2 behaves differently: why
    maitre_only: str | None = None
    #: how the row is checked: PIPELINED, ERROR_PAGE, STRICTER, ...
    check: str = PIPELINED


def _post(headers: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    host = b"Host: x\r\n" if version == b"1.1" else b""
    return b"POST /p HTTP/" + version + b"\r\n" + host + headers + b"\r\n" + body


def _te_chunked(body: bytes, te: bytes = b"chunked") -> bytes:
    return _post(b"Transfer-Encoding: " + te + b"\r\n", body)


def _get(headers: bytes = b"", line: bytes = b"GET /g HTTP/1.1") -> bytes:
    return line + b"\r\n" + headers + b"\r\n"


HOST = b"Host: x\r\n"
BIG = b"a" * 5000  # over max_request_header_size

ROWS = [
    # ---------------------------------------------------------------- accepted
    Row("baseline-get", _get(HOST), 200, False, "RFC 9112 3", b"GET /g|"),
    Row(
        "baseline-content-length",
        _post(b"Content-Length: 5\r\n", b"hello"),
        200,
        False,
        "RFC 9112 6.2",
        b"POST /p|hello",
    ),
    Row(
        "content-length-leading-zeros",
        _post(b"Content-Length: 005\r\n", b"hello"),
        200,
        False,
        "RFC 9110 8.6: Content-Length = 1*DIGIT",
        b"POST /p|hello",
    ),
    Row(
        "content-length-ows",
        _post(b"Content-Length: \t5 \t\r\n", b"hello"),
        200,
        False,
        "RFC 9112 5.1: OWS around the field value is not part of it",
        b"POST /p|hello",
    ),
    Row(
        "content-length-zero",
        _post(b"Content-Length: 0\r\n"),
        200,
        False,
        "RFC 9112 6.3 p6",
        b"POST /p|",
    ),
    Row(
        "chunked",
        _te_chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        200,
        False,
        "RFC 9112 7.1",
        b"POST /p|hello world",
    ),
    Row(
        "chunked-case-insensitive",
        _te_chunked(b"5\r\nhello\r\n0\r\n\r\n", te=b"Chunked"),
        200,
        False,
        "RFC 9112 7: transfer-coding names are case-insensitive",
        b"POST /p|hello",
    ),
    Row(
        "chunk-size-uppercase-hex-leading-zeros",
        _te_chunked(b"00B\r\nhello world\r\n0\r\n\r\n"),
        200,
        False,
        "RFC 9112 7.1: chunk-size = 1*HEXDIG",
        b"POST /p|hello world",
    ),
    Row(
        "chunk-extension-name",
        _te_chunked(b"5;name\r\nhello\r\n0\r\n\r\n"),
        200,
        False,
        "RFC 9112 7.1.1: chunk-ext-name",
        b"POST /p|hello",
    ),
    Row(
        "chunk-extension-token-value",
        _te_chunked(b"5;name=value;other=x\r\nhello\r\n0;last=1\r\n\r\n"),
        200,
        False,
        "RFC 9112 7.1.1: chunk-ext-val = token",
        b"POST /p|hello",
    ),
    Row(
        "chunk-extension-quoted-value",
        _te_chunked(b'5;name="a \\" ; b"\r\nhello\r\n0\r\n\r\n'),
        200,
        False,
        "RFC 9112 7.1.1: chunk-ext-val = quoted-string",
        b"POST /p|hello",
    ),
    Row(
        "chunked-trailer",
        _te_chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"),
        200,
        False,
        "RFC 9112 7.1.2: trailer section (dropped)",
        b"POST /p|hello",
    ),
    Row(
        "absolute-form-target",
        _get(HOST, b"GET http://example.com/abs?q=1 HTTP/1.1"),
        200,
        False,
        "RFC 9112 3.2.2: a server MUST accept the absolute-form",
        b"GET /abs|",
    ),
    Row(
        "absolute-form-https-target",
        _get(HOST, b"GET https://example.com:8443/s HTTP/1.1"),
        200,
        False,
        "RFC 9112 3.2.2",
        b"GET /s|",
    ),
    Row(
        "empty-lines-before-request-line",
        b"\r\n\r\n" + _get(HOST),
        200,
        False,
        "RFC 9112 2.2: SHOULD ignore empty lines before the request-line",
        b"GET /g|",
    ),
    Row(
        "http10-without-host",
        _get(line=b"GET /g HTTP/1.0"),
        200,
        True,
        "RFC 9112 3.2 (Host is required in HTTP/1.1 only); 9.3: 1.0 closes",
        b"GET /g|",
    ),
    Row(
        "obs-text-in-value",
        _get(HOST + b"X-Latin: caf\xe9\r\n"),
        200,
        False,
        "RFC 9110 5.5: field-vchar includes obs-text",
        b"GET /g|",
    ),
    # ------------------------------------------------------- Content-Length
    Row(
        "content-length-with-transfer-encoding",
        _post(
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ),
        400,
        True,
        "RFC 9112 6.1 p15 / 6.3 p3: CL with TE ought to be an error; close",
        maitre_only="waitress lets Transfer-Encoding override Content-Length",
    ),
    Row(
        "transfer-encoding-with-content-length",
        _post(
            b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            b"0\r\n\r\n",
        ),
        400,
        True,
        "RFC 9112 6.1 p15 / 6.3 p3",
        maitre_only="waitress lets Transfer-Encoding override Content-Length",
    ),
    Row(
        "content-length-duplicated",
        _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        400,
        True,
        "RFC 9112 6.3 p5: invalid Content-Length -> 400 and close",
    ),
    Row(
        "content-length-conflicting",
        _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        400,
        True,
        "RFC 9112 6.3 p5",
    ),
    Row(
        "content-length-list",
        _post(b"Content-Length: 5, 5\r\n", b"hello"),
        400,
        True,
        "RFC 9112 6.3 p5",
    ),
    Row(
        "content-length-plus-sign",
        _post(b"Content-Length: +5\r\n", b"hello"),
        400,
        True,
        "RFC 9110 8.6: Content-Length = 1*DIGIT",
    ),
    Row(
        "content-length-minus-sign",
        _post(b"Content-Length: -5\r\n", b"hello"),
        400,
        True,
        "RFC 9110 8.6",
    ),
    Row(
        "content-length-inner-space",
        _post(b"Content-Length: 1 0\r\n", b"helloworld"),
        400,
        True,
        "RFC 9110 8.6",
    ),
    Row(
        "content-length-hex",
        _post(b"Content-Length: 0x5\r\n", b"hello"),
        400,
        True,
        "RFC 9110 8.6",
    ),
    Row(
        "content-length-empty",
        _post(b"Content-Length:\r\n"),
        400,
        True,
        "RFC 9110 8.6",
    ),
    Row(
        "content-length-u64-overflow",
        _post(b"Content-Length: 18446744073709551617\r\n", b"x"),
        400,
        True,
        "RFC 9112 6.3 p5; RFC 9110 8.6 (guard against overflow)",
        maitre_only="waitress parses any digit string and answers 413",
    ),
    # ---------------------------------------------------- Transfer-Encoding
    Row(
        "te-gzip-then-chunked",
        _te_chunked(b"0\r\n\r\n", te=b"gzip, chunked"),
        501,
        True,
        "RFC 9112 6.1 p12: unknown transfer coding -> 501",
    ),
    Row(
        "te-chunked-not-last",
        _te_chunked(b"0\r\n\r\n", te=b"chunked, gzip"),
        501,
        True,
        "RFC 9112 6.3 p4 (chunked not final: refuse, close) and 6.1 (501)",
    ),
    Row(
        "te-identity",
        _te_chunked(b"0\r\n\r\n", te=b"identity"),
        501,
        True,
        "RFC 9112 6.1 p12 (identity was removed)",
    ),
    Row(
        "te-unknown",
        _te_chunked(b"0\r\n\r\n", te=b"foo"),
        501,
        True,
        "RFC 9112 6.1 p12",
    ),
    Row(
        "te-chunked-twice",
        _te_chunked(b"0\r\n\r\n", te=b"chunked, chunked"),
        400,
        True,
        "RFC 9112 7: chunked MUST NOT be applied more than once",
        maitre_only="waitress accepts chunked listed twice",
    ),
    Row(
        "te-two-header-lines",
        _post(
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ),
        400,
        True,
        "RFC 9112 7 / 6.1: chunked applied twice",
        maitre_only="waitress joins the two lines and accepts them",
    ),
    Row(
        "te-vertical-tab",
        _te_chunked(b"0\r\n\r\n", te=b"\x0bchunked"),
        400,
        True,
        "RFC 9110 5.5: VT is not whitespace nor a field-vchar",
    ),
    Row(
        "te-on-http10",
        _post(
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
            version=b"1.0",
        ),
        400,
        True,
        "RFC 9112 6.1 p16: TE in HTTP/1.0 means faulty framing",
        maitre_only="waitress ignores Transfer-Encoding on HTTP/1.0",
    ),
    # --------------------------------------------------------- chunked body
    Row(
        "chunk-size-not-hex",
        _te_chunked(b"zz\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1: chunk-size = 1*HEXDIG",
    ),
    Row(
        "chunk-size-plus",
        _te_chunked(b"+5\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1",
    ),
    Row(
        "chunk-size-0x-prefix",
        _te_chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1",
    ),
    Row(
        "chunk-size-leading-space",
        _te_chunked(b" 5\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1",
    ),
    Row(
        "chunk-size-overflow",
        _te_chunked(b"1FFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1: guard against integer overflow of chunk-size",
        maitre_only="waitress takes it as a 2**64-byte chunk and waits for it",
    ),
    Row(
        "chunk-size-bare-lf",
        _te_chunked(b"5\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1: chunk-size [chunk-ext] CRLF",
    ),
    Row(
        "chunk-data-missing-crlf",
        _te_chunked(b"5\r\nhelloXX0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1: chunk-data CRLF",
    ),
    Row(
        "chunk-data-too-long",
        _te_chunked(b"3\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1: chunk-data is exactly chunk-size bytes",
    ),
    Row(
        "chunk-extension-space-in-name",
        _te_chunked(b"5;bad ext\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1.1: chunk-ext-name = token",
    ),
    Row(
        "chunk-extension-no-name",
        _te_chunked(b"5;=x\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1.1",
    ),
    Row(
        "chunk-extension-control-char",
        _te_chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
        "RFC 9112 7.1.1: chunk-ext-val = token / quoted-string",
    ),
    Row(
        "chunk-extension-unterminated-quote",
        _te_chunked(b'5;a="open\r\nhello\r\n0\r\n\r\n'),
        400,
        True,
        "RFC 9110 5.6.4: quoted-string",
    ),
    # ---------------------------------------------------------- field lines
    Row(
        "obs-fold",
        _get(HOST + b"X-Folded: a\r\n b\r\n"),
        400,
        True,
        "RFC 9112 5.2: obs-fold in a request -> 400 (or unfold)",
        maitre_only="waitress unfolds obs-fold lines",
    ),
    Row(
        "obs-fold-tab",
        _get(HOST + b"X-Folded: a\r\n\tb\r\n"),
        400,
        True,
        "RFC 9112 5.2",
        maitre_only="waitress unfolds obs-fold lines",
    ),
    Row(
        "whitespace-before-first-field",
        _get(b" Host: x\r\n"),
        400,
        True,
        "RFC 9112 2.2 p8: whitespace between start-line and first field",
    ),
    Row(
        "space-before-colon",
        _get(HOST + b"X-Bad : v\r\n"),
        400,
        True,
        "RFC 9112 5.1 p2: whitespace before the colon -> MUST 400",
    ),
    Row(
        "tab-before-colon",
        _get(HOST + b"X-Bad\t: v\r\n"),
        400,
        True,
        "RFC 9112 5.1 p2",
    ),
    Row(
        "field-name-not-token",
        _get(HOST + b"X(A): v\r\n"),
        400,
        True,
        "RFC 9110 5.1: field-name = token",
    ),
    Row(
        "field-name-empty",
        _get(HOST + b": v\r\n"),
        400,
        True,
        "RFC 9110 5.1",
    ),
    Row(
        "field-line-without-colon",
        _get(HOST + b"NoColon\r\n"),
        400,
        True,
        "RFC 9112 5: field-line = field-name ':' OWS field-value OWS",
    ),
    # ------------------------------------------------------ line terminators
    Row(
        "bare-cr-in-field-value",
        _get(HOST + b"X-A: a\rb\r\n"),
        400,
        True,
        "RFC 9112 2.2 p4: bare CR -> invalid or replace with SP",
    ),
    Row(
        "bare-cr-in-request-line",
        _get(HOST, b"GET /g\r HTTP/1.1"),
        400,
        True,
        "RFC 9112 2.2 p4",
    ),
    Row(
        "bare-lf-everywhere",
        b"GET /g HTTP/1.1\nHost: x\n\n",
        400,
        True,
        "RFC 9112 2.2: bare LF accepted by waitress < 1.4 (CVE-2019-16785)",
    ),
    Row(
        "bare-lf-in-field-line",
        b"GET /g HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
        400,
        True,
        "RFC 9112 2.2",
    ),
    Row(
        "bare-lf-final-empty-line",
        b"GET /g HTTP/1.1\r\nHost: x\r\n\n",
        400,
        True,
        "RFC 9112 2.2",
    ),
    Row(
        "nul-in-field-value",
        _get(HOST + b"X-A: a\x00b\r\n"),
        400,
        True,
        "RFC 9110 5.5 p5: NUL MUST be rejected or replaced",
    ),
    Row(
        "nul-in-target",
        _get(HOST, b"GET /a\x00b HTTP/1.1"),
        400,
        True,
        "RFC 9112 3.2: request-target has no control characters",
        maitre_only="waitress passes a NUL in the target through",
    ),
    Row(
        "del-in-field-value",
        _get(HOST + b"X-A: a\x7fb\r\n"),
        400,
        True,
        "RFC 9110 5.5: DEL is not a field-vchar",
    ),
    Row(
        "escape-in-field-value",
        _get(HOST + b"X-A: \x1b[31mred\r\n"),
        400,
        True,
        "RFC 9110 5.5: controls are not field-vchars",
    ),
    # ---------------------------------------------------------- request line
    Row(
        "method-not-token",
        _get(HOST, b"G@T /g HTTP/1.1"),
        400,
        True,
        "RFC 9112 3.1: method = token",
    ),
    Row(
        "method-control-char",
        _get(HOST, b"G\x01T /g HTTP/1.1"),
        400,
        True,
        "RFC 9112 3.1",
    ),
    Row(
        "method-lowercase",
        _get(HOST, b"get /g HTTP/1.1"),
        400,
        True,
        "RFC 9110 9.1: methods are case-sensitive; as waitress, refuse lowercase",
    ),
    Row(
        "request-line-leading-space",
        _get(HOST, b" GET /g HTTP/1.1"),
        400,
        True,
        "RFC 9112 3: request-line = method SP request-target SP HTTP-version",
        maitre_only="waitress strips whitespace before the request line",
    ),
    Row(
        "request-line-double-space",
        _get(HOST, b"GET  /g HTTP/1.1"),
        400,
        True,
        "RFC 9112 3",
    ),
    Row(
        "request-line-trailing-space",
        _get(HOST, b"GET /g HTTP/1.1 "),
        400,
        True,
        "RFC 9112 3",
        maitre_only="waitress strips trailing whitespace from the request line",
    ),
    Row(
        "version-http2",
        _get(HOST, b"GET /g HTTP/2.0"),
        400,
        True,
        "RFC 9112 2.3 (only HTTP/1.x is spoken here)",
        maitre_only="waitress answers any HTTP/d.d version",
    ),
    Row(
        "version-1-2",
        _get(HOST, b"GET /g HTTP/1.2"),
        200,
        False,
        "RFC 9110 2.5: a higher minor version is served as the highest one known",
        b"GET /g|",
        maitre_only="waitress serves it as HTTP/1.0 and closes",
    ),
    Row(
        "version-two-digit-minor",
        _get(HOST, b"GET /g HTTP/1.10"),
        400,
        True,
        "RFC 9112 2.3: HTTP-version = HTTP-name '/' DIGIT '.' DIGIT",
    ),
    Row(
        "version-lowercase",
        _get(HOST, b"GET /g http/1.1"),
        400,
        True,
        "RFC 9112 2.3: HTTP-name is case-sensitive",
    ),
    Row(
        "version-missing",
        _get(HOST, b"GET /g"),
        400,
        True,
        "RFC 9112 3 (no HTTP/0.9)",
        maitre_only="waitress serves a request line without a version",
    ),
    Row(
        "target-not-a-path",
        _get(HOST, b"GET g HTTP/1.1"),
        400,
        True,
        "RFC 9112 3.2: origin-form starts with /",
        maitre_only="waitress passes a relative target through",
    ),
    # ----------------------------------------------------------------- size
    Row(
        "request-line-too-long",
        _get(HOST, b"GET /" + BIG + b" HTTP/1.1"),
        431,
        True,
        "RFC 9112 3 p6 (414 allowed; as waitress, the head limit: 431)",
    ),
    Row(
        "header-block-too-large",
        _get(HOST + b"X-Big: " + BIG + b"\r\n"),
        431,
        True,
        "RFC 6585 5: 431 Request Header Fields Too Large",
    ),
    Row(
        "many-small-fields-too-large",
        _get(HOST + b"X-A: b\r\n" * 1000),
        431,
        True,
        "RFC 6585 5",
    ),
    # ----------------------------------------------------------------- Host
    Row(
        "two-host-fields",
        _get(b"Host: a\r\nHost: b\r\n"),
        400,
        True,
        "RFC 9112 3.2 p6: more than one Host field line -> MUST 400",
        maitre_only="waitress joins two Host headers",
    ),
    Row(
        "two-host-fields-same-value",
        _get(b"Host: a\r\nhost: a\r\n"),
        400,
        True,
        "RFC 9112 3.2 p6",
        maitre_only="waitress joins two Host headers",
    ),
    Row(
        "http11-without-host",
        _get(),
        400,
        True,
        "RFC 9112 3.2 p6: HTTP/1.1 without Host -> MUST 400",
        maitre_only="waitress accepts HTTP/1.1 requests without Host",
    ),
    Row(
        "host-invalid-value",
        _get(b"Host: a b\r\n"),
        400,
        True,
        "RFC 9112 3.2 p6: invalid Host value -> MUST 400",
        maitre_only="waitress does not validate Host",
    ),
    Row(
        "content-type-duplicated",
        _post(
            b"Content-Type: text/plain\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n",
            b"{}",
        ),
        400,
        True,
        "RFC 9110 8.3 and 5.3: Content-Type is a singleton field",
        maitre_only="waitress joins the values into 'text/plain, application/json'",
    ),
    # ------------- sent alone: waitress's exact error page, then the server serves on
    Row(
        "request-line-no-spaces",
        b"GARBAGE\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "request-line-method-only",
        b"GET\r\nHost: x\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "bad-version",
        b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "double-space",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "lowercase-method",
        b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "method-not-token",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "space-before-colon",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad : v\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "no-colon",
        b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "header-name-not-token",
        b"GET / HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "nul-in-value",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "bare-cr-in-value",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "leading-whitespace-line",
        b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "cl-abc",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "cl-plus",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "cl-negative",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "cl-hex",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "cl-duplicated",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n"
        b"\r\nhello",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "cl-list",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "te-gzip",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "te-gzip-chunked",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"0\r\n\r\n",
        501,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "te-identity",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
        501,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "chunk-size-not-hex",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "chunk-size-negative",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"-5\r\nhello\r\n0\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "chunk-size-trailing-space",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5 \r\nhello\r\n0\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "chunk-not-terminated",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhelloXX0\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    Row(
        "chunk-bad-extension",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;bad ext\r\nhello\r\n0\r\n\r\n",
        400,
        True,
        check=ERROR_PAGE,
    ),
    # ---------------- sent alone, stricter than waitress: the exact error page, close
    Row(
        "cl-and-te",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        True,
        maitre_only="waitress lets Transfer-Encoding win over Content-Length",
        check=STRICTER,
    ),
    Row(
        "te-on-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        True,
        maitre_only="waitress ignores Transfer-Encoding on HTTP/1.0",
        check=STRICTER,
    ),
    Row(
        "http11-no-host",
        b"GET / HTTP/1.1\r\n\r\n",
        400,
        True,
        maitre_only="waitress accepts HTTP/1.1 requests without Host",
        check=STRICTER,
    ),
    Row(
        "two-hosts",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        True,
        maitre_only="waitress joins two Host headers into 'a, b'",
        check=STRICTER,
    ),
    Row(
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        400,
        True,
        maitre_only="waitress unfolds obs-fold header lines",
        check=STRICTER,
    ),
    # ------------- smuggling defences: a request pipelined behind, the exact error page
    Row(
        "space-before-colon",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
        True,
        "RFC 9112 5.1: `Transfer-Encoding : chunked` might be another field to a proxy",
        check=PIPELINED_ERROR_PAGE,
    ),
    Row(
        "transfer-encoding-duplicated",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        True,
        "RFC 9112 7: two Transfer-Encoding: chunked lines",
        maitre_only="waitress joins Transfer-Encoding lines and accepts chunked twice",
        check=PIPELINED_ERROR_PAGE,
    ),
    Row(
        "content-length-then-transfer-encoding",
        b"POST /p HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 42\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n0\r\n\r\n" + SMUGGLED,
        400,
        True,
        "RFC 9112 6.1 p15: CL.TE smuggling, stricter than waitress",
        maitre_only="waitress lets Transfer-Encoding override Content-Length",
        check=PIPELINED_ERROR_PAGE,
    ),
    Row(
        "transfer-encoding-then-content-length",
        b"POST /p HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 42\r\n"
        b"\r\n0\r\n\r\n" + SMUGGLED,
        400,
        True,
        "RFC 9112 6.1 p15: TE.CL smuggling, stricter than waitress",
        maitre_only="waitress lets Transfer-Encoding override Content-Length",
        check=PIPELINED_ERROR_PAGE,
    ),
    Row(
        "content-type-duplicated",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        400,
        True,
        "RFC 9110 8.3: Content-Type is a singleton field",
        maitre_only="waitress joins duplicated Content-Type values with ', '",
        check=PIPELINED_ERROR_PAGE,
    ),
    # --------------- a head already invalid, its end never sent: refused at once
    Row(
        "tls-client-hello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        400,
        True,
        "the start of a TLS ClientHello sent to a plain-HTTP port",
        maitre_only="waitress waits for the end of a head before looking at it",
        check=AT_ONCE,
    ),
    Row(
        "nul-in-field",
        b"GET / HTTP/1.1\r\nX: \x00",
        400,
        True,
        "RFC 9110 5.5: NUL",
        maitre_only="waitress waits for the end of a head before looking at it",
        check=AT_ONCE,
    ),
    Row(
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded",
        400,
        True,
        "RFC 9112 5.2: obs-fold",
        maitre_only="waitress waits for the end of a head before looking at it",
        check=AT_ONCE,
    ),
]


def _params(check: str):
    for row in ROWS:
        if row.check != check:
            continue
        marks = [maitre_only(row.maitre_only)] if row.maitre_only else []
        yield pytest.param(row, id=row.id, marks=marks)


def test_rows_are_well_formed():
    """Every PIPELINED row cites its rule, has a known status and a unique id."""
    rows = [row for row in ROWS if row.check == PIPELINED]
    ids = [row.id for row in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        assert row.rule.startswith("RFC "), row.id
        assert row.status in REASONS, row.id
        assert (row.status == 200) == (row.echo is not None), row.id
        if row.status != 200:
            assert row.closes, f"{row.id}: a refused request must close"


@pytest.mark.parametrize("row", list(_params(PIPELINED)))
def test_framing(serve_app, row: Row):
    """The row's request, with a valid request pipelined behind it."""
    calls = []

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        calls.append(environ["PATH_INFO"])
        out = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}|".encode() + body
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    srv = serve_app(app, **SETTINGS)
    with srv.connect() as conn:
        conn.send(row.raw + SENTINEL)
        resp = conn.read_response()
        assert (resp.status, resp.reason) == (row.status, REASONS[row.status]), (
            f"{row.id} ({row.rule}): {resp.status} {resp.body[:200]!r}"
        )
        if row.status == 200:
            assert resp.body == row.echo, row.id
        if row.closes:
            assert resp.header("Connection") == "close", row.id
            # is_closed() fails on any further byte: the sentinel is never answered
            assert conn.is_closed(), f"{row.id}: connection left open"
        else:
            follow = conn.read_response()
            assert (follow.status, follow.body) == (200, b"GET /sentinel|"), row.id
            assert conn.is_open()
    if row.status == 200:
        assert calls[0] == row.echo.split(b" ")[1].split(b"|")[0].decode(), calls
    else:
        assert calls == [], f"{row.id}: the app ran for {calls}"
    if row.closes:
        assert "/sentinel" not in calls, f"{row.id}: the pipelined request ran"
    # the server keeps serving others
    with srv.connect() as other:
        assert other.request(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").status == 200


@pytest.mark.parametrize("row", list(_params(ERROR_PAGE)))
def test_malformed_request_rejected(serve_app, row: Row):
    """Each malformed request gets its error status with waitress's error body
    format and Connection: close, the socket is closed, the app never runs,
    and the server keeps serving."""
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return hello_app(environ, start_response)

    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(row.raw)
        resp = conn.read_response()
        assert_error_response(resp, row.status, REASONS[row.status])
        assert conn.is_closed()
    assert calls == []
    assert srv.request(get("/ok")).status == 200


@pytest.mark.parametrize("row", list(_params(STRICTER)))
def test_stricter_than_waitress_rejected(serve_app, row: Row):
    """Requests that could desynchronise a proxy are refused with 400 + close."""
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return hello_app(environ, start_response)

    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(row.raw)
        resp = conn.read_response()
        assert_error_response(resp, 400, "Bad Request")
        assert conn.is_closed()
    assert calls == []


@pytest.mark.parametrize("row", list(_params(PIPELINED_ERROR_PAGE)))
def test_smuggling_refused(serve_app, row: Row):
    """Requests a proxy in front might frame differently: with a request pipelined
    behind, the exact error page, the connection closed and the app never run."""
    app = Recorder()
    assert_refused(serve_app(app), app, row.raw, row.status)


@pytest.mark.parametrize("row", list(_params(AT_ONCE)))
def test_garbage_head_refused_before_it_ends(serve_app, row: Row):
    """A head that is already invalid is refused at once, without waiting for an end
    that may never come (or for channel_timeout)."""
    app = Recorder()
    srv = serve_app(app, channel_timeout=30)
    with srv.connect() as conn:
        conn.send(row.raw)
        started = time.monotonic()
        resp = conn.read_response()
        assert resp.status == 400, (resp.status, resp.body)
        assert time.monotonic() - started < 5
        assert conn.is_closed()
    assert app.calls == []


# ------------------------------------- refusals after a setting or another request


def test_header_block_too_large_431(serve_app):
    """A header block over max_request_header_size: 431 and close."""
    srv = serve_app(hello_app, max_request_header_size=1024)
    with srv.connect() as conn:
        conn.send(get("/", headers=b"X-Big: " + b"a" * 2000 + b"\r\n"))
        resp = conn.read_response()
        assert_error_response(resp, 431, "Request Header Fields Too Large")
        assert conn.is_closed()
    # a header block well under the limit is fine
    assert srv.request(
        get("/", headers=b"X-Small: " + b"a" * 100 + b"\r\n")
    ).status == (200)


def test_content_length_too_large_413(serve_app):
    """Content-Length over max_request_body_size: 413 without reading the body."""
    srv = serve_app(hello_app, max_request_body_size=1000)
    with srv.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        resp = conn.read_response()
        assert_error_response(resp, 413, "Request Entity Too Large")
        assert conn.is_closed()
    resp = srv.request(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + b"a" * 10
    )
    assert resp.status == 200


def test_chunked_body_too_large_413(serve_app):
    """A chunked body growing over max_request_body_size: 413."""
    srv = serve_app(hello_app, max_request_body_size=1000)
    with srv.connect() as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(b"a" * 600, b"b" * 600)
        )
        resp = conn.read_response()
        assert_error_response(resp, 413, "Request Entity Too Large")


def test_error_after_pipelined_good_request(serve_app):
    """A good request pipelined before a bad one is answered first; then the
    error response and the close."""
    srv = serve_app(hello_app)
    with srv.connect() as conn:
        conn.send(get("/") + b"get / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response().status == 200
        assert conn.read_response().status == 400
        assert conn.is_closed()
