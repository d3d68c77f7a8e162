"""``utilities`` of the server under test: HTTP dates, quoted strings, the loggers and
the error classes, whose ``to_response()`` is byte for byte what the server sends."""

from __future__ import annotations

import calendar
import importlib
import logging
import socket
import time

import pytest
from apps import hello_app
from helpers import IDENT, TARGET, assert_error_response, chunked, maitre_only

utilities = importlib.import_module(f"{TARGET}.utilities")

# Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example
EXAMPLE = 784111777


# -- dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when, text",
    [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (EXAMPLE, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (EXAMPLE + 0.9, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (4102444799, "Thu, 31 Dec 2099 23:59:59 GMT"),
    ],
)
def test_build_http_date(when, text):
    assert utilities.build_http_date(when) == text


def test_build_then_parse_round_trips():
    now = int(time.time())
    for when in (0, EXAMPLE, now, now + 86400 * 365 * 20):
        assert utilities.parse_http_date(utilities.build_http_date(when)) == when


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "sun, 06 nov 1994 08:49:37 gmt",  # case-insensitive
        "SUN, 06 NOV 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # one-digit day, as waitress tolerates
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sunday, 06-Nov-1994 08:49:37 GMT",
    ],
)
def test_parse_http_date_formats(text):
    assert utilities.parse_http_date(text) == EXAMPLE


@maitre_only("waitress does not parse the asctime() format RFC 9110 requires")
@pytest.mark.parametrize(
    "text, when",
    [
        ("Sun Nov  6 08:49:37 1994", EXAMPLE),
        ("sun nov  6 08:49:37 1994", EXAMPLE),
        ("Tue Feb 29 00:00:00 2000", 951782400),
    ],
)
def test_parse_http_date_asctime(text, when):
    assert utilities.parse_http_date(text) == when


@maitre_only("waitress reads a two-digit RFC 850 year as 19xx")
def test_parse_http_date_rfc850_two_digit_year_follows_rfc9110():
    """A two-digit year more than 50 years in the future is in the past."""
    this_year = time.gmtime().tm_year
    soon = (this_year + 10) % 100
    text = f"Monday, 01-Jan-{soon:02d} 00:00:00 GMT"
    assert time.gmtime(utilities.parse_http_date(text)).tm_year == this_year + 10
    far = (this_year + 60) % 100
    text = f"Monday, 01-Jan-{far:02d} 00:00:00 GMT"
    assert time.gmtime(utilities.parse_http_date(text)).tm_year == this_year + 60 - 100


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
    ],
)
def test_parse_http_date_garbage_is_zero(text):
    assert utilities.parse_http_date(text) == 0


@maitre_only("waitress normalises impossible dates instead of refusing them")
@pytest.mark.parametrize(
    "text", ["Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT"]
)
def test_parse_http_date_impossible_dates_are_zero(text):
    assert utilities.parse_http_date(text) == 0


def test_parse_http_date_matches_calendar():
    when = calendar.timegm((2024, 2, 29, 12, 0, 1, 0, 0, 0))
    assert utilities.parse_http_date("Thu, 29 Feb 2024 12:00:01 GMT") == when


# -- undquote and find_double_newline -------------------------------------------------


@pytest.mark.parametrize(
    "value, result",
    [
        ("", ""),
        ("token", "token"),
        ('""', ""),
        ('"quoted"', "quoted"),
        ('"with space"', "with space"),
        ('"esc\\"aped"', 'esc"aped'),
        ('"back\\\\slash"', "back\\slash"),
        ('"\\a\\b"', "ab"),
        ('"caf\xe9"', "caf\xe9"),
        ('"[2001:db8::1]:4711"', "[2001:db8::1]:4711"),
    ],
)
def test_undquote(value, result):
    assert utilities.undquote(value) == result


@pytest.mark.parametrize(
    "value", ['"', '"open', 'close"', '"in"side"', '"trailing\\"', '"ctl\x01"']
)
def test_undquote_broken_quoting(value):
    with pytest.raises(ValueError):
        utilities.undquote(value)


