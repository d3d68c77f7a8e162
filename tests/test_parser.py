"""``parser`` of the server under test: ``HTTPRequestParser`` driven byte by byte,
``split_uri`` and ``crack_first_line``.

maitre's parser module is a thin binding over the parser its engine runs, so besides
waitress's interface these tests check that what the parser says about a request is
what the server answers on the wire. Where maitre is deliberately stricter than
waitress, the test is marked ``maitre_only``.
"""

from __future__ import annotations

import importlib

import pytest
from apps import echo_app
from helpers import IDENT, TARGET, chunked, maitre_only

parser_module = importlib.import_module(f"{TARGET}.parser")
Adjustments = importlib.import_module(f"{TARGET}.adjustments").Adjustments
utilities = importlib.import_module(f"{TARGET}.utilities")
HTTPRequestParser = parser_module.HTTPRequestParser


def feed(data: bytes, step: int | None = None, **settings):
    """Feed ``data`` to a new parser (``step`` bytes per call, all at once if None)
    until it is complete; returns (parser, bytes not used)."""
    parser = HTTPRequestParser(Adjustments(**settings))
    pos = 0
    while pos < len(data) and not parser.completed:
        end = len(data) if step is None else min(len(data), pos + step)
        used = parser.received(data[pos:end])
        if used == 0 and step is not None and end < len(data):
            # nothing taken: hand over a bigger piece, as a connection would
            used = parser.received(data[pos:])
        pos += used
    return parser, data[pos:]


STEPS = [None, 1, 7]


@pytest.mark.parametrize("step", STEPS)
def test_simple_get(step):
    parser, rest = feed(
        b"GET /foo%20bar/caf%C3%A9?a=1&b=%20#frag HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Accept: */*\r\n"
        b"\r\n",
        step,
    )
    assert rest == b""
    assert parser.completed
    assert parser.error is None
    assert parser.command == "GET"
    assert parser.path == "/foo bar/caf\xc3\xa9"
    assert parser.query == "a=1&b=%20"
    assert parser.fragment == "frag"
    assert parser.request_uri == "/foo%20bar/caf%C3%A9?a=1&b=%20#frag"
    assert parser.version == "1.1"
    assert parser.url_scheme == "http"
    assert parser.headers == {"HOST": "example.com", "ACCEPT": "*/*"}
    assert parser.content_length == 0
    assert not parser.chunked
    assert not parser.expect_continue
    assert not parser.connection_close
    assert not parser.empty
    assert parser.get_body_stream().read() == b""


def test_url_scheme_comes_from_the_settings():
    parser, _ = feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", url_scheme="https")
    assert parser.url_scheme == "https"


def test_headers_are_keyed_joined_and_filtered():
    parser, _ = feed(
        b"GET / HTTP/1.1\r\n"
        b"Host: x\r\n"
        b"X-Dup: first\r\n"
        b"x-dup: second\r\n"
        b"X_Smuggled: no\r\n"
        b"X-Spaces: \t padded \t\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
    )
    assert parser.headers == {
        "HOST": "x",
        "X_DUP": "first, second",
        "X_SPACES": "padded",
        "X_LATIN": "caf\xe9",
        "CONTENT_TYPE": "text/plain",
    }


@pytest.mark.parametrize("step", STEPS)
def test_content_length_body_and_what_follows(step):
    data = (
        b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
        b"hello worldGET /next HTTP/1.1\r\n"
    )
    parser, rest = feed(data, step)
    assert parser.completed and parser.error is None
    assert rest == b"GET /next HTTP/1.1\r\n"
    assert parser.content_length == 11
    assert parser.headers["CONTENT_LENGTH"] == "11"
    assert parser.get_body_stream().read() == b"hello world"
    parser.close()


def test_the_call_completing_the_head_uses_only_the_head():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
    parser = HTTPRequestParser(Adjustments())
    assert parser.received(head + b"abcXYZ") == len(head)
    assert parser.headers_finished and not parser.completed
    assert parser.received(b"abcXYZ") == 3
    assert parser.completed
    assert parser.received(b"XYZ") == 0


