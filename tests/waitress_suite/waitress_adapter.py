"""pytest plugin: run waitress 3.0.2's own test suite, unmodified, against maitre.

scripts/waitress-suite fetches the waitress sdist (sha256 pinned), extracts its
``tests/`` and runs pytest on them with ``-p waitress_adapter``. This plugin:

- serves ``import waitress...`` from maitre: ``waitress`` -> ``maitre``, and each
  public module (SPEC section 2) to its maitre namesake; ``waitress.server``'s
  ``TcpWSGIServer``/``UnixWSGIServer``, which the functional tests subclass to start
  their fixture servers, build the server with ``maitre.create_server``;
- serves waitress's internal modules (channel, task, buffers, wasyncore, trigger,
  receiver, ...) as placeholders, so that the tests using them can be collected,
  counted and deselected (``INTERNAL``); a placeholder raises if anything is used;
- marks each test that rests on a deliberate difference as a strict xfail
  (``DIFFERENCES``, one line each, the reason naming the RFC or README item);
- prints ``waitress suite: N passed, M deliberate differences, K internal``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
import sys
import types

import maitre
import maitre.adjustments
import maitre.parser
import maitre.proxy_headers
import maitre.runner
import maitre.server
import maitre.utilities
import pytest

# -- what is not run, and why. Each reason once, with the tests it covers (fnmatch
# -- patterns on the node id below waitress's tests/ directory). --------------------

#: Tests of waitress internals that maitre does not have (SPEC section 2: connections,
#: tasks, buffers and the event loop live in Rust). Deselected, counted as "internal".
INTERNAL: list[tuple[str, tuple[str, ...]]] = [
    (
        "waitress's asyncore event loop (wasyncore.py) and its wake-up pipe "
        "(trigger.py): maitre's event loop is Rust",
        ("test_wasyncore.py::*", "test_trigger.py::*"),
    ),
    (
        "HTTPChannel (channel.py), one connection: maitre's connections are Rust",
        ("test_channel.py::*",),
    ),
    (
        "task.py (ThreadedTaskDispatcher, WSGITask, ErrorTask): maitre's worker "
        "pool and responses are Rust",
        ("test_task.py::*",),
    ),
    (
        "buffers.py and receiver.py (output buffers, body receivers): maitre's "
        "buffering and body framing are Rust",
        (
            "test_buffers.py::*",
            "test_receiver.py::*",
            "test_parser.py::TestHTTPRequestParser::test_get_body_stream_*",
            "test_parser.py::TestHTTPRequestParser::test_close_with_body_rcv",
        ),
    ),
    (
        "HTTPRequestParser.parse_header and the helpers it calls (get_header_lines, "
        "unquote_bytes_to_wsgi): maitre.parser offers received() over the Rust "
        "parser (SPEC section 2)",
        (
            "test_parser.py::TestHTTPRequestParser::test_parse_header_*",
            "test_parser.py::Test_get_header_lines::*",
            "test_parser.py::Test_unquote_bytes_to_wsgi::*",
        ),
    ),
    (
        "the server objects' asyncore side (map, dispatcher, accepting, "
        "handle_accept, maintenance, trigger, sockinfo, WSGIServer alias)",
        (
            "test_server.py::TestWSGIServer::test_ctor_start_*",
            "test_server.py::TestWSGIServer::test_ctor_makes_dispatcher",
            "test_server.py::TestWSGIServer::test_get_server_multi",
            "test_server.py::TestWSGIServer::test_run*",
            "test_server.py::TestWSGIServer::test_pull_trigger",
            "test_server.py::TestWSGIServer::test_add_task",
            "test_server.py::TestWSGIServer::test_readable_*",
            "test_server.py::TestWSGIServer::test_writable",
            "test_server.py::TestWSGIServer::test_handle_*",
            "test_server.py::TestWSGIServer::test_maintenance",
            "test_server.py::TestWSGIServer::test_backward_compatibility",
            "test_server.py::TestWSGIServer::test_create_with_one_socket_*",
            "test_server.py::TestUnixWSGIServer::*",
        ),
    ),
    (
        "a doctest driving HTTPServer and HTTPChannel directly",
        ("test_regression.py::*",),
    ),
    (
        "private helpers of utilities.py and runner.py (rfc850_reg, unpack_rfc850, "
        "rfc822_reg, unpack_rfc822, show_exception)",
        (
            "test_utilities.py::Test_unpack_rfc850::*",
            "test_utilities.py::Test_unpack_rfc_822::*",
            "test_runner.py::Test_helper::test_exception_logging",
        ),
    ),
]

#: Tests that fail against maitre because of a deliberate difference: strict xfail,
#: the reason naming the RFC section or the documented item it rests on. The
#: "Migrating from waitress" page (docs/migrating.md) lists exactly these reasons,
#: between its ``waitress-suite`` markers (checked at the start of the run).
DIFFERENCES: list[tuple[str, tuple[str, ...]]] = [
    (
        "Identity strings: the Server header and SERVER_SOFTWARE say maitre, not "
        "waitress (the ident setting).",
        (
            "test_functional.py::*EchoTests::test_date_and_server",
            "test_functional.py::*EchoTests::test_bad_host_header",
            "test_functional.py::*EchoTests::test_proxy_headers",
        ),
    ),
    (
        "A chunked response keeps an HTTP/1.1 connection alive (RFC 9112 "
        "section 9.3); waitress closes it.",
        (
            "test_functional.py::*NoContentLengthTests::test_http11_generator",
            "test_functional.py::*NoContentLengthTests::test_http11_listlentwo",
            "test_functional.py::*FileWrapperTests::test_notfilelike_nocl_http11",
        ),
    ),
    (
        "An application that writes str gets a clean 500 (PEP 3333: bodies are "
        "bytes); waitress has already sent its 200 head and closes.",
        (
            "test_functional.py::*InternalServerErrorTests::test_after_write_cb",
            "test_functional.py::*InternalServerErrorTests::test_in_generator",
        ),
    ),
    (
        "A request whose version is not HTTP/1.x (waitress's tests send HTTP/8.4) "
        "gets 400 (RFC 9110 section 2.5); HTTP/1.2 to 1.9 are served as HTTP/1.1.",
        (
            "test_parser.py::TestHTTPRequestParser::test_received_cl_too_large",
            "test_parser.py::TestHTTPRequestParser::"
            "test_received_headers_not_too_large_multiple_chunks",
            "test_parser.py::TestHTTPRequestParserIntegration::*",
        ),
    ),
    (
        "A 431 answers in the request's own HTTP version, as every other error "
        "does; waitress answers it in HTTP/1.0.",
        ("test_functional.py::*TooLargeTests::test_request_headers_too_large_http11",),
    ),
    (
        "Blank lines before a request line are skipped (RFC 9112 section 2.2): "
        "maitre.parser does not report them as an empty request.",
        ("test_parser.py::TestHTTPRequestParser::test_received_nonsense_nothing",),
    ),
    (
        "sockets: anything but a socket or a file descriptor number is refused at "
        "start, not silently dropped.",
        ("test_adjustments.py::Test_as_socket_list::test_not_only_sockets_in_list",),
    ),
    (
        "maitre-serve: a usage error exits with status 2 and maitre's usage text; "
        "--help prints maitre's help.",
        (
            "test_runner.py::Test_run::test_bad",
            "test_runner.py::Test_run::test_help",
            "test_runner.py::Test_run::test_no_app",
            "test_runner.py::Test_run::test_multiple_apps_app",
            "test_runner.py::Test_run::test_bad_apps_app",
            "test_runner.py::Test_run::test_bad_app_module",
            "test_runner.py::Test_run::test_bad_app_object",
        ),
    ),
]

#: Tests whose raw HTTP/1.1 requests omit Host, which maitre answers with 400 (RFC
#: 9112 section 3.2): the adapter adds ``Host: localhost`` to those requests on the
#: client side (the functional test's socket; for a parser test, the bytes it feeds to
#: ``received()``, whose count returned then leaves the added bytes out), and the
#: tests must then pass on everything else.
#: WAITRESS_SUITE_NO_HOST=1 turns this off, to see that each of them needs it.
ADD_HOST: tuple[str, ...] = (
    "test_functional.py::*EchoTests::test_broken_chunked_encoding*",
    "test_functional.py::*EchoTests::test_chunking_request_*",
    "test_functional.py::*EchoTests::test_keepalive_http11_*",
    "test_functional.py::*EchoTests::test_keepalive_http_11",
    "test_functional.py::*ExpectContinueTests::test_expect_continue",
    "test_functional.py::*NoContentLengthTests::test_http11_*",
    "test_functional.py::*TooLargeTests::test_request_body_too_large_*_http11*",
    "test_functional.py::*TooLargeTests::test_request_body_too_large_chunked_encoding",
    "test_functional.py::*InternalServerErrorTests::test_*_http11*",
    "test_functional.py::*InternalServerErrorTests::test_*_http_11*",
    "test_functional.py::*InternalServerErrorTests::test_after_write_cb",
    "test_functional.py::*InternalServerErrorTests::test_in_generator",
    "test_functional.py::*InternalServerErrorTestsWithTraceback::*_http_11",
    "test_functional.py::*FileWrapperTests::test_*_http11",
    "test_parser.py::TestHTTPRequestParser::test_received_bad_transfer_encoding",
    "test_parser.py::TestHTTPRequestParser::test_received_body_too_large",
    "test_parser.py::TestHTTPRequestParser::test_received_error_from_parser",
    "test_parser.py::TestHTTPRequestParser::"
    "test_received_chunked_completed_sets_content_length",
)

#: Deliberate differences where the test reads until the server closes a connection
#: that maitre keeps open: the client socket gets this timeout (seconds), so that the
#: expected failure comes quickly instead of after channel_timeout.
WAITS_FOR_CLOSE: tuple[str, ...] = DIFFERENCES[1][1]
CLIENT_TIMEOUT = 3.0


# -- import waitress -> maitre ---------------------------------------------------

PUBLIC_MODULES = ("adjustments", "parser", "proxy_headers", "runner", "utilities")
INTERNAL_MODULES = (
    "buffers",
    "channel",
    "receiver",
    "rfc7230",
    "task",
    "trigger",
    "wasyncore",
)


class InternalNotInMaitre(NotImplementedError):
    """A waitress internal was used by a test that is not deselected."""


def _placeholder(qualname: str) -> type:
    """A class standing for a waitress internal: it can be named, imported and
    subclassed (so the test module imports), but never used."""

    def refuse(*args, **kwargs):
        raise InternalNotInMaitre(f"{qualname} is a waitress internal, not in maitre")

    return type(qualname.rsplit(".", 1)[-1], (), {"__init__": refuse})


def _add_placeholders(mod: types.ModuleType, name: str) -> None:
    """Names ``mod`` lacks become placeholders, so that a test module importing a
    waitress internal along with public names still imports."""

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _placeholder(f"{name}.{attr}")

    mod.__getattr__ = __getattr__


def _module(name: str, attrs: dict, fallback: bool) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    if fallback:
        _add_placeholders(mod, name)
    return mod


class _ServerClass(type):
    """``isinstance(server, waitress.server.TcpWSGIServer)`` holds for what
    ``create_server`` returns: maitre's class of the same name."""

    def __instancecheck__(cls, obj):
        maitre_class = getattr(maitre.server, cls.__name__)
        return isinstance(obj, maitre_class) or type.__instancecheck__(cls, obj)


