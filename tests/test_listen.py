"""Every way to listen, over real sockets: several addresses in one server, IPv6,
host names, Unix sockets (permissions, stale files), pre-bound sockets (socket
activation), backlog, connection_limit; and the loggers and ``Serving on`` lines."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import stat
import sys
import threading

import pytest
from apps import hello_app, path_app
from helpers import (
    HOST,
    SOCKET_TIMEOUT,
    TARGET,
    RawConnection,
    ServerProcess,
    create_server,
    get,
    maitre_only,
    stop_server,
)


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(
    not HAS_IPV6, reason="no IPv6 loopback (::1) on this machine"
)


class UnixConnection(RawConnection):
    """RawConnection over a Unix domain socket."""

    def __init__(self, path: str, timeout: float = SOCKET_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = bytearray()
        self.eof = False


def stop(server, thread) -> None:
    """stop_server, also for waitress's MultiSocketServer (which has no trigger of
    its own: its loop is woken through one of its sockets' servers)."""
    if TARGET == "waitress" and not hasattr(server, "trigger"):
        from waitress import wasyncore
        from waitress.server import BaseWSGIServer

        servers = [d for d in server.map.values() if isinstance(d, BaseWSGIServer)]
        servers[0].trigger.pull_trigger(lambda: wasyncore.close_all(server.map))
        thread.join(5)
        server.task_dispatcher.shutdown(timeout=2)
        assert not thread.is_alive(), "server.run() did not return"
    else:
        stop_server(server, thread)


@pytest.fixture
def run_server():
    """``run_server(app, **settings)``: create_server with exactly these settings,
    run() in a thread; stopped at teardown."""
    started = []

    def start(app, **settings):
        settings.setdefault("threads", 2)
        server = create_server(app, **settings)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in reversed(started):
        stop(server, thread)


def listening(server) -> list:
    """(host, port) of every socket of a server, ports as ints."""
    pairs = getattr(server, "effective_listen", None)
    if pairs is None:  # waitress's single-socket servers
        pairs = [(server.effective_host, server.effective_port)]
    return [(host, int(port)) for host, port in pairs]


def assert_serves(host: str, port: int, path: str = "/x") -> None:
    with RawConnection(port, host) as conn:
        resp = conn.request(get(path))
    assert (resp.status, resp.body) == (200, path.encode())


def serving_lines(server, caplog) -> list:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=TARGET):
        server.print_listen("Serving on http://{}:{}")
    return [r.getMessage() for r in caplog.records if r.name == TARGET]


# ---------------------------------------------------------------- listen


def test_listen_several_addresses_one_server(run_server, caplog):
    """Two addresses with port 0: one server (MultiSocketServer), a socket and a
    port of its own each, each served, one 'Serving on' line each."""
    server = run_server(path_app, listen=f"{HOST}:0 {HOST}:0")
    assert type(server).__name__ == "MultiSocketServer"
    pairs = listening(server)
    assert len(pairs) == 2
    assert pairs[0][1] != pairs[1][1]
    for host, port in pairs:
        assert host == HOST
        assert_serves(host, port)
    assert serving_lines(server, caplog) == [
        f"Serving on http://{HOST}:{port}" for _, port in pairs
    ]


@needs_ipv6
def test_listen_ipv4_and_ipv6(run_server, caplog):
    """'127.0.0.1:0 [::1]:0': both families served by one server; the IPv6
    address is printed in brackets."""
    server = run_server(path_app, listen=f"{HOST}:0 [::1]:0")
    (host4, port4), (host6, port6) = listening(server)
    assert (host4, host6) == (HOST, "::1")
    assert_serves(HOST, port4)
    assert_serves("::1", port6)
    assert serving_lines(server, caplog) == [
        f"Serving on http://{HOST}:{port4}",
        f"Serving on http://[::1]:{port6}",
    ]


@needs_ipv6
def test_listen_ipv6_loopback(run_server):
    server = run_server(path_app, listen="[::1]:0")
    [(host, port)] = listening(server)
    assert host == "::1"
    assert_serves("::1", port)
    with pytest.raises(OSError):  # only IPv6: nothing on 127.0.0.1 at that port
        socket.create_connection((HOST, port), timeout=2).close()


