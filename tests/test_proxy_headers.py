"""Behind a reverse proxy: trusted_proxy, trusted_proxy_count, trusted_proxy_headers,
clear_untrusted_proxy_headers and log_untrusted_proxy_headers.

The first part drives ``proxy_headers_middleware`` / ``parse_proxy_headers`` of the
server under test directly with an environ; the second serves apps on 127.0.0.1 with
``trusted_proxy="127.0.0.1"`` (or a proxy that is not us) and sends the headers a proxy
would. Both parts run unchanged against waitress.
"""

from __future__ import annotations

import importlib
import logging

import pytest
from apps import EnvironRecorder
from helpers import IDENT, TARGET, get, maitre_only

proxy_headers = importlib.import_module(f"{TARGET}.proxy_headers")

PROXY = "192.168.1.1"
ALL_X_FORWARDED = {
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
}


def make_environ(peer=PROXY, headers=None, **extra):
    """An environ as the server builds it for a request from ``peer`` on port 8080."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": peer,
        "REMOTE_HOST": peer,
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "localhost:8080",
        "wsgi.url_scheme": "http",
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ.update(extra)
    return environ


class Result:
    def __init__(self):
        self.status = None
        self.headers = None
        self.body = b""
        self.environ = None  # what the application saw (None: not called)


def run(environ, **settings):
    """Call the middleware with ``settings`` on ``environ``; return a Result."""
    result = Result()

    def app(env, start_response):
        result.environ = dict(env)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def start_response(status, headers, exc_info=None):
        result.status = status
        result.headers = headers

    wrapped = proxy_headers.proxy_headers_middleware(app, **settings)
    result.body = b"".join(wrapped(environ, start_response))
    return result


def trusted(headers, peer=PROXY, count=1, trust=ALL_X_FORWARDED, **settings):
    """A request from the trusted proxy; returns the environ the app saw."""
    settings.setdefault("trusted_proxy", PROXY)
    result = run(
        make_environ(peer, headers),
        trusted_proxy_count=count,
        trusted_proxy_headers=trust,
        **settings,
    )
    assert result.status == "200 OK", result.body
    return result.environ


def malformed(headers, trust=ALL_X_FORWARDED, count=1):
    result = run(
        make_environ(PROXY, headers),
        trusted_proxy=PROXY,
        trusted_proxy_count=count,
        trusted_proxy_headers=trust,
    )
    assert result.environ is None, "the application must not be called"
    return result


# -- untrusted peers ----------------------------------------------------------------


def test_untrusted_peer_gets_no_say_and_its_headers_are_removed():
    headers = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "443",
        "X-Forwarded-By": "me",
        "Forwarded": "for=203.0.113.9;proto=https",
        "X-Other": "kept",
    }
    result = run(
        make_environ("10.0.0.7", headers),
        trusted_proxy=PROXY,
        trusted_proxy_headers=ALL_X_FORWARDED | {"x-forwarded-by"},
    )
    env = result.environ
    assert env["REMOTE_ADDR"] == "10.0.0.7"
    assert env["REMOTE_HOST"] == "10.0.0.7"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "localhost:8080"
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == "8080"
    assert env["HTTP_X_OTHER"] == "kept"
    for key in proxy_headers.PROXY_HEADERS:
        assert "HTTP_" + key not in env


def test_untrusted_peer_headers_kept_without_clear_untrusted():
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    env = run(
        make_environ("10.0.0.7", headers),
        trusted_proxy=PROXY,
        trusted_proxy_headers={"x-forwarded-for"},
        clear_untrusted=False,
    ).environ
    assert env["REMOTE_ADDR"] == "10.0.0.7"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_no_trusted_proxy_at_all_clears_every_proxy_header():
    env = run(make_environ("10.0.0.7", {"X-Forwarded-Proto": "https"})).environ
    assert "HTTP_X_FORWARDED_PROTO" not in env
    assert env["wsgi.url_scheme"] == "http"


def test_wildcard_trusts_any_peer():
    env = trusted({"X-Forwarded-For": "192.0.2.1"}, peer="10.1.2.3", trusted_proxy="*")
    assert env["REMOTE_ADDR"] == "192.0.2.1"


def test_unix_socket_peer_is_localhost():
    """Over a Unix socket the peer is "localhost", which trusted_proxy can name."""
    env = trusted(
        {"X-Forwarded-For": "192.0.2.1"}, peer="localhost", trusted_proxy="localhost"
    )
    assert env["REMOTE_ADDR"] == "192.0.2.1"


# -- X-Forwarded-For ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, count, addr, port, rewritten",
    [
        ("192.0.2.1", 1, "192.0.2.1", "50000", "192.0.2.1"),
        # the left-most values are whatever the client sent: only `count` are believed
        ("6.6.6.6, 192.0.2.1", 1, "192.0.2.1", "50000", "192.0.2.1"),
        ("6.6.6.6,192.0.2.1", 1, "192.0.2.1", "50000", "192.0.2.1"),
        ("6.6.6.6, 192.0.2.1, 198.51.100.2", 2, "192.0.2.1", "50000", None),
        ("192.0.2.1, 198.51.100.2", 5, "192.0.2.1", "50000", None),
        ("2001:db8::1", 1, "2001:db8::1", "50000", "2001:db8::1"),
        ("[2001:db8::1]", 1, "2001:db8::1", "50000", "[2001:db8::1]"),
        ("192.0.2.1:4711", 1, "192.0.2.1", "4711", "192.0.2.1:4711"),
        ('"192.0.2.1"', 1, "192.0.2.1", "50000", '"192.0.2.1"'),
        ("6.6.6.6, 2001:db8::2", 1, "2001:db8::2", "50000", "2001:db8::2"),
    ],
)
def test_x_forwarded_for(value, count, addr, port, rewritten):
    env = trusted({"X-Forwarded-For": value}, count=count)
    assert env["REMOTE_ADDR"] == addr
    assert env["REMOTE_HOST"] == addr
    assert env["REMOTE_PORT"] == port
    hops = [h.strip() for h in value.split(",")][-count:]
    expected = rewritten if rewritten is not None else ", ".join(hops)
    assert env["HTTP_X_FORWARDED_FOR"] == expected


def test_x_forwarded_for_count_two_ignores_spoofed_values():
    env = trusted(
        {"X-Forwarded-For": "6.6.6.6, 192.0.2.1, 198.51.100.2, 203.0.113.1"}, count=2
    )
    assert env["REMOTE_ADDR"] == "198.51.100.2"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.2, 203.0.113.1"


def test_x_forwarded_for_not_trusted_is_removed():
    env = trusted(
        {"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https"},
        trust={"x-forwarded-proto"},
    )
    assert env["REMOTE_ADDR"] == PROXY
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


# -- X-Forwarded-Proto / -Host / -Port / -By ------------------------------------------


@pytest.mark.parametrize(
    "headers, scheme, host, name, port",
    [
        ({"X-Forwarded-Proto": "https"}, "https", "localhost:8080", "localhost", "443"),
        ({"X-Forwarded-Proto": "HTTP"}, "http", "localhost:8080", "localhost", "80"),
        (
            {"X-Forwarded-Proto": '"https"'},
            "https",
            "localhost:8080",
            "localhost",
            "443",
        ),
        (
            {"X-Forwarded-Host": "example.com"},
            "http",
            "example.com",
            "example.com",
            "8080",
        ),
        (
            {"X-Forwarded-Host": "example.com", "X-Forwarded-Proto": "https"},
            "https",
            "example.com",
            "example.com",
            "443",
        ),
        (
            {"X-Forwarded-Host": "example.com", "X-Forwarded-Proto": "http"},
            "http",
            "example.com",
            "example.com",
            "80",
        ),
        (
            {"X-Forwarded-Host": "example.com:8443", "X-Forwarded-Proto": "https"},
            "https",
            "example.com:8443",
            "example.com",
            "8443",
        ),
        # the port in the host wins over X-Forwarded-Port
        (
            {"X-Forwarded-Host": "example.com:8443", "X-Forwarded-Port": "9000"},
            "http",
            "example.com:8443",
            "example.com",
            "8443",
        ),
        (
            {
                "X-Forwarded-Host": "example.com",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Port": "8443",
            },
            "https",
            "example.com:8443",
            "example.com",
            "8443",
        ),
        (
            {
                "X-Forwarded-Host": "example.com",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Port": "443",
            },
            "https",
            "example.com",
            "example.com",
            "443",
        ),
        # a default port of the other scheme is shown
        (
            {
                "X-Forwarded-Host": "example.com",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Port": "80",
            },
            "https",
            "example.com:80",
            "example.com",
            "80",
        ),
        (
            {"X-Forwarded-Host": "example.com", "X-Forwarded-Port": "443"},
            "http",
            "example.com:443",
            "example.com",
            "443",
        ),
        ({"X-Forwarded-Port": "8443"}, "http", "localhost:8080", "localhost", "8443"),
        (
            {"X-Forwarded-Host": "[2001:db8::1]", "X-Forwarded-Proto": "https"},
            "https",
            "[2001:db8::1]",
            "[2001:db8::1]",
            "443",
        ),
        (
            {"X-Forwarded-Host": "[2001:db8::1]:8443"},
            "http",
            "[2001:db8::1]:8443",
            "[2001:db8::1]",
            "8443",
        ),
    ],
)
def test_x_forwarded_proto_host_port(headers, scheme, host, name, port):
    env = trusted(headers)
    assert env["wsgi.url_scheme"] == scheme
    assert env["HTTP_HOST"] == host
    assert env["SERVER_NAME"] == name
    assert env["SERVER_PORT"] == port
    assert env["REMOTE_ADDR"] == PROXY


def test_x_forwarded_host_count_picks_the_trusted_hop():
    headers = {
        "X-Forwarded-For": "192.0.2.1, 198.51.100.2, 203.0.113.1",
        "X-Forwarded-Host": "evil.example, example.com, example.org",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Port": "8080",
    }
    env = trusted(dict(headers), count=2)
    assert env["REMOTE_ADDR"] == "198.51.100.2"
    assert env["SERVER_NAME"] == "example.com"
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_X_FORWARDED_HOST"] == "example.com, example.org"
    env = trusted(dict(headers), count=1)
    assert env["REMOTE_ADDR"] == "203.0.113.1"
    assert env["SERVER_NAME"] == "example.org"
    assert env["HTTP_HOST"] == "example.org:8080"
    assert env["HTTP_X_FORWARDED_HOST"] == "example.org"


def test_url_scheme_setting_is_overridden_by_a_trusted_proto():
    env = trusted({"X-Forwarded-Proto": "http"}, trust={"x-forwarded-proto"})
    assert env["wsgi.url_scheme"] == "http"
    result = run(
        make_environ(
            PROXY, {"X-Forwarded-Proto": "http"}, **{"wsgi.url_scheme": "https"}
        ),
        trusted_proxy=PROXY,
        trusted_proxy_headers={"x-forwarded-proto"},
    )
    assert result.environ["wsgi.url_scheme"] == "http"
    assert result.environ["SERVER_PORT"] == "80"


def test_x_forwarded_by_is_only_let_through():
    headers = {
        "X-Forwarded-For": "198.51.100.2",
        "X-Forwarded-By": "proxy-1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "example.org",
    }
    env = trusted(dict(headers), trust={"x-forwarded-by"})
    assert env["HTTP_X_FORWARDED_BY"] == "proxy-1"
    assert env["REMOTE_ADDR"] == PROXY
    assert env["wsgi.url_scheme"] == "http"
    for name in ("FOR", "PROTO", "HOST"):
        assert f"HTTP_X_FORWARDED_{name}" not in env
    # without clear_untrusted every header stays as sent
    env = trusted(dict(headers), trust={"x-forwarded-by"}, clear_untrusted=False)
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.2"
    assert env["HTTP_X_FORWARDED_HOST"] == "example.org"
    # and when not trusted, X-Forwarded-By goes too
    env = trusted(dict(headers), trust={"x-forwarded-for"})
    assert "HTTP_X_FORWARDED_BY" not in env


# -- Forwarded (RFC 7239) -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, count, addr, port, scheme, host, name, server_port",
    [
        (
            "for=192.0.2.60",
            1,
            "192.0.2.60",
            "50000",
            "http",
            "localhost:8080",
            "localhost",
            "8080",
        ),
        (
            "for=192.0.2.60;proto=https;by=203.0.113.43",
            1,
            "192.0.2.60",
            "50000",
            "https",
            "localhost:8080",
            "localhost",
            "443",
        ),
        (
            'For="[2001:db8::1]:4711"',
            1,
            "2001:db8::1",
            "4711",
            "http",
            "localhost:8080",
            "localhost",
            "8080",
        ),
        (
            'for="[2001:db8:cafe::17]";proto=https;host=example.com',
            1,
            "2001:db8:cafe::17",
            "50000",
            "https",
            "example.com",
            "example.com",
            "443",
        ),
        (
            "for=198.51.100.2;host=example.com:8080;proto=https",
            1,
            "198.51.100.2",
            "50000",
            "https",
            "example.com:8080",
            "example.com",
            "8080",
        ),
        # spoofed left-most element ignored with one trusted proxy
        (
            "for=6.6.6.6;host=evil.example;proto=https, for=192.0.2.1",
            1,
            "192.0.2.1",
            "50000",
            "http",
            "localhost:8080",
            "localhost",
            "8080",
        ),
        # two trusted: the oldest trusted element with a value wins
        (
            'for="[2001:db8::1]:3821";host="example.com:8443";proto="https", '
            'for=192.0.2.1;host="example.internal:8080"',
            2,
            "2001:db8::1",
            "3821",
            "https",
            "example.com:8443",
            "example.com",
            "8443",
        ),
        (
            'for="[2001:db8::1]";proto="https", for=192.0.2.1;host="example.org"',
            2,
            "2001:db8::1",
            "50000",
            "https",
            "example.org",
            "example.org",
            "443",
        ),
        (
            "For=192.0.2.1;host=fake.com, For=198.51.100.2;host=example.com:8080, "
            "For=203.0.113.1",
            2,
            "198.51.100.2",
            "50000",
            "http",
            "example.com:8080",
            "example.com",
            "8080",
        ),
        # values are case-insensitive: lower-cased
        (
            "for=192.0.2.1;host=Example.COM;proto=HTTPS",
            1,
            "192.0.2.1",
            "50000",
            "https",
            "example.com",
            "example.com",
            "443",
        ),
    ],
)
def test_forwarded(value, count, addr, port, scheme, host, name, server_port):
    env = trusted({"Forwarded": value}, count=count, trust={"forwarded"})
    assert env["REMOTE_ADDR"] == addr
    assert env["REMOTE_HOST"] == addr
    assert env["REMOTE_PORT"] == port
    assert env["wsgi.url_scheme"] == scheme
    assert env["HTTP_HOST"] == host
    assert env["SERVER_NAME"] == name
    assert env["SERVER_PORT"] == server_port
    assert env["HTTP_FORWARDED"] == ",".join(value.split(",")[-count:]).strip()


def test_forwarded_replaces_every_x_forwarded_header():
    logger = logging.getLogger("test.proxy_headers.forwarded")
    env = trusted(
        {
            "X-Forwarded-For": "[2001:db8::1]",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-By": "proxy",
            "Forwarded": "For=198.51.100.2;host=example.com:8080;proto=https",
        },
        trust={"forwarded"},
        logger=logger,
    )
    assert env["REMOTE_ADDR"] == "198.51.100.2"
    assert env["wsgi.url_scheme"] == "https"
    for name in ("FOR", "PROTO", "BY"):
        assert f"HTTP_X_FORWARDED_{name}" not in env


def test_forwarded_unknown_token_is_logged_and_ignored(caplog):
    logger = logging.getLogger("test.proxy_headers.unknown")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        env = trusted(
            {"Forwarded": "for=192.0.2.1;secret=x"}, trust={"forwarded"}, logger=logger
        )
    assert env["REMOTE_ADDR"] == "192.0.2.1"
    assert any(
        "Unknown Forwarded token: secret" in r.getMessage() for r in caplog.records
    )


def test_trusted_headers_absent_change_nothing():
    env = trusted({}, trust={"forwarded"})
    assert env["REMOTE_ADDR"] == PROXY
    assert env["HTTP_HOST"] == "localhost:8080"
    env = trusted({}, trust=ALL_X_FORWARDED)
    assert env["REMOTE_ADDR"] == PROXY
    assert env["SERVER_PORT"] == "8080"
    assert env["wsgi.url_scheme"] == "http"


# -- malformed trusted headers: 400 naming the header ---------------------------------


@pytest.mark.parametrize(
    "headers, trust, named",
    [
        ({"X-Forwarded-For": '"192.0.2.1'}, ALL_X_FORWARDED, "X-Forwarded-For"),
        ({"X-Forwarded-For": '192.0.2.1, "x'}, ALL_X_FORWARDED, "X-Forwarded-For"),
        ({"X-Forwarded-Host": 'example.com"'}, ALL_X_FORWARDED, "X-Forwarded-Host"),
        ({"X-Forwarded-Proto": "ftp"}, ALL_X_FORWARDED, "X-Forwarded-Proto"),
        ({"X-Forwarded-Proto": "https, http"}, ALL_X_FORWARDED, "X-Forwarded-Proto"),
        (
            {"X-Forwarded-Proto": "http://p02n3e.com?url=http"},
            ALL_X_FORWARDED,
            "X-Forwarded-Proto",
        ),
        ({"X-Forwarded-Proto": '"https'}, ALL_X_FORWARDED, "X-Forwarded-Proto"),
        ({"X-Forwarded-Port": "443, 80"}, ALL_X_FORWARDED, "X-Forwarded-Port"),
        ({"Forwarded": "for"}, {"forwarded"}, "Forwarded"),
        ({"Forwarded": "for =192.0.2.1"}, {"forwarded"}, "Forwarded"),
        ({"Forwarded": "for= 192.0.2.1"}, {"forwarded"}, "Forwarded"),
        ({"Forwarded": 'for="192.0.2.1'}, {"forwarded"}, "Forwarded"),
        (
            {"Forwarded": "for=192.0.2.1;proto=gopher"},
            {"forwarded"},
            "Forwarded Proto=",
        ),
    ],
)
def test_malformed_trusted_header_gets_400(headers, trust, named):
    result = malformed(headers, trust=trust)
    status, error_headers, body = proxy_headers.BadRequest(
        f'Header "{named}" malformed.'
    ).to_response()
    assert result.status == status == "400 Bad Request"
    assert result.headers == error_headers
    assert result.body == body
    assert f'Header "{named}" malformed.'.encode() in result.body


@maitre_only("waitress fails with a 500 (IndexError) or an empty REMOTE_ADDR")
@pytest.mark.parametrize(
    "headers, trust, named",
    [
        ({"Forwarded": 'for=" "'}, {"forwarded"}, "Forwarded"),
        ({"Forwarded": 'for=":4711"'}, {"forwarded"}, "Forwarded"),
        ({"X-Forwarded-For": "[]"}, ALL_X_FORWARDED, "X-Forwarded-For"),
        ({"X-Forwarded-For": '6.6.6.6, "[]"'}, ALL_X_FORWARDED, "X-Forwarded-For"),
    ],
)
def test_empty_client_address_gets_400(headers, trust, named):
    result = malformed(headers, trust=trust)
    assert result.status == "400 Bad Request"
    assert f'Header "{named}" malformed.'.encode() in result.body


def test_malformed_header_is_logged(caplog):
    logger = logging.getLogger("test.proxy_headers.malformed")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        result = run(
            make_environ(PROXY, {"X-Forwarded-Proto": "gopher"}),
            trusted_proxy=PROXY,
            trusted_proxy_headers={"x-forwarded-proto"},
            logger=logger,
        )
    assert result.status == "400 Bad Request"
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f'Malformed proxy header "X-Forwarded-Proto" from "{PROXY}"' in m
        and "gopher" in m
        for m in messages
    ), messages


def test_malformed_header_from_untrusted_peer_is_just_removed():
    result = run(
        make_environ("10.0.0.7", {"X-Forwarded-Proto": "gopher"}),
        trusted_proxy=PROXY,
        trusted_proxy_headers={"x-forwarded-proto"},
    )
    assert result.status == "200 OK"
    assert "HTTP_X_FORWARDED_PROTO" not in result.environ


# -- logging what was removed ---------------------------------------------------------


def test_log_untrusted_names_the_removed_headers(caplog):
    logger = logging.getLogger("test.proxy_headers.untrusted")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        env = trusted(
            {"X-Forwarded-For": "[2001:db8::1]", "Forwarded": "for=198.51.100.2"},
            trust={"forwarded"},
            log_untrusted=True,
            logger=logger,
        )
    assert env["REMOTE_ADDR"] == "198.51.100.2"
    records = [r for r in caplog.records if r.name == logger.name]
    assert len(records) == 1
    assert "Removed untrusted headers (X-Forwarded-For)" in records[0].getMessage()


def test_log_untrusted_is_quiet_when_nothing_is_removed(caplog):
    logger = logging.getLogger("test.proxy_headers.quiet")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        trusted(
            {"X-Forwarded-Proto": "https"},
            trust={"x-forwarded-proto"},
            log_untrusted=True,
            logger=logger,
        )
    assert not [r for r in caplog.records if r.name == logger.name]


# -- parse_proxy_headers on its own ---------------------------------------------------


def test_parse_proxy_headers_returns_the_unused_headers():
    environ = make_environ(
        PROXY, {"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https"}
    )
    untrusted = proxy_headers.parse_proxy_headers(
        environ,
        trusted_proxy_count=1,
        trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
    )
    assert set(untrusted) == {
        "X_FORWARDED_HOST",
        "X_FORWARDED_PORT",
        "X_FORWARDED_BY",
        "FORWARDED",
    }
    assert environ["REMOTE_ADDR"] == "192.0.2.1"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == "443"

    environ = make_environ(PROXY, {"Forwarded": "for=192.0.2.9"})
    untrusted = proxy_headers.parse_proxy_headers(environ, 1, {"forwarded"})
    assert set(untrusted) == proxy_headers.PROXY_HEADERS - {"FORWARDED"}
    assert environ["REMOTE_ADDR"] == "192.0.2.9"

    environ = make_environ(PROXY, {"X-Forwarded-For": "192.0.2.1"})
    untrusted = proxy_headers.parse_proxy_headers(environ, 1, None)
    assert set(untrusted) == proxy_headers.PROXY_HEADERS
    assert environ["REMOTE_ADDR"] == PROXY


def test_parse_proxy_headers_raises_for_malformed_values():
    environ = make_environ(PROXY, {"X-Forwarded-For": '"192.0.2.1'})
    with pytest.raises(proxy_headers.MalformedProxyHeader) as info:
        proxy_headers.parse_proxy_headers(environ, 1, {"x-forwarded-for"})
    assert info.value.header == "X-Forwarded-For"
    assert info.value.value == '"192.0.2.1'


# -- functional: a real server on 127.0.0.1 -------------------------------------------


def served_environ(serve_app, headers: bytes, path="/", host="localhost", **settings):
    """Serve an EnvironRecorder with ``settings``, send one GET, return its environ."""
    recorder = EnvironRecorder()
    srv = serve_app(recorder, **settings)
    resp = srv.request(get(path, host=host, headers=headers))
    assert resp.status == 200, resp.body
    return recorder.last


def test_server_trusts_x_forwarded_headers_from_its_proxy(serve_app):
    env = served_environ(
        serve_app,
        b"X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"
        b"X-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: www.example.com\r\n"
        b"X-Forwarded-Port: 443\r\n"
        b"X-Forwarded-By: proxy\r\n",
        trusted_proxy="127.0.0.1",
        trusted_proxy_headers="x-forwarded-for x-forwarded-proto x-forwarded-host "
        "x-forwarded-port",
    )
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["REMOTE_HOST"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "www.example.com"
    assert env["SERVER_NAME"] == "www.example.com"
    assert env["SERVER_PORT"] == "443"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert "HTTP_X_FORWARDED_BY" not in env


def test_server_ignores_proxy_headers_from_an_untrusted_peer(serve_app):
    env = served_environ(
        serve_app,
        b"X-Forwarded-For: 203.0.113.7\r\n"
        b"X-Forwarded-Proto: https\r\n"
        b"Forwarded: for=203.0.113.8;proto=https\r\n"
        b"X-Custom: kept\r\n",
        trusted_proxy="10.255.255.1",
        trusted_proxy_headers="x-forwarded-for x-forwarded-proto",
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "localhost"
    assert env["HTTP_X_CUSTOM"] == "kept"
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert "HTTP_X_FORWARDED_PROTO" not in env
    assert "HTTP_FORWARDED" not in env


def test_server_keeps_untrusted_headers_when_told_to(serve_app):
    env = served_environ(
        serve_app,
        b"X-Forwarded-For: 203.0.113.7\r\nForwarded: for=203.0.113.8\r\n",
        clear_untrusted_proxy_headers=False,
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_FORWARDED"] == "for=203.0.113.8"


def test_server_forwarded_ipv6_with_port(serve_app):
    env = served_environ(
        serve_app,
        b'Forwarded: for=6.6.6.6;proto=http, for="[2001:db8::1]:4711";proto=https;'
        b"host=example.com\r\n",
        trusted_proxy="127.0.0.1",
        trusted_proxy_headers={"forwarded"},
    )
    assert env["REMOTE_ADDR"] == "2001:db8::1"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com"
    assert env["SERVER_PORT"] == "443"
    assert (
        env["HTTP_FORWARDED"] == 'for="[2001:db8::1]:4711";proto=https;host=example.com'
    )


def test_server_trusted_proxy_count(serve_app):
    env = served_environ(
        serve_app,
        b"X-Forwarded-For: 6.6.6.6, 192.0.2.1, 10.0.0.2\r\n",
        trusted_proxy="127.0.0.1",
        trusted_proxy_count=2,
        trusted_proxy_headers={"x-forwarded-for"},
    )
    assert env["REMOTE_ADDR"] == "192.0.2.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "192.0.2.1, 10.0.0.2"


def test_server_trusted_proxy_implies_x_forwarded_proto(serve_app):
    """trusted_proxy alone trusts X-Forwarded-Proto (waitress's compatibility rule)."""
    with pytest.warns(DeprecationWarning):
        recorder = EnvironRecorder()
        srv = serve_app(recorder, trusted_proxy="127.0.0.1")
    resp = srv.request(
        get("/", headers=b"X-Forwarded-Proto: https\r\nX-Forwarded-For: 192.0.2.1\r\n")
    )
    assert resp.status == 200
    assert recorder.last["wsgi.url_scheme"] == "https"
    assert recorder.last["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in recorder.last


def test_server_malformed_trusted_header_is_a_400(serve_app):
    recorder = EnvironRecorder()
    srv = serve_app(
        recorder,
        trusted_proxy="127.0.0.1",
        trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
    )
    resp = srv.request(get("/", headers=b'X-Forwarded-For: "192.0.2.1\r\n'))
    assert resp.status == 400
    assert resp.reason == "Bad Request"
    # the middleware answers as an application would: waitress's to_response() body
    _, headers, body = proxy_headers.BadRequest(
        'Header "X-Forwarded-For" malformed.'
    ).to_response()
    assert resp.body == body
    assert resp.header("Content-Type") == dict(headers)["Content-Type"]
    assert resp.header("Server") == IDENT
    assert not recorder.environs
    resp = srv.request(get("/", headers=b"X-Forwarded-Proto: gopher\r\n"))
    assert resp.status == 400
    assert b'Header "X-Forwarded-Proto" malformed.' in resp.body
    # and the server keeps serving
    assert srv.request(get("/", headers=b"X-Forwarded-Proto: https\r\n")).status == 200
    assert recorder.last["wsgi.url_scheme"] == "https"


def test_server_url_prefix_behind_a_proxy(serve_app):
    env = served_environ(
        serve_app,
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n",
        path="/app/x/y?z=1",
        url_prefix="/app",
        trusted_proxy="127.0.0.1",
        trusted_proxy_headers={"x-forwarded-proto", "x-forwarded-host"},
    )
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x/y"
    assert env["QUERY_STRING"] == "z=1"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com"


def test_server_url_scheme_setting_without_proxy(serve_app):
    env = served_environ(
        serve_app, b"X-Forwarded-Proto: http\r\n", url_scheme="https", url_prefix="/a"
    )
    assert env["wsgi.url_scheme"] == "https"
    assert env["SCRIPT_NAME"] == "/a"
    assert env["PATH_INFO"] == "/"
    assert "HTTP_X_FORWARDED_PROTO" not in env


def test_server_logs_untrusted_headers_when_asked(serve_app, caplog):
    with caplog.at_level(logging.WARNING, logger=TARGET):
        env = served_environ(
            serve_app,
            b"X-Forwarded-For: 203.0.113.7\r\n",
            log_untrusted_proxy_headers=True,
        )
    assert "HTTP_X_FORWARDED_FOR" not in env
    messages = [r.getMessage() for r in caplog.records if r.name == TARGET]
    assert any("Removed untrusted headers (X-Forwarded-For)" in m for m in messages), (
        messages
    )
