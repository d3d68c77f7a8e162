"""The PROXY protocol (``proxy_protocol``, ``proxy_protocol_from``): real sockets
against a real server on 127.0.0.1, the balancer played by the test.

The server is told that 127.0.0.1 is the balancer; a client that binds its side to
127.0.0.2 plays a peer outside the list. A header's source address becomes
REMOTE_ADDR/REMOTE_PORT (and the access log's %h) for the whole connection; a listed
peer without a valid header is closed unserved; a header from another peer is refused.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import threading
import time

import pytest
from helpers import (
    HOST,
    SOCKET_TIMEOUT,
    LogCapture,
    RawConnection,
    create_server,
    free_port,
    get,
    maitre_only,
    stop_server,
    wait_for,
)

pytestmark = maitre_only("waitress has no PROXY protocol")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: an address outside ``proxy_protocol_from`` for the "foreign peer" tests (the whole
#: 127.0.0.0/8 is loopback on Linux)
OTHER = "127.0.0.2"

served = []


def app(environ, start_response):
    """Answers with the peer the application sees, and counts the requests served."""
    served.append(environ["PATH_INFO"])
    body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(autouse=True)
def _forget_served():
    served.clear()


def v1(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 80) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str | None = None, sport: int = 0, dst: str | None = None, dport=80):
    """A v2 PROXY header for ``src``, or a LOCAL one without it."""
    if src is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        family, fam = socket.AF_INET6, 0x21
        dst = dst or "::1"
    else:
        family, fam = socket.AF_INET, 0x11
        dst = dst or "127.0.0.1"
    block = (
        socket.inet_pton(family, src)
        + socket.inet_pton(family, dst)
        + struct.pack("!HH", sport, dport)
    )
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block


class From(RawConnection):
    """A RawConnection from ``source`` (a loopback address other than 127.0.0.1)."""

    def __init__(self, port: int, source: str = OTHER):
        self.sock = socket.create_connection(
            (HOST, port), timeout=SOCKET_TIMEOUT, source_address=(source, 0)
        )
        self.buf = bytearray()
        self.eof = False


class Unix(RawConnection):
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(SOCKET_TIMEOUT)
        self.sock.connect(path)
        self.buf = bytearray()
        self.eof = False


def proxied(serve_app, version="auto", **settings):
    settings.setdefault("proxy_protocol_from", "127.0.0.1")
    return serve_app(app, proxy_protocol=version, **settings)


def peer_of(resp) -> str:
    assert resp.status == 200, (resp.status, resp.body)
    return resp.body.decode()


def assert_closed_unserved(conn: RawConnection):
    """The server closed the connection without sending a byte, and the
    application was not called."""
    got = conn.read_until_close()
    assert got == b"", got
    assert served == []


# ------------------------------------------------------------ good headers


def test_v1_tcp4(serve_app):
    srv = proxied(serve_app, "v1")
    with srv.connect() as conn:
        conn.send(v1("203.0.113.7", 40000) + get("/a"))
        assert peer_of(conn.read_response()) == "203.0.113.7 40000"


def test_v1_tcp6(serve_app):
    srv = proxied(serve_app, "v1")
    with srv.connect() as conn:
        conn.send(v1("2001:db8::7", 41000, "2001:db8::1") + get("/a"))
        assert peer_of(conn.read_response()) == "2001:db8::7 41000"


@pytest.mark.parametrize(
    "src,sport",
    [("198.51.100.9", 5555), ("2001:db8:1::99", 6666)],
    ids=["ipv4", "ipv6"],
)
def test_v2_proxy(serve_app, src, sport):
    srv = proxied(serve_app, "v2")
    with srv.connect() as conn:
        conn.send(v2(src, sport) + get("/a"))
        assert peer_of(conn.read_response()) == f"{src} {sport}"


def test_v2_mapped_ipv4_source_is_served_as_ipv4(serve_app):
    """A dual-stack balancer relays an IPv4 client as ::ffff:a.b.c.d."""
    srv = proxied(serve_app, "v2")
    with srv.connect() as conn:
        conn.send(v2("::ffff:192.0.2.44", 7777) + get("/a"))
        assert peer_of(conn.read_response()) == "192.0.2.44 7777"


def test_v2_local_keeps_the_socket_address(serve_app):
    """A v2 LOCAL command (the balancer's health check) is served as itself."""
    srv = proxied(serve_app, "v2")
    with srv.connect() as conn:
        conn.send(v2() + get("/healthz"))
        assert peer_of(conn.read_response()) == f"127.0.0.1 {conn.local_port}"


def test_keep_alive_keeps_the_address(serve_app):
    """Every request of the connection is the header's client's."""
    srv = proxied(serve_app, "v2")
    with srv.connect() as conn:
        conn.send(v2("192.0.2.1", 1234) + get("/1"))
        assert peer_of(conn.read_response()) == "192.0.2.1 1234"
        conn.send(get("/2"))
        assert peer_of(conn.read_response()) == "192.0.2.1 1234"
        # Pipelined too.
        conn.send(get("/3") + get("/4"))
        assert peer_of(conn.read_response()) == "192.0.2.1 1234"
        assert peer_of(conn.read_response()) == "192.0.2.1 1234"
    assert served == ["/1", "/2", "/3", "/4"]


@pytest.mark.parametrize("version,header", [("v1", "v1"), ("v2", "v2")])
def test_header_split_across_sends(serve_app, version, header):
    """The header may arrive in pieces, the request right behind its last one."""
    srv = proxied(serve_app, version)
    data = v1("203.0.113.50", 999) if header == "v1" else v2("2001:db8::50", 999)
    with srv.connect() as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (data[:1], data[1:5], data[5:14], data[14:-1]):
            conn.send(piece)
            time.sleep(0.05)
        conn.send(data[-1:] + get("/split")[:10])
        time.sleep(0.05)
        conn.send(get("/split")[10:])
        want = "203.0.113.50 999" if header == "v1" else "2001:db8::50 999"
        assert peer_of(conn.read_response()) == want


def test_auto_accepts_both(serve_app):
    srv = proxied(serve_app, "auto")
    with srv.connect() as conn:
        conn.send(v1("192.0.2.10", 10) + get("/v1"))
        assert peer_of(conn.read_response()) == "192.0.2.10 10"
    with srv.connect() as conn:
        conn.send(v2("192.0.2.20", 20) + get("/v2"))
        assert peer_of(conn.read_response()) == "192.0.2.20 20"


def test_networks_in_the_list(serve_app):
    """proxy_protocol_from takes networks, and a list of them."""
    srv = proxied(serve_app, "v1", proxy_protocol_from="10.0.0.0/8, 127.0.0.0/30")
    with srv.connect() as conn:
        conn.send(v1("192.0.2.3", 3) + get("/"))
        assert peer_of(conn.read_response()) == "192.0.2.3 3"


# -------------------------------------------------- a listed peer without a header


@pytest.mark.parametrize(
    "version,data,why",
    [
        ("v1", get("/plain"), "did not start with one"),
        ("v2", get("/plain"), "did not start with one"),
        ("auto", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "did not start"),
        ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n" + get("/x"), "four fields"),
        ("v1", b"PROXY TCP4 010.0.0.1 5.6.7.8 1 2\r\n" + get("/x"), "address"),
        ("v1", b"PROXY TCP4 " + b"1" * 120, "PROXY v1"),
        ("v1", v2("192.0.2.1", 1) + get("/x"), "only v1 is accepted"),
        ("v2", v1("192.0.2.1", 1) + get("/x"), "only v2 is accepted"),
        ("v2", V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version 3"),
    ],
    ids=[
        "http-v1",
        "http-v2",
        "tls-auto",
        "v1-fields",
        "v1-leading-zero",
        "v1-too-long",
        "v2-to-v1",
        "v1-to-v2",
        "v2-version",
    ],
)
def test_bad_header_from_a_listed_peer(serve_app, version, data, why):
    srv = proxied(serve_app, version)
    with LogCapture("maitre") as log:
        with srv.connect() as conn:
            conn.send(data)
            assert_closed_unserved(conn)
        assert wait_for(lambda: log.messages("no valid PROXY protocol header"), 5)
    (line,) = log.messages("no valid PROXY protocol header")
    assert "127.0.0.1" in line and why in line, line


def test_end_of_stream_in_the_middle_of_a_header(serve_app):
    srv = proxied(serve_app, "v1")
    with LogCapture("maitre") as log:
        with srv.connect() as conn:
            conn.send(b"PROXY TCP4 192.0.2.1 ")
            conn.shutdown_write()
            assert_closed_unserved(conn)
        assert wait_for(lambda: log.messages("in the middle of it"), 5)


def test_silent_listed_peer_is_closed_at_channel_timeout(serve_app):
    srv = proxied(serve_app, "v2", channel_timeout=1)
    with LogCapture("maitre") as log:
        with srv.connect() as conn:
            started = time.monotonic()
            assert conn.is_closed(timeout=5)
            assert time.monotonic() - started < 4
        assert served == []
        assert wait_for(lambda: log.messages("PROXY protocol header incomplete"), 5)


# ----------------------------------------------------------- peers not in the list


def test_plain_http_from_another_peer_is_served(serve_app):
    srv = proxied(serve_app, "v2")
    with From(srv.port) as conn:
        resp = conn.request(get("/direct"))
        assert peer_of(resp) == f"{OTHER} {conn.local_port}"


@pytest.mark.parametrize("header", ["v1", "v2"])
def test_header_from_another_peer_is_refused(serve_app, header):
    """Never trusted as an address: refused with a 400 and a line that says why."""
    srv = proxied(serve_app, "auto")
    data = v1("192.0.2.66", 66) if header == "v1" else v2("192.0.2.66", 66)
    with LogCapture("maitre") as log:
        with From(srv.port) as conn:
            conn.send(data + get("/spoofed"))
            resp = conn.read_response()
            assert resp.status == 400
            assert b"proxy_protocol_from" in resp.body
            assert conn.is_closed()
        assert served == []
        assert wait_for(lambda: log.messages("not in proxy_protocol_from"), 5)
    (line,) = log.messages("not in proxy_protocol_from")
    assert OTHER in line and "192.0.2.66" not in line, line


def test_header_with_the_setting_off_is_a_bad_request(serve_app):
    """With the protocol off, a header is just bytes that are not HTTP (as in
    waitress): a 400, and the address in it is never used."""
    srv = serve_app(app)
    with srv.connect() as conn:
        conn.send(v1("192.0.2.66", 66) + get("/x"))
        assert conn.read_response().status == 400
    assert served == []


# ------------------------------------------------------------------------- TLS


def tls_request(sock: socket.socket, pki, path="/tls") -> str:
    with pki.context().wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(get(path))
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


def test_header_before_the_tls_handshake(serve_app, pki):
    srv = proxied(serve_app, "v2", **pki.settings())
    sock = socket.create_connection((HOST, srv.port), timeout=SOCKET_TIMEOUT)
    sock.sendall(v2("203.0.113.99", 4443))
    assert tls_request(sock, pki) == "203.0.113.99 4443"


def test_tls_without_header_from_a_listed_peer_is_closed(serve_app, pki):
    srv = proxied(serve_app, "v1", **pki.settings())
    with LogCapture("maitre") as log:
        sock = socket.create_connection((HOST, srv.port), timeout=SOCKET_TIMEOUT)
        with pytest.raises((ssl.SSLError, OSError)):
            tls_request(sock, pki)
        assert served == []
        assert wait_for(lambda: log.messages("no valid PROXY protocol header"), 5)


def test_tls_from_another_peer_is_served_and_its_header_refused(serve_app, pki):
    srv = proxied(serve_app, "auto", **pki.settings())
    sock = socket.create_connection(
        (HOST, srv.port), timeout=SOCKET_TIMEOUT, source_address=(OTHER, 0)
    )
    port = sock.getsockname()[1]
    assert tls_request(sock, pki) == f"{OTHER} {port}"
    served.clear()
    with LogCapture("maitre") as log:
        for header in (v1("192.0.2.1", 1), v2("192.0.2.1", 1)):
            with From(srv.port) as conn:
                conn.send(header)
                assert_closed_unserved(conn)
        assert wait_for(lambda: len(log.messages("not in proxy_protocol_from")) == 2, 5)


# ----------------------------------------------------------------- Unix sockets


@pytest.fixture
def sock_path(tmp_path):
    path = tmp_path / "pp.sock"
    if len(str(path)) > 100:  # sun_path is ~108 bytes
        pytest.skip(f"temporary path too long for a Unix socket: {path}")
    return str(path)


@pytest.fixture
def serve_unix(sock_path):
    """``serve_unix(**settings)``: a server on the Unix socket ``sock_path``."""
    started = []

    def start(**settings):
        server = create_server(app, unix_socket=sock_path, threads=2, **settings)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        stop_server(server, thread)


def test_unix_socket_listed_as_unix(serve_unix, sock_path):
    """'unix' in proxy_protocol_from: a Unix-socket peer must send the header."""
    serve_unix(proxy_protocol="auto", proxy_protocol_from="unix")
    with Unix(sock_path) as conn:
        conn.send(v1("192.0.2.200", 2000) + get("/unix"))
        assert peer_of(conn.read_response()) == "192.0.2.200 2000"
    with Unix(sock_path) as conn:
        conn.send(v2() + get("/unix-local"))
        # LOCAL: the socket's peer, which over a Unix socket has no address.
        assert peer_of(conn.read_response()) == "localhost None"
    with Unix(sock_path) as conn:
        conn.send(get("/no-header"))
        assert conn.read_until_close() == b""
    assert served == ["/unix", "/unix-local"]


def test_unix_socket_not_listed(serve_unix, sock_path):
    """Without 'unix', a Unix-socket peer is served as usual (`*` is IP only)."""
    serve_unix(proxy_protocol="auto", proxy_protocol_from="*")
    with Unix(sock_path) as conn:
        resp = conn.request(get("/u"))
        assert peer_of(resp) == "localhost None"


# ---------------------------------------------------------- logs and composition


def test_access_log_shows_the_header_address(serve_app, access_records):
    srv = proxied(
        serve_app, "v1", access_log="logging", access_log_format="%(h)s %(r)s"
    )
    with srv.connect() as conn:
        conn.send(v1("198.51.100.23", 23) + get("/logged"))
        conn.read_response()
    assert wait_for(lambda: access_records, 5)
    assert access_records.messages() == ["198.51.100.23 GET /logged HTTP/1.1"]


def forwarded_app(environ, start_response):
    body = f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def test_trusted_proxy_is_checked_against_the_header_address(serve_app):
    """The PROXY header sets the peer first; trusted_proxy is then compared with that
    address: X-Forwarded-For is believed only when the header's source is the
    trusted proxy."""
    srv = serve_app(
        forwarded_app,
        proxy_protocol="auto",
        proxy_protocol_from="127.0.0.1",
        trusted_proxy="10.1.1.1",
        trusted_proxy_headers="x-forwarded-for x-forwarded-proto",
    )
    xff = b"X-Forwarded-For: 192.0.2.77\r\nX-Forwarded-Proto: https\r\n"
    with srv.connect() as conn:
        # Relayed from the L7 proxy 10.1.1.1: its forwarded headers are believed.
        conn.send(v1("10.1.1.1", 1) + get("/", headers=xff))
        assert peer_of(conn.read_response()) == "192.0.2.77 https"
    with srv.connect() as conn:
        # A client straight through the balancer: its forged headers are not.
        conn.send(v1("203.0.113.5", 1) + get("/", headers=xff))
        assert peer_of(conn.read_response()) == "203.0.113.5 http"
    with srv.connect() as conn:
        # The balancer's own address (the socket peer) is not what trusted_proxy sees.
        conn.send(v2() + get("/", headers=xff))
        assert peer_of(conn.read_response()) == "127.0.0.1 http"


def test_metrics_count_refusals(serve_app):
    port = free_port()
    srv = proxied(serve_app, "v2", metrics_listen=f"{HOST}:{port}")
    with srv.connect() as conn:
        conn.send(get("/no-header"))
        conn.read_until_close()
    with From(srv.port) as conn:
        conn.send(v2("192.0.2.1", 1) + get("/x"))
        conn.read_until_close()

    def figures():
        with RawConnection(port) as m:
            text = m.request(get("/metrics")).body.decode()
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("maitre_proxy_")
        }

    assert wait_for(
        lambda: (
            figures().get("maitre_proxy_header_errors_total") == 1
            and figures().get("maitre_proxy_headers_untrusted_total") == 1
        ),
        5,
    ), figures()


# ------------------------------------------------------------- start-up errors


def test_on_without_from_is_a_start_up_error():
    from maitre import create_server

    with pytest.raises(ValueError, match="proxy_protocol_from"):
        create_server(app, host=HOST, port=0, proxy_protocol="v2")


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"proxy_protocol": "v3"}, "proxy_protocol"),
        (
            {"proxy_protocol": "v1", "proxy_protocol_from": "10.0.0.0/33"},
            "proxy_protocol_from",
        ),
        ({"proxy_protocol_from": "127.0.0.1"}, "proxy_protocol_from"),
    ],
)
def test_bad_values_are_start_up_errors(settings, message):
    from maitre.adjustments import Adjustments

    with pytest.raises(ValueError, match=message):
        Adjustments(host=HOST, port=0, **settings)


