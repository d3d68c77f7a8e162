"""Settings (SPEC section 3): names, defaults, conversions and the errors of
``Adjustments(**kw)`` and ``Adjustments.parse_args(argv)``, of the server under test
and side by side with waitress 3.0.2 where they must behave the same."""

from __future__ import annotations

import getopt
import importlib
import os
import re
import socket
import warnings

import maitre.adjustments as madj
import pytest
import waitress.adjustments as wadj
from helpers import TARGET, maitre_only

#: the adjustments module of the server under test
adjustments = importlib.import_module(f"{TARGET}.adjustments")
Adjustments = adjustments.Adjustments

HAS_IPV6 = socket.has_ipv6

#: SPEC section 3 (waitress 3.0.2's defaults; identity strings name the server)
SPEC_DEFAULTS = {
    "host": "0.0.0.0",
    "port": 8080,
    "ipv4": True,
    "ipv6": True,
    "threads": 4,
    "trusted_proxy": None,
    "trusted_proxy_count": 1,
    "trusted_proxy_headers": set(),
    "log_untrusted_proxy_headers": False,
    "clear_untrusted_proxy_headers": True,
    "url_scheme": "http",
    "url_prefix": "",
    "ident": TARGET,
    "server_name": f"{TARGET}.invalid",
    "backlog": 1024,
    "recv_bytes": 8192,
    "send_bytes": 1,
    "inbuf_overflow": 524288,
    "outbuf_overflow": 1048576,
    "outbuf_high_watermark": 16777216,
    "connection_limit": 100,
    "cleanup_interval": 30,
    "channel_timeout": 120,
    "channel_request_lookahead": 0,
    "log_socket_errors": True,
    "max_request_header_size": 262144,
    "max_request_body_size": 1073741824,
    "expose_tracebacks": False,
    "asyncore_loop_timeout": 1,
    "asyncore_use_poll": False,
    "unix_socket": None,
    "unix_socket_perms": 0o600,
    "sockets": [],
}

IDENTITY = {"ident", "server_name"}

#: SPEC section 5: maitre's own settings (not in waitress), with their defaults
MAITRE_DEFAULTS = {
    "shutdown_timeout": 30,
    # leaving a fleet behind a load balancer
    "shutdown_delay": 0,
    "keepalive_linger": 2,
    "proxy_protocol": "off",
    "proxy_protocol_from": [],
    # overload
    "max_queued_requests": 0,
    "queue_timeout": 0,
    "keepalive_timeout": 0,
    "request_timeout": 0,
    # the process model
    "workers": 1,
    "preload_app": False,
    "worker_timeout": 30,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "max_worker_memory": 0,
    "max_worker_lifetime": 0,
    "pid_file": None,
    "reload": False,
    "reload_dirs": [],
    # observability
    "access_log": None,
    "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    "metrics_listen": None,
    # TLS
    "ssl_certificate": None,
    "ssl_private_key": None,
    "ssl_certificate_chain": None,
    "ssl_private_key_password": None,
    "ssl_ca_certificate": None,
    "ssl_verify_client": "none",
    "ssl_min_version": "1.2",
    # HTTP/2
    "http2": False,
    # limits on hostile clients
    "max_request_headers": 100,
    "min_request_body_rate": 500,
    # logging
    "log_level": None,
    "log_config": None,
}


def inet4(host, port):
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))


def inet6(host, port):
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port, 0, 0))


def flag_argv(params) -> list:
    """Every command-line flag of a settings table, each with a value."""
    argv = []
    for name, convert in params:
        flag = name.replace("_", "-")
        if convert is wadj.asbool or convert is madj.asbool:
            argv += [f"--{flag}", f"--no-{flag}"]
        else:
            argv.append(f"--{flag}=1")
    return argv


# ------------------------------------------------------------- the table


def test_same_settings_as_waitress():
    """maitre has every waitress setting in waitress's order, and otherwise only its
    own (SPEC section 5)."""
    waitress_names = [n for n, _ in wadj.Adjustments._params]
    assert [
        name for name, _ in madj.Adjustments._params if name not in MAITRE_DEFAULTS
    ] == waitress_names
    assert [
        s.name for s in madj.SETTINGS if s.name not in MAITRE_DEFAULTS
    ] == waitress_names