@pytest.mark.parametrize("step", STEPS)
def test_chunked_body_is_decoded(step):
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"hello ", b"chunked ", b"world")
        + b"NEXT"
    )
    parser, rest = feed(data, step)
    assert parser.completed and parser.error is None
    assert rest == b"NEXT"
    assert parser.chunked
    assert "TRANSFER_ENCODING" not in parser.headers
    assert parser.headers["CONTENT_LENGTH"] == str(len(b"hello chunked world"))
    assert parser.get_body_stream().read() == b"hello chunked world"


def test_chunked_body_with_extensions_and_trailers():
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    parser, rest = feed(data, 1)
    assert parser.error is None and rest == b""
    assert parser.get_body_stream().read() == b"hello"


def test_body_spilled_to_a_file_reads_the_same():
    body = bytes(range(256)) * 40
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    parser, _ = feed(data + body, 1000, inbuf_overflow=1000)
    stream = parser.get_body_stream()
    assert stream.read(10) == body[:10]
    assert stream.read() == body[10:]
    parser.close()


def test_body_stream_lines():
    body = b"one\ntwo\nthree"
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    parser, _ = feed(data + body)
    assert parser.get_body_stream().readlines() == [b"one\n", b"two\n", b"three"]


@pytest.mark.parametrize(
    "head, close",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
    ],
)
def test_connection_close(head, close):
    parser, _ = feed(head)
    assert parser.connection_close is close


def test_expect_continue():
    parser, _ = feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n"
        b"\r\n"
    )
    assert parser.headers_finished and not parser.completed
    assert parser.expect_continue
    parser, _ = feed(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
    assert not parser.expect_continue


# -- errors ---------------------------------------------------------------------------


def assert_error(parser, cls_name, message=None):
    assert parser.completed
    assert parser.error is not None, "expected an error"
    assert type(parser.error).__name__ == cls_name, parser.error.body
    if message is not None:
        assert parser.error.body == message


@pytest.mark.parametrize("step", STEPS)
def test_header_too_large(step):
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
    parser, _ = feed(data, step, max_request_header_size=1000)
    assert_error(parser, "RequestHeaderFieldsTooLarge", "exceeds max_header of 1000")
    assert parser.error.code == 431


def test_body_too_large_by_content_length():
    parser, _ = feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        max_request_body_size=1000,
    )
    assert_error(parser, "RequestEntityTooLarge", "exceeds max_body of 1000")
    assert parser.error.code == 413


@pytest.mark.parametrize("step", [None, 100])
def test_body_too_large_chunked(step):
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"x" * 600, b"y" * 600)
    )
    parser, _ = feed(data, step, max_request_body_size=1000)
    assert_error(parser, "RequestEntityTooLarge", "exceeds max_body of 1000")


@pytest.mark.parametrize(
    "data, cls_name, message",
    [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "ServerNotImplemented",
            "Transfer-Encoding requested is not supported.",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            "BadRequest",
            "Content-Length is invalid",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "BadRequest",
            "Content-Length is invalid",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\n",
            "BadRequest",
            "Content-Length is invalid",
        ),
        (
            b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
            "BadRequest",
            'Malformed HTTP method "get"',
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nhello\r\n0\r\n\r\n",
            "BadRequest",
            None,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", "BadRequest", None),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", "BadRequest", None),
    ],
)
def test_malformed_requests(data, cls_name, message):
    for step in STEPS:
        parser, _ = feed(data, step)
        assert_error(parser, cls_name, message)


# -- where maitre is stricter (it reports what its server does) -----------------------


@maitre_only("stricter parsing: these requests get a 400 from maitre")
@pytest.mark.parametrize(
    "data, message",
    [
        (b"GET / HTTP/1.1\r\n\r\n", "Missing Host header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Multiple Host headers"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "Content-Length with Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding is not allowed in HTTP/1.0",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            "Obsolete line folding is not allowed",
        ),
        (b"GET / HTTP/1.1\nHost: x\n\n", "Bare CR or LF found in HTTP message"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 'Unsupported HTTP version "HTTP/2.0"'),
    ],
)
def test_maitre_is_stricter(data, message):
    for step in STEPS:
        parser, _ = feed(data, step)
        assert_error(parser, "BadRequest", message)