def test_on_without_from_is_a_usage_error_on_the_command_line(tmp_path):
    import subprocess

    (tmp_path / "ppapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'']\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "maitre", "--proxy-protocol=v2", "ppapp:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert "proxy_protocol_from" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_command_line_flags(tmp_path):
    """--proxy-protocol and --proxy-protocol-from reach the server (the forms the
    HAProxy deployment uses)."""
    from helpers import ServerProcess

    (tmp_path / "ppapp.py").write_text(
        "def app(environ, start_response):\n"
        "    body = environ['REMOTE_ADDR'].encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )
    port = free_port()
    proc = ServerProcess(
        [
            sys.executable,
            "-m",
            "maitre",
            f"--listen={HOST}:{port}",
            "--proxy-protocol=v2",
            "--proxy-protocol-from=127.0.0.1",
            "ppapp:app",
        ],
        cwd=tmp_path,
    )
    try:
        assert wait_for(lambda: _connects(port), 10)
        with RawConnection(port) as conn:
            conn.send(v2("192.0.2.5", 5) + get("/"))
            assert conn.read_response().body == b"192.0.2.5"
    finally:
        proc.stop()


def _connects(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_many_connections_at_once(serve_app):
    """Headers from many connections interleaved, each keeps its own address."""
    srv = proxied(serve_app, "auto")
    results = {}

    def one(i):
        with srv.connect() as conn:
            header = v1(f"192.0.2.{i}", 1000 + i) if i % 2 else v2(f"192.0.2.{i}", i)
            conn.send(header[:7])
            time.sleep(0.02)
            conn.send(header[7:] + get(f"/{i}"))
            results[i] = conn.read_response().body.decode()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {
        i: f"192.0.2.{i} {1000 + i if i % 2 else i}" for i in range(1, 21)
    }