def test_spec_table_is_complete():
    """The SPEC tables above name every setting (listen checked apart)."""
    names = {name for name, _ in Adjustments._params}
    own = set(MAITRE_DEFAULTS) if TARGET == "maitre" else set()
    assert names == set(SPEC_DEFAULTS) | {"listen"} | own


@maitre_only("maitre's own settings")
@pytest.mark.parametrize("name", sorted(MAITRE_DEFAULTS))
def test_maitre_defaults(name):
    assert getattr(Adjustments(), name) == MAITRE_DEFAULTS[name]
    assert getattr(Adjustments, name) == MAITRE_DEFAULTS[name]


def test_boolean_settings_match_waitress():
    """The settings that are --flag/--no-flag switches are waitress's."""
    mbools = {
        s.name
        for s in madj.SETTINGS
        if s.convert is madj.asbool and s.name not in MAITRE_DEFAULTS
    }
    wbools = {n for n, c in wadj.Adjustments._params if c is wadj.asbool}
    assert mbools == wbools


@pytest.mark.parametrize("name", sorted(SPEC_DEFAULTS))
def test_defaults(name):
    """Adjustments() has the SPEC default of every setting, also as a class
    attribute."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adj = Adjustments()
    assert getattr(adj, name) == SPEC_DEFAULTS[name]
    if name != "trusted_proxy_count":  # None on the class: "not set"
        assert getattr(Adjustments, name) == SPEC_DEFAULTS[name]


def test_default_listen():
    """By default: 0.0.0.0:8080, resolved to what bind() takes."""
    assert Adjustments().listen == [inet4("0.0.0.0", 8080)]
    assert Adjustments.listen == ["0.0.0.0:8080"]


def test_settings_have_help_and_metavar():
    """Each setting of the table has help text (shown by --help)."""
    for s in madj.SETTINGS:
        assert s.help.strip().endswith("."), s.name
        assert bool(s.metavar) == (s.convert is not madj.asbool), s.name


# -------------------------------------------------------------- conversions

CONVERSIONS = [
    ("asbool", ["t", "true", "TRUE", " yes ", "y", "on", "1", True, False, None]),
    ("asbool", ["f", "false", "no", "off", "0", "", "2", "anything"]),
    ("asoctal", ["600", "0660", "777", "0"]),
    ("aslist", ["a b", "a\nb  c\n\n d", ["x", "y"], "", "  one  "]),
    ("slash_fixed_str", ["", "/", "foo", "/foo/", "//foo//bar//", "  /x  "]),
    ("str_iftruthy", ["", None, "x", 0, 1]),
]


@pytest.mark.parametrize(
    "func,value",
    [(func, value) for func, values in CONVERSIONS for value in values],
)
def test_conversion_functions_match_waitress(func, value):
    assert getattr(madj, func)(value) == getattr(wadj, func)(value)


def test_asoctal_takes_an_int_as_is():
    """From Python, unix_socket_perms=0o660 works too (waitress needs a string)."""
    assert madj.asoctal(0o660) == 0o660
    assert madj.Adjustments(unix_socket="/x", unix_socket_perms=0o640).unix_socket_perms
    assert madj.Adjustments(unix_socket="/x", unix_socket_perms="640").unix_socket_perms


STRING_VALUES = {  # as they come from a PasteDeploy ini file or the command line
    "port": ("8081", 8081),
    "threads": ("8", 8),
    "ipv6": ("false", False),
    "ipv4": ("yes", True),
    "backlog": ("64", 64),
    "recv_bytes": ("4096", 4096),
    "inbuf_overflow": ("1000", 1000),
    "outbuf_overflow": ("2000", 2000),
    "outbuf_high_watermark": ("3000", 3000),
    "connection_limit": ("7", 7),
    "cleanup_interval": ("5", 5),
    "channel_timeout": ("60", 60),
    "channel_request_lookahead": ("2", 2),
    "log_socket_errors": ("off", False),
    "max_request_header_size": ("1024", 1024),
    "max_request_body_size": ("2048", 2048),
    "expose_tracebacks": ("on", True),
    "asyncore_loop_timeout": ("3", 3),
    "asyncore_use_poll": ("1", True),
    "url_scheme": ("https", "https"),
    "url_prefix": ("mount/point/", "/mount/point"),
    "ident": ("my-ident", "my-ident"),
    "server_name": ("example.test", "example.test"),
    "clear_untrusted_proxy_headers": ("false", False),
    "log_untrusted_proxy_headers": ("true", True),
}


@pytest.mark.parametrize("name", sorted(STRING_VALUES))
def test_string_values_converted(name):
    """String values (ini files, the command line) are converted per setting."""
    text, expected = STRING_VALUES[name]
    assert getattr(Adjustments(**{name: text}), name) == expected


def test_empty_ident_sends_no_identity():
    assert Adjustments(ident="").ident is None


def test_same_attributes_as_waitress_from_strings():
    """A whole PasteDeploy-style configuration gives the same values in both."""
    kw = {
        "host": "127.0.0.1",
        "port": "8090",
        "threads": "6",
        "trusted_proxy": "10.0.0.1",
        "trusted_proxy_count": "2",
        "trusted_proxy_headers": "X-Forwarded-For\nx-forwarded-proto  x-forwarded-host",
        "log_untrusted_proxy_headers": "true",
        "clear_untrusted_proxy_headers": "no",
        "url_scheme": "https",
        "url_prefix": "//app//",
        "backlog": "10",
        "connection_limit": "50",
        "channel_timeout": "30",
        "expose_tracebacks": "yes",
        "max_request_body_size": "1000",
    }
    m, w = madj.Adjustments(**kw), wadj.Adjustments(**kw)
    for name, _ in wadj.Adjustments._params:
        if name not in IDENTITY:
            assert getattr(m, name) == getattr(w, name), name
    assert m.trusted_proxy_headers == {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }


def test_trusted_proxy_alone_trusts_x_forwarded_proto():
    """trusted_proxy without trusted_proxy_headers trusts X-Forwarded-Proto, with a
    DeprecationWarning (as waitress)."""
    with pytest.warns(DeprecationWarning, match="trusted_proxy"):
        adj = Adjustments(trusted_proxy="10.0.0.1")
    assert adj.trusted_proxy_headers == {"x-forwarded-proto"}
    assert adj.trusted_proxy_count == 1


def test_send_bytes_deprecated():
    with pytest.warns(DeprecationWarning, match="send_bytes"):
        Adjustments(send_bytes=1)


# ------------------------------------------------------- listen resolution


def test_host_and_port_make_listen():
    assert Adjustments(host="127.0.0.1", port=9000).listen == [inet4("127.0.0.1", 9000)]
    assert Adjustments(port="9001").listen == [inet4("0.0.0.0", 9001)]


def test_listen_several_addresses():
    """Space-separated and newline-separated addresses, duplicates bound once; a
    bare host takes the default port."""
    adj = Adjustments(listen="127.0.0.1:9000 127.0.0.1:9001\n127.0.0.1:9000 127.0.0.2")
    assert adj.listen == [
        inet4("127.0.0.1", 9000),
        inet4("127.0.0.1", 9001),
        inet4("127.0.0.2", 8080),
    ]


def test_listen_port_zero_never_deduplicated():
    """Each 'HOST:0' is a socket of its own, with a port of its own."""
    adj = Adjustments(listen=["127.0.0.1:0", "127.0.0.1:0"])
    assert adj.listen == [inet4("127.0.0.1", 0), inet4("127.0.0.1", 0)]


@pytest.mark.skipif(not HAS_IPV6, reason="this Python has no IPv6 support")
def test_listen_ipv6_brackets():
    adj = Adjustments(listen="[::1]:9000 127.0.0.1:9000 [::1]")
    assert adj.listen == [
        inet6("::1", 9000),
        inet4("127.0.0.1", 9000),
        inet6("::1", 8080),
    ]


def _star(**kw) -> set:
    return {
        (entry[0], entry[3][0]) for entry in Adjustments(listen="*:9000", **kw).listen
    }


def _wildcards_of_this_machine(families=socket.AF_UNSPEC) -> set:
    infos = socket.getaddrinfo(
        None,
        "9000",
        families,
        socket.SOCK_STREAM,
        socket.IPPROTO_TCP,
        socket.AI_PASSIVE,
    )
    return {(info[0], info[4][0]) for info in infos}


def test_listen_star_every_enabled_family():
    """'*' is every wildcard address of the enabled families (bind is not tried:
    the tests listen on loopback only)."""
    assert _star() == _wildcards_of_this_machine()
    assert _star(ipv6=False) == {(socket.AF_INET, "0.0.0.0")}


@pytest.mark.skipif(not HAS_IPV6, reason="this Python has no IPv6 support")
def test_listen_star_ipv6_only():
    wanted = _wildcards_of_this_machine(socket.AF_INET6)
    assert _star(ipv4=False) == wanted
    assert {family for family, _ in wanted} == {socket.AF_INET6}


def test_listen_host_name_resolved():
    """A host name listens on the addresses it resolves to in the enabled
    families."""
    adj = Adjustments(listen="localhost:9000", ipv6=False)
    assert adj.listen == [inet4("127.0.0.1", 9000)]


# -------------------------------------------------------------- parse_args


def test_parse_args_every_waitress_flag():
    """Every waitress-serve flag is accepted, with the same result."""
    argv = flag_argv(wadj.Adjustments._params) + ["--call", "--help", "mod:app"]
    mkw, margs = madj.Adjustments.parse_args(argv)
    wkw, wargs = wadj.Adjustments.parse_args(argv)
    assert margs == wargs == ["mod:app"]
    assert mkw == wkw


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["app:app"],
        ["--host=127.0.0.1", "--port=9000", "pkg.mod:obj.attr"],
        ["--listen=127.0.0.1:1", "--listen=[::1]:2", "--listen", "x:3", "m:a"],
        ["--no-ipv6", "--ipv4", "--expose-tracebacks", "--no-log-socket-errors"],
        ["--call", "--threads", "8", "--trusted-proxy-headers=forwarded", "m:f"],
        ["--unix-socket=/tmp/x.sock", "--unix-socket-perms=660", "a:b", "c:d"],
    ],
)
def test_parse_args_like_waitress(argv):
    mkw, margs = madj.Adjustments.parse_args(argv)
    wkw, wargs = wadj.Adjustments.parse_args(argv)
    assert (mkw, margs) == (wkw, wargs)


@pytest.mark.parametrize(
    "argv",
    [["--no-such-flag"], ["--threads"], ["--ipv4=yes"], ["--no-threads=1"], ["-h"]],
)
def test_parse_args_errors(argv):
    with pytest.raises(getopt.GetoptError):
        Adjustments.parse_args(argv)


def test_parse_args_values_accepted_by_adjustments():
    """parse_args' output (minus help/call) is what Adjustments takes."""
    kw, _ = Adjustments.parse_args(
        ["--listen=127.0.0.1:9000", "--listen=127.0.0.1:9001", "--no-ipv6", "x:y"]
    )
    del kw["help"], kw["call"]
    adj = Adjustments(**kw)
    assert adj.listen == [inet4("127.0.0.1", 9000), inet4("127.0.0.1", 9001)]
    assert adj.ipv6 is False