class _FixtureServer(metaclass=_ServerClass):
    """waitress's ``TcpWSGIServer``/``UnixWSGIServer`` as its functional tests use
    them: they subclass it, call ``__init__(app, **settings)``, read
    ``self.socket`` and call ``run()``. The server is ``maitre.create_server``'s."""

    def __init__(
        self,
        application,
        map=None,  # noqa: A002 - waitress's signature
        _start=True,
        _sock=None,
        dispatcher=None,
        adj=None,
        sockinfo=None,
        bind_socket=True,
        **kw,
    ):
        if map is not None or dispatcher is not None or adj is not None or sockinfo:
            raise InternalNotInMaitre("asyncore map/dispatcher/adj/sockinfo")
        self._server = maitre.server.create_server(application, _sock=_sock, **kw)
        self.socket = self._server.sockets[0]

    def run(self):
        self._server.run()

    def close(self):
        self._server.close()

    def __getattr__(self, name):
        return getattr(self._server, name)


def _install_modules() -> None:
    server = _module(
        "waitress.server",
        {
            "create_server": maitre.server.create_server,
            "MultiSocketServer": maitre.server.MultiSocketServer,
            "TcpWSGIServer": _ServerClass(
                "TcpWSGIServer", (_FixtureServer,), {"family": socket.AF_INET}
            ),
            "UnixWSGIServer": _ServerClass(
                "UnixWSGIServer", (_FixtureServer,), {"family": socket.AF_UNIX}
            ),
        },
        fallback=True,
    )
    compat = _module(
        "waitress.compat",
        {"WIN": sys.platform.startswith("win"), "HAS_IPV6": socket.has_ipv6},
        fallback=True,
    )
    submodules = {"server": server, "compat": compat}
    for name in PUBLIC_MODULES:
        # The maitre module itself: ``waitress.parser`` is ``maitre.parser``.
        submodules[name] = sys.modules[f"maitre.{name}"]
        _add_placeholders(submodules[name], f"waitress.{name}")
    for name in INTERNAL_MODULES:
        submodules[name] = _module(f"waitress.{name}", {}, fallback=True)
    package = _module(
        "waitress",
        {name: getattr(maitre, name) for name in maitre.__all__},
        fallback=False,
    )
    package.__path__ = []  # a package: its submodules come from sys.modules
    for name, mod in submodules.items():
        setattr(package, name, mod)
        sys.modules[f"waitress.{name}"] = mod
    sys.modules["waitress"] = package