@pytest.mark.parametrize(
    "data, pos",
    [
        (b"", -1),
        (b"GET / HTTP/1.1\r\n", -1),
        (b"GET / HTTP/1.1\r\n\r\n", 18),
        (b"a\r\n\r\nb\r\n\r\n", 5),
        (b"\n\n", -1),
        (b"\r\n\r\n", 4),
    ],
)
def test_find_double_newline(data, pos):
    assert utilities.find_double_newline(data) == pos


def test_loggers():
    assert utilities.logger is logging.getLogger(TARGET)
    assert utilities.queue_logger is logging.getLogger(f"{TARGET}.queue")


def test_cleanup_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    utilities.cleanup_unix_socket(path)  # nothing there: fine
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
    utilities.cleanup_unix_socket(path)
    assert not (tmp_path / "s.sock").exists()
    regular = tmp_path / "file"
    regular.write_text("keep")
    utilities.cleanup_unix_socket(str(regular))
    assert regular.read_text() == "keep"


# -- errors ---------------------------------------------------------------------------

ERRORS = [
    ("Error", 500, "Internal Server Error"),
    ("BadRequest", 400, "Bad Request"),
    ("RequestHeaderFieldsTooLarge", 431, "Request Header Fields Too Large"),
    ("RequestEntityTooLarge", 413, "Request Entity Too Large"),
    ("InternalServerError", 500, "Internal Server Error"),
    ("ServerNotImplemented", 501, "Not Implemented"),
]


@pytest.mark.parametrize("name, code, reason", ERRORS)
def test_error_classes(name, code, reason):
    cls = getattr(utilities, name)
    err = cls("the message")
    assert (err.code, err.reason, err.body) == (code, reason, "the message")
    status, headers, body = err.to_response()
    assert status == f"{code} {reason}"
    assert headers == [("Content-Type", "text/plain; charset=utf-8")]
    assert body == f"{reason}\r\n\r\nthe message\r\n\r\n(generated by server)".encode()
    _, _, body = err.to_response(ident="my-ident")
    assert body.endswith(b"\r\n\r\n(generated by my-ident)")
    assert issubclass(cls, utilities.Error)


def test_error_hierarchy():
    assert issubclass(utilities.RequestHeaderFieldsTooLarge, utilities.BadRequest)
    assert issubclass(utilities.RequestEntityTooLarge, utilities.BadRequest)


def test_error_body_is_utf8():
    _, _, body = utilities.BadRequest("caf\xe9 \u2603").to_response()
    assert (
        body
        == "Bad Request\r\n\r\ncaf\xe9 \u2603\r\n\r\n(generated by server)".encode()
    )


def test_wsgi_response_is_a_lazy_wsgi_response():
    calls = []
    result = utilities.BadRequest("nope").wsgi_response(
        {}, lambda status, headers: calls.append((status, headers))
    )
    assert calls == []  # start_response runs when the body is first iterated
    body = b"".join(result)
    assert calls == [
        ("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8")])
    ]
    assert body == b"Bad Request\r\n\r\nnope\r\n\r\n(generated by server)"


# The server's own error responses are the to_response() of these classes.
WIRE_ERRORS = [
    (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "BadRequest",
        "Content-Length is invalid",
        {},
    ),
    (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
        "RequestHeaderFieldsTooLarge",
        "exceeds max_header of 1000",
        {"max_request_header_size": 1000},
    ),
    (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        "RequestEntityTooLarge",
        "exceeds max_body of 1000",
        {"max_request_body_size": 1000},
    ),
    (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + chunked(b"x"),
        "ServerNotImplemented",
        "Transfer-Encoding requested is not supported.",
        {},
    ),
]


@pytest.mark.parametrize(
    "request_bytes, name, message, settings",
    WIRE_ERRORS,
    ids=[w[1] for w in WIRE_ERRORS],
)
def test_to_response_is_what_the_server_sends(
    serve_app, request_bytes, name, message, settings
):
    srv = serve_app(hello_app, **settings)
    resp = srv.request(request_bytes)
    status, headers, body = getattr(utilities, name)(message).to_response(IDENT)
    assert f"{resp.status} {resp.reason}" == status
    assert_error_response(resp, resp.status, resp.reason)
    for header, value in headers:
        assert resp.header(header) == value
    assert resp.body == body