@maitre_only("--app=MODULE:OBJECT is a maitre addition")
def test_parse_args_app():
    kw, args = Adjustments.parse_args(["--app=pkg.mod:app", "--port=1"])
    assert kw["app"] == "pkg.mod:app" and args == []
    kw, _ = Adjustments.parse_args(["x:y"])
    assert "app" not in kw
    with pytest.raises(getopt.GetoptError, match="app"):
        Adjustments.parse_args(["--app=a:b", "--app=c:d"])


def test_every_setting_is_a_flag():
    """Each setting is a command-line flag and nothing else is (besides --help,
    --call, --app): no setting can be forgotten by the CLI."""
    own = set(MAITRE_DEFAULTS) if TARGET == "waitress" else set()
    argv = flag_argv(p for p in madj.Adjustments._params if p[0] not in own)
    kw, _ = Adjustments.parse_args(argv)
    assert set(kw) - {"help", "call"} == {s.name for s in madj.SETTINGS} - own


# -------------------------------------------------------------- bad values


def _unix_and_inet():
    a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return [a, b]


def _udp():
    return [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]


def _tcp():
    return [socket.socket(socket.AF_INET, socket.SOCK_STREAM)]


#: (id, keywords, regex both servers' messages match, settings maitre's names)
BAD = [
    ("unknown", {"no_such_setting": 1}, "no_such_setting", ["no_such_setting"]),
    ("port-abc", {"port": "abc"}, "abc", ["port"]),
    ("threads-x", {"threads": "x"}, "x", ["threads"]),
    ("perms-9", {"unix_socket": "/x", "unix_socket_perms": "9"}, "9", ["perms"]),
    ("listen+host", {"listen": "127.0.0.1:1", "host": "h"}, "listen", ["listen"]),
    ("listen+port", {"listen": "127.0.0.1:1", "port": 1}, "listen", ["port"]),
    ("unix+listen", {"unix_socket": "/x", "listen": "a:1"}, "listen", ["unix_socket"]),
    ("unix+host", {"unix_socket": "/x", "host": "h"}, "host", ["unix_socket"]),
    ("unix+port", {"unix_socket": "/x", "port": 1}, "port", ["unix_socket"]),
    ("sockets+listen", {"sockets": _tcp, "listen": "a:1"}, "listen", ["sockets"]),
    ("sockets+host", {"sockets": _tcp, "host": "h"}, "host", ["sockets"]),
    ("sockets+port", {"sockets": _tcp, "port": 1}, "port", ["sockets"]),
    (
        "sockets+unix",
        {"sockets": _tcp, "unix_socket": "/x"},
        "unix_socket",
        ["sockets"],
    ),
    ("sockets-mixed", {"sockets": _unix_and_inet}, "mixed", ["sockets"]),
    ("sockets-udp", {"sockets": _udp}, "stream", ["sockets"]),
    (
        "proxy-headers-alone",
        {"trusted_proxy_headers": "x-forwarded-for"},
        "trusted_proxy_headers",
        ["trusted_proxy"],
    ),
    (
        "proxy-count-alone",
        {"trusted_proxy_count": 2},
        "trusted_proxy_count",
        ["trusted_proxy"],
    ),
    (
        "proxy-header-unknown",
        {"trusted_proxy": "*", "trusted_proxy_headers": "x-forwarded-bogus"},
        "x-forwarded-bogus",
        ["trusted_proxy_headers"],
    ),
    (
        "forwarded-mixed",
        {"trusted_proxy": "*", "trusted_proxy_headers": "forwarded x-forwarded-for"},
        "mutually exclusive",
        ["trusted_proxy_headers"],
    ),
    ("listen-bad-port", {"listen": "127.0.0.1:notaport"}, "Invalid host", ["listen"]),
    # a host name that cannot be encoded (a label over 63 characters): no DNS query
    ("listen-bad-host", {"listen": "x" * 64 + ":1"}, "Invalid host", ["listen"]),
]