_install_modules()


# -- Host added client-side (ADD_HOST) ------------------------------------------

_REQUEST_LINE_11 = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ ]+ HTTP/1\.1\r\n")
_HOST_LINE = re.compile(rb"\r\nhost[ \t]*:", re.IGNORECASE)


def add_host(data: bytes) -> bytes:
    """``data`` with ``Host: localhost`` after its request line, if it starts with an
    HTTP/1.1 request line and its head (as far as ``data`` holds it) has no Host."""
    first = _REQUEST_LINE_11.match(data)
    if first is None:
        return data
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    if _HOST_LINE.search(head):
        return data
    return data[: first.end()] + b"Host: localhost\r\n" + data[first.end() :]


class _HostAddingSocket(socket.socket):
    """The test's client socket, adding Host to the HTTP/1.1 requests it sends.
    Each ``send()`` is whole (``sendall``) and reports the caller's length."""

    def send(self, data, flags=0):
        self.sendall(add_host(bytes(data)), flags)
        return len(data)


#: what the running test gets: Host added, a client timeout
_now: dict = {"add_host": False, "timeout": None}


def _patch_functional() -> None:
    """The functional tests' client sockets come from ``create_socket``."""
    functional = sys.modules.get("tests.test_functional")
    if functional is None:
        return
    base = functional.SubprocessTests
    original = base.create_socket

    def create_socket(self):
        if _now["add_host"]:
            sock = _HostAddingSocket(self.server.family, socket.SOCK_STREAM)
        else:
            sock = original(self)
        if _now["timeout"] is not None:
            sock.settimeout(_now["timeout"])
        return sock

    base.create_socket = create_socket