@maitre_only("blank lines before a request are skipped, never an empty request")
def test_blank_lines_before_a_request_are_skipped():
    parser = HTTPRequestParser(Adjustments())
    assert parser.received(b"\r\n\r\n") == 4
    assert not parser.completed and not parser.empty
    parser.received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parser.completed and parser.error is None
    assert parser.path == "/x"
    assert not parser.empty


# -- split_uri and crack_first_line ---------------------------------------------------


@pytest.mark.parametrize(
    "uri, parts",
    [
        (b"/", ("", "", "/", "", "")),
        (b"/a%20b/c?x=1&y=%20#frag", ("", "", "/a b/c", "x=1&y=%20", "frag")),
        (b"/caf%C3%A9", ("", "", "/caf\xc3\xa9", "", "")),
        (b"/%zz%2", ("", "", "/%zz%2", "", "")),
        (b"//double//slash?q", ("", "", "//double//slash", "q", "")),
        (
            b"http://example.com:8080/p/q?x#f",
            ("http", "example.com:8080", "/p/q", "x", "f"),
        ),
        (b"https://example.com", ("https", "example.com", "", "", "")),
        (b"*", ("", "", "*", "", "")),
    ],
)
def test_split_uri(uri, parts):
    assert parser_module.split_uri(uri) == parts


@pytest.mark.parametrize(
    "line, parts",
    [
        (b"GET / HTTP/1.1", (b"GET", b"/", b"1.1")),
        (b"POST /a?b=c HTTP/1.0", (b"POST", b"/a?b=c", b"1.0")),
        (b"OPTIONS * HTTP/1.1", (b"OPTIONS", b"*", b"1.1")),
        (b"GET http://h/p HTTP/1.1", (b"GET", b"http://h/p", b"1.1")),
        (b"", (b"", b"", b"")),
        (b"garbage", (b"", b"", b"")),
        (b"GET  / HTTP/1.1", (b"", b"", b"")),
    ],
)
def test_crack_first_line(line, parts):
    assert parser_module.crack_first_line(line) == parts


def test_crack_first_line_lower_case_method():
    with pytest.raises(parser_module.ParsingError) as info:
        parser_module.crack_first_line(b"get / HTTP/1.1")
    assert "Malformed HTTP method" in str(info.value)


@pytest.mark.parametrize(
    "line, parts",
    [
        (b"GET /", (b"GET", b"/", b"")),
        (b"GET / HTTP/2.0", (b"GET", b"/", b"2.0")),
        (b"GET / HTTP/1.2", (b"GET", b"/", b"1.2")),
        (b"GET / FOO/1.1", (b"", b"", b"")),
        (b"GET / bleh", (b"", b"", b"")),
        (b"GET /foobar HTTP/.1.", (b"", b"", b"")),
        (b"GE\x00 /foobar HTTP/8.4", (b"", b"", b"")),
    ],
)
def test_crack_first_line_is_syntax_only(line, parts):
    """crack_first_line splits as waitress's does, whether or not the server
    serves the version (it answers 400 to all but HTTP/1.x)."""
    assert parser_module.crack_first_line(line) == parts


def test_module_names():
    assert issubclass(parser_module.ParsingError, Exception)
    assert issubclass(parser_module.TransferEncodingNotImplemented, Exception)


# -- the parser says what the server does ---------------------------------------------

SAME_AS_SERVER = [
    b"GET /x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abc", b"defg"),
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"x" * 800, b"y" * 800),
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    # where maitre is stricter, its parser is as strict as its server (and waitress's
    # parser as lenient as waitress)
    b"GET / HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"abc"),
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abc"),
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
]


def check_against_server(serve_app, data):
    parser, _ = feed(data, 1, max_request_header_size=2000, max_request_body_size=1000)
    srv = serve_app(echo_app, max_request_header_size=2000, max_request_body_size=1000)
    resp = srv.request(data, method="POST")
    if parser.error is None:
        assert resp.status == 200, resp.body
        expected = f"{parser.command} {parser.path}|".encode()
        assert resp.body == expected + parser.get_body_stream().read()
    else:
        status, _, body = parser.error.to_response(IDENT)
        assert f"{resp.status} {resp.reason}" == status
        assert resp.body == body


@pytest.mark.parametrize("data", SAME_AS_SERVER)
def test_parser_outcome_is_the_servers(serve_app, data):
    check_against_server(serve_app, data)