def test_listen_host_name(run_server):
    """A host name is resolved: 'localhost' (IPv4 only here) is 127.0.0.1."""
    server = run_server(path_app, listen="localhost:0", ipv6=False)
    [(host, port)] = listening(server)
    assert host == HOST
    assert_serves(HOST, port)


def test_host_and_port_keywords(run_server):
    server = run_server(path_app, host="localhost", port=0, ipv6=False)
    [(host, port)] = listening(server)
    assert host == HOST and port > 0
    assert_serves(HOST, port)


def test_close_without_run_releases_the_port():
    """A server created and closed without ever running frees its socket."""
    server = create_server(hello_app, host=HOST, port=0)
    port = int(server.effective_port)
    stop_server(server)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5).close()


# ----------------------------------------------------------- Unix sockets


@pytest.fixture
def sock_path(tmp_path):
    path = tmp_path / "s.sock"
    if len(str(path)) > 100:  # sun_path is ~108 bytes
        pytest.skip(f"temporary path too long for a Unix socket: {path}")
    return str(path)


@pytest.mark.parametrize("perms,mode", [(None, 0o600), ("660", 0o660), ("0644", 0o644)])
def test_unix_socket(run_server, sock_path, perms, mode):
    """unix_socket serves over a Unix domain socket whose file has
    unix_socket_perms (default 600)."""
    settings = {"unix_socket": sock_path}
    if perms is not None:
        settings["unix_socket_perms"] = perms
    server = run_server(path_app, **settings)
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    assert listening_unix(server) == sock_path
    with UnixConnection(sock_path) as conn:
        resp = conn.request(get("/over-unix"))
    assert (resp.status, resp.body) == (200, b"/over-unix")


def listening_unix(server) -> str:
    host, path = server.effective_host, server.effective_port
    assert host == "unix"
    return path


def test_unix_socket_stale_file_removed(run_server, sock_path):
    """A socket file left by a previous run is replaced."""
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(sock_path)
    old.close()
    assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    run_server(path_app, unix_socket=sock_path)
    with UnixConnection(sock_path) as conn:
        assert conn.request(get("/fresh")).body == b"/fresh"


@maitre_only("waitress removes the live socket and silently takes it over")
def test_unix_socket_in_use_refused(run_server, sock_path):
    """A second server on the path of a live server's socket refuses to start,
    saying why; the first keeps its socket and goes on serving."""
    run_server(path_app, unix_socket=sock_path)
    with pytest.raises(OSError, match="in use"):
        create_server(path_app, unix_socket=sock_path)
    with UnixConnection(sock_path) as conn:
        assert conn.request(get("/still-mine")).body == b"/still-mine"


def test_unix_socket_regular_file_left_alone(sock_path):
    """Something at the path that is not a socket is never removed: the server
    does not start."""
    with open(sock_path, "w") as f:
        f.write("precious")
    with pytest.raises(OSError):
        create_server(path_app, unix_socket=sock_path)
    with open(sock_path) as f:
        assert f.read() == "precious"


@maitre_only("waitress leaves its socket file behind")
def test_unix_socket_file_removed_at_close(sock_path):
    server = create_server(path_app, unix_socket=sock_path)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with UnixConnection(sock_path) as conn:
            assert conn.request(get("/")).status == 200
    finally:
        stop_server(server, thread)
    assert not os.path.exists(sock_path)


# ------------------------------------------------------- pre-bound sockets


def bound_tcp(host: str = HOST) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def test_sockets_prebound(run_server):
    """sockets=[sock]: a socket bound by the caller (socket activation) is
    listened on and served."""
    sock = bound_tcp()  # the server owns it from here: it closes it
    port = sock.getsockname()[1]
    server = run_server(path_app, sockets=[sock])
    assert listening(server) == [(HOST, port)]
    assert_serves(HOST, port)


def test_sockets_prebound_several(run_server):
    socks = [bound_tcp(), bound_tcp()]
    if HAS_IPV6:
        socks.append(bound_tcp("::1"))
    addresses = [s.getsockname()[:2] for s in socks]
    server = run_server(path_app, sockets=socks)
    assert type(server).__name__ == "MultiSocketServer"
    assert listening(server) == addresses
    for address in addresses:
        assert_serves(*address)