def _patch_parser() -> None:
    """The parser tests' client is the test feeding ``received()``: Host goes into
    the first bytes it feeds, and the count returned leaves the added bytes out."""
    parser = maitre.parser.HTTPRequestParser
    original = parser.received

    def received(self, data):
        if not _now["add_host"] or self.headers_finished or self.completed:
            return original(self, data)
        if getattr(self, "_adapter_fed", False):
            return original(self, data)
        self._adapter_fed = True
        sent = add_host(bytes(data))
        added = len(sent) - len(data)
        used = original(self, sent)
        if added and used > sent.index(b"\r\n") + 2:
            used -= added
        return used

    parser.received = received


def pytest_runtest_setup(item):
    _now["add_host"] = item.get_closest_marker("waitress_add_host") is not None
    marker = item.get_closest_marker("waitress_client_timeout")
    _now["timeout"] = marker.args[0] if marker is not None else None


def pytest_runtest_teardown(item):
    _now["add_host"] = False
    _now["timeout"] = None


# -- collection: deselect internals, mark differences ----------------------------


def _short(nodeid: str) -> str:
    return nodeid[len("tests/") :] if nodeid.startswith("tests/") else nodeid


def _find(table, short: str):
    """(reason, pattern) of the first pattern of ``table`` matching ``short``."""
    for reason, patterns in table:
        for pattern in patterns:
            if fnmatch.fnmatchcase(short, pattern):
                return reason, pattern
    return None, None