def _devnull_fd() -> str:
    return str(os.open(os.devnull, os.O_RDONLY))


def _materialise(kw: dict) -> dict:
    return {k: (v() if callable(v) else v) for k, v in kw.items()}


def _close(kw: dict) -> None:
    sockets = kw.get("sockets", ())
    if isinstance(sockets, str):
        os.close(int(sockets))
        return
    for sock in sockets:
        if isinstance(sock, socket.socket):
            sock.close()


@pytest.mark.parametrize("kw,pattern", [b[1:3] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_settings_rejected(kw, pattern):
    """Bad values and combinations: ValueError at once."""
    kw = _materialise(kw)
    try:
        with pytest.raises(ValueError, match=re.escape(pattern)):
            Adjustments(**kw)
    finally:
        _close(kw)


#: maitre refuses these too; waitress takes them (and then misbehaves)
BAD_FOR_MAITRE = [
    ("port-range", {"port": 70000}, ["port"]),  # waitress binds 70000 % 65536
    ("listen-range", {"listen": "127.0.0.1:70000"}, ["listen"]),
    ("threads-0", {"threads": 0}, ["threads"]),  # waitress would never answer
    ("connection-limit-0", {"connection_limit": "0"}, ["connection_limit"]),
    ("negative", {"channel_timeout": -1}, ["channel_timeout"]),
    ("bool-as-int", {"threads": True}, ["threads"]),
    ("no-family", {"ipv4": False, "ipv6": False}, ["ipv4", "ipv6"]),
    ("sockets-junk", {"sockets": ["not a socket"]}, ["sockets"]),
    ("sockets-empty", {"sockets": []}, ["sockets"]),
    ("sockets-not-a-socket-fd", {"sockets": _devnull_fd}, ["sockets"]),
    ("proxy-count-0", {"trusted_proxy": "*", "trusted_proxy_count": 0}, ["count"]),
    ("headers-0", {"max_request_headers": 0}, ["max_request_headers"]),
    ("body-rate-negative", {"min_request_body_rate": -1}, ["min_request_body_rate"]),
]


@maitre_only("maitre names the setting in every message, and refuses more")
@pytest.mark.parametrize(
    "kw,names",
    [(b[1], b[3]) for b in BAD] + [b[1:] for b in BAD_FOR_MAITRE],
    ids=[b[0] for b in BAD] + [b[0] for b in BAD_FOR_MAITRE],
)
def test_bad_settings_message_names_the_setting(kw, names):
    kw = _materialise(kw)
    try:
        with pytest.raises(ValueError) as info:
            Adjustments(**kw)
    finally:
        _close(kw)
    for name in names:
        assert name in str(info.value), str(info.value)


@maitre_only("waitress ignores sockets that are not socket objects")
def test_sockets_from_file_descriptors():
    """sockets also takes file descriptor numbers (socket activation from the
    command line: --sockets=3)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        adj = Adjustments(sockets=str(sock.fileno()))
        assert [s.fileno() for s in adj.sockets] == [sock.fileno()]
        assert adj.sockets[0].getsockname() == sock.getsockname()
        adj.sockets[0].detach()  # the fd stays the test's
    finally:
        sock.close()


# ------------------------------------------------------- what the engine is given


def _all_engine_settings() -> dict:
    """What a server gives its engine with the default settings: the table's part
    and the values that depend on its sockets."""
    from maitre.server import _engine_settings

    return dict(_engine_settings(Adjustments()), tls_listeners=[], metrics_fd=None)


def _engine(settings):
    """An engine (not started) on one listening socket, with ``settings``."""
    from maitre import _maitre
    from maitre.utilities import logger

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        app = lambda environ, start_response: []  # noqa: E731
        return _maitre.Engine(app, [(sock.fileno(), {})], settings, logger)


@maitre_only("maitre's engine")
def test_engine_settings_come_from_the_table():
    """The engine is given the table's rows marked ``engine``, each under its name,
    and a few values derived from other settings; nothing else."""
    from maitre.server import _engine_settings

    marked = [s.name for s in madj.SETTINGS if s.engine]
    assert list(madj.ENGINE_SETTINGS) == marked
    settings = _engine_settings(Adjustments())
    derived = {"access_logger", "clear_proxy_headers"}
    assert set(settings) == set(marked) | derived
    for name in marked:
        assert settings[name] == getattr(Adjustments(), name), name


@maitre_only("maitre's engine")
@pytest.mark.parametrize(
    "name",
    list(madj.ENGINE_SETTINGS)
    + ["access_logger", "clear_proxy_headers", "tls_listeners", "metrics_fd"],
)
def test_engine_refuses_to_start_without_a_setting(name):
    """The engine declares no defaults: every setting of the table marked for it
    reaches it (it reads each), and one that is missing is an error naming it."""
    settings = _all_engine_settings()
    _engine(settings)  # complete: accepted
    del settings[name]
    with pytest.raises(ValueError, match=f"missing engine setting {name}$"):
        _engine(settings)


@maitre_only("maitre's engine")
def test_engine_refuses_a_setting_it_does_not_read():
    """A row marked for the engine that the engine does not read is an error, not a
    setting silently ignored."""
    settings = _all_engine_settings()
    settings["no_such_setting"] = 1
    with pytest.raises(ValueError, match="unknown engine setting no_such_setting"):
        _engine(settings)


@maitre_only("maitre's module layout")
def test_conversions_are_public_in_adjustments():
    """The conversions live in maitre.converters and stay public in
    maitre.adjustments, as waitress's are in waitress.adjustments."""
    import maitre.converters

    for name in (
        "asbool",
        "asint",
        "asoctal",
        "aslist",
        "aslist_cronly",
        "asset",
        "asseconds",
        "as_socket_list",
        "as_workers",
        "one_of",
        "slash_fixed_str",
        "str_iftruthy",
        "str_or_none",
        "truthy",
    ):
        assert getattr(madj, name) is getattr(maitre.converters, name), name


@maitre_only("maitre's own settings, and the engine's deadlines")
@pytest.mark.parametrize(
    "settings",
    [
        {"queue_timeout": 1e19},
        {"channel_timeout": 1e30},
        {"keepalive_timeout": 1e25, "request_timeout": 1e25},
    ],
    ids=["queue_timeout", "channel_timeout", "keepalive_and_request_timeout"],
)
def test_a_duration_longer_than_anyone_means_is_served(serve_app, settings):
    # Such deadlines once overflowed the engine's clock arithmetic: a panic at start,
    # or of the I/O loop at the first request.
    from helpers import get

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    srv = serve_app(app, **settings)
    for _ in range(2):  # the second finds the loop alive after the first's deadlines
        response = srv.request(get("/"))
        assert response.status == 200 and response.body == b"ok"