def test_sockets_prebound_unix(run_server, sock_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(sock_path)
    run_server(path_app, sockets=[sock])
    with UnixConnection(sock_path) as conn:
        assert conn.request(get("/prebound")).body == b"/prebound"


# ------------------------------------------------- backlog, connection_limit


def _connections_taken(port: int, tries: int) -> list:
    """Connect up to ``tries`` times, stopping at the first connect that the
    kernel does not complete within half a second (listen queue full)."""
    conns = []
    for _ in range(tries):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((HOST, port))
        except OSError:
            s.close()
            break
        conns.append(s)
    return conns


@pytest.mark.parametrize("backlog", [2, 8])
def test_backlog(backlog):
    """backlog is listen()'s: with nothing accepting (the server is created but
    not run), the kernel completes about that many connections, then no more."""
    server = create_server(hello_app, host=HOST, port=0, backlog=backlog)
    conns = []
    try:
        conns = _connections_taken(int(server.effective_port), 6)
        if backlog >= 6:
            assert len(conns) == 6
        else:  # Linux queues backlog + 1
            assert backlog <= len(conns) <= backlog + 1
    finally:
        for s in conns:
            s.close()
        stop_server(server)


@maitre_only(
    "waitress counts its own listening socket and trigger against the limit "
    "(connection_limit=2 accepts nothing there)"
)
def test_connection_limit_pauses_and_resumes(run_server):
    """At connection_limit open connections accepting pauses (a new client waits
    in the backlog, unanswered); once one closes, it is accepted and answered."""
    server = run_server(path_app, host=HOST, port=0, connection_limit=2)
    port = int(server.effective_port)
    a, b = RawConnection(port), RawConnection(port)
    c = None
    try:
        assert a.request(get("/a")).body == b"/a"
        assert b.request(get("/b")).body == b"/b"
        c = RawConnection(port)  # completed by the kernel, not accepted
        c.send(get("/c"))
        assert c.read_available(0.5) == b""
        assert b.request(get("/b2")).body == b"/b2"  # the open ones still served
        a.close()
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"/c")
        d = RawConnection(port)  # b and c open: at the limit again
        d.send(get("/d"))
        assert d.read_available(0.5) == b""
        b.close()
        assert d.read_response().body == b"/d"
        d.close()
    finally:
        for conn in (a, b, c):
            if conn is not None:
                conn.close()


# ---------------------------------------------------------------- logging


def test_loggers():
    """The server logs through `<name>` and `<name>.queue` (waitress's layout)."""
    utilities = importlib.import_module(f"{TARGET}.utilities")
    assert utilities.logger is logging.getLogger(TARGET)
    assert utilities.queue_logger is logging.getLogger(f"{TARGET}.queue")


@maitre_only("an engine setting")
@pytest.mark.parametrize("value", [True, False])
def test_log_socket_errors_given_to_the_engine(value):
    from maitre.adjustments import Adjustments
    from maitre.server import _engine_settings

    assert (
        _engine_settings(Adjustments(log_socket_errors=value))["log_socket_errors"]
        is value
    )


SERVE_SCRIPT = """
from maitre import serve

def app(environ, start_response):
    body = environ["SERVER_PORT"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

serve(app, listen="127.0.0.1:0 127.0.0.1:0", threads=1)
"""


@maitre_only("waitress's serve() logs nothing unless logging is set to INFO")
def test_serve_sets_up_logging_one_line_per_socket():
    """serve() with no logging configured: logging.basicConfig() and a
    'Serving on' line per socket on the logger 'maitre'; each socket serves."""
    proc = ServerProcess([sys.executable, "-c", SERVE_SCRIPT])
    try:
        lines = proc.wait_for_lines("Serving on", 2)
        ports = []
        for line in lines:
            prefix = f" INFO maitre: Serving on http://{HOST}:"
            assert prefix in line, line
            ports.append(int(line[line.index(prefix) + len(prefix) :]))
        assert ports[0] != ports[1]
        for port in ports:
            with RawConnection(port) as conn:
                assert conn.request(get("/")).body == str(port).encode()
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