_state: dict = {"internal": 0, "unused": []}


README = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "docs", "migrating.md"
)
_BEGIN, _END = "<!-- waitress-suite: begin -->", "<!-- waitress-suite: end -->"


def readme_reasons(text: str) -> set:
    """The bullets between the waitress-suite markers, each joined on one line."""
    block = text.split(_BEGIN, 1)[1].split(_END, 1)[0]
    bullets = re.split(r"\n- ", "\n" + block.strip())
    return {" ".join(b.split()).replace("`", "") for b in bullets if b.strip()}


def pytest_configure(config):
    with open(README, encoding="utf-8") as f:
        listed = readme_reasons(f.read())
    reasons = {" ".join(reason.split()) for reason, _ in DIFFERENCES}
    if listed != reasons:
        raise pytest.UsageError(
            "docs/migrating.md's waitress-suite list and DIFFERENCES differ:\n"
            f"  only in docs/migrating.md: {sorted(listed - reasons)}\n"
            f"  only in the adapter: {sorted(reasons - listed)}"
        )
    config.addinivalue_line(
        "markers", "waitress_add_host: add Host to the test's raw HTTP/1.1 requests"
    )
    config.addinivalue_line(
        "markers", "waitress_client_timeout(seconds): timeout of the test's socket"
    )


def _whole_suite(config, items) -> bool:
    """Whether every test module was collected with no selection: only then can a
    list entry that matches nothing be told from one that was not selected."""
    if config.getoption("keyword") or config.getoption("markexpr"):
        return False
    modules = {item.path for item in items}
    directory = next(iter(modules)).parent if modules else None
    return directory is not None and modules == set(directory.glob("test_*.py"))


def pytest_collection_modifyitems(config, items):
    add_host = os.environ.get("WAITRESS_SUITE_NO_HOST") != "1"
    used = set()
    kept, internal = [], []
    for item in items:
        short = _short(item.nodeid)
        reason, pattern = _find(INTERNAL, short)
        if pattern is not None:
            used.add(pattern)
            internal.append(item)
            continue
        reason, pattern = _find(DIFFERENCES, short)
        if pattern is not None:
            used.add(pattern)
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
            if pattern in WAITS_FOR_CLOSE:
                item.add_marker(pytest.mark.waitress_client_timeout(CLIENT_TIMEOUT))
        _, pattern = _find([("", ADD_HOST)], short)
        if pattern is not None:
            used.add(pattern)
            if add_host:
                item.add_marker("waitress_add_host")
        kept.append(item)
    if internal:
        config.hook.pytest_deselected(items=internal)
    items[:] = kept
    _state["internal"] = len(internal)
    if _whole_suite(config, items + internal):
        listed = {p for _, patterns in INTERNAL + DIFFERENCES for p in patterns}
        _state["unused"] = sorted((listed | set(ADD_HOST)) - used)
    _patch_functional()
    _patch_parser()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    passed = len([r for r in stats.get("passed", []) if r.when == "call"])
    xfailed = len(stats.get("xfailed", []))
    if _state["unused"]:
        terminalreporter.write_line(
            "waitress adapter: listed patterns that match no test: "
            + ", ".join(_state["unused"]),
            red=True,
        )
    _state["totals"] = (
        f"waitress suite: {passed} passed, {xfailed} deliberate differences, "
        f"{_state['internal']} internal"
    )


def pytest_unconfigure(config):
    # After pytest's own summary lines: the totals are the last line of the run.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and "totals" in _state:
        reporter.write_line(_state["totals"])


def pytest_sessionfinish(session, exitstatus):
    # A stale list entry fails the run: the lists must say exactly what is skipped.
    if _state["unused"] and exitstatus == 0:
        session.exitstatus = 1
