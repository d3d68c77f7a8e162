"""What a new user trips over: PEP 3333's ``wsgi.multiprocess`` with workers, the body
bytes of the server's own error pages, one log line per signal in a single process,
TLS handshake failures counted by reason and said in plain words at most once a
minute (X.509 v1 client certificates named as such), a queue warning that does not
repeat every second, the version of a 431, and binary bytes on a TLS port.

Real sockets and processes throughout; the certificates are made at test time.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from helpers import (
    HOST,
    RawConnection,
    ServerProcess,
    free_port,
    get,
    maitre_only,
    wait_for,
)

pytestmark = [maitre_only("maitre's own behaviour"), pytest.mark.timeout(120)]

trustme = pytest.importorskip("trustme")


def flag_app(environ, start_response):
    body = repr(
        (environ["wsgi.multiprocess"], environ["wsgi.multithread"], os.getpid())
    ).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def write_app(tmp_path, body: str) -> None:
    (tmp_path / "uxapp.py").write_text(body)


def cli(tmp_path, *flags, app="uxapp:app") -> tuple[ServerProcess, int]:
    port = free_port()
    proc = ServerProcess(
        [sys.executable, "-m", "maitre", f"--listen={HOST}:{port}", *flags, app],
        cwd=tmp_path,
        timeout=20,
    )
    return proc, port


def http_get(port, path="/"):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- 1. wsgi.multiprocess ------------------------------------------------------------

FLAG_APP = (
    "import os\n"
    "def app(environ, start_response):\n"
    "    body = repr((environ['wsgi.multiprocess'], os.getpid())).encode()\n"
    "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
    "    return [body]\n"
)


@pytest.mark.parametrize("workers", [1, 2])
def test_wsgi_multiprocess_says_whether_workers_run(tmp_path, workers):
    """PEP 3333: ``wsgi.multiprocess`` is true when the application may run in
    several processes at once (gunicorn says True with workers)."""
    write_app(tmp_path, FLAG_APP)
    proc, port = cli(tmp_path, f"--workers={workers}")
    try:
        proc.wait_for_line("Serving on")
        if workers > 1:
            proc.wait_for_line(f"Ready with {workers} worker(s)")
        assert wait_for(lambda: _try_get(port) is not None, timeout=10)
        status, body = http_get(port)
        assert status == 200
        multiprocess, pid = eval(body)  # noqa: S307 (our own repr)
        assert multiprocess is (workers > 1), body
        assert pid != proc.proc.pid or workers == 1
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()


def _try_get(port):
    try:
        return http_get(port)
    except OSError:
        return None


def test_wsgi_multiprocess_false_in_one_process(serve_app):
    served = serve_app(flag_app)
    with served.connect() as conn:
        resp = conn.request(get("/"))
    multiprocess, multithread, _ = eval(resp.body)  # noqa: S307
    assert (multiprocess, multithread) == (False, True)


# -- 2. body bytes of the server's own pages -----------------------------------------


def raising_app(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def _log_lines(path, count):
    assert wait_for(
        lambda: path.exists() and len(path.read_text().splitlines()) >= count,
        timeout=5,
    ), path.read_text() if path.exists() else "no log"
    return path.read_text().splitlines()


def test_500_page_body_bytes_are_logged_and_counted(serve_app, tmp_path):
    """An application that raises gets maitre's 500 page: its access log line has
    the body bytes sent (%(b)s and %(B)s), and the byte counters count them."""
    log = tmp_path / "access.log"
    served = serve_app(
        raising_app,
        access_log=str(log),
        access_log_format="%(s)s %(b)s %(B)s",
    )
    before = served.server.stats()["Bytes Written"]
    with served.connect() as conn:
        conn.send(get("/boom"))
        resp = conn.read_response()
    assert resp.status == 500
    body = len(resp.body)
    assert body > 50
    (line,) = _log_lines(log, 1)
    assert line == f"500 {body} {body}", line
    assert wait_for(
        lambda: served.server.stats()["Bytes Written"] - before >= body, timeout=5
    )


def test_engine_error_pages_body_bytes_are_logged(serve_app, tmp_path):
    """The engine's own 4xx (a 431 here) logs the body bytes it sent as well."""
    log = tmp_path / "access.log"
    served = serve_app(
        raising_app,
        access_log=str(log),
        access_log_format="%(s)s %(b)s",
        max_request_header_size=1024,
    )
    with served.connect() as conn:
        conn.send(get("/", headers=b"X-Big: " + b"a" * 2000 + b"\r\n"))
        resp = conn.read_response()
    assert resp.status == 431
    (line,) = _log_lines(log, 1)
    assert line == f"431 {len(resp.body)}", line


# -- 13 (c). the version of a 431 ----------------------------------------------------


def test_431_answers_in_the_request_version(serve_app):
    served = serve_app(raising_app, max_request_header_size=1024)
    with served.connect() as conn:
        conn.send(get("/", headers=b"X-Big: " + b"a" * 2000 + b"\r\n"))
        line = conn.read_until(b"\r\n")
    assert line.startswith(b"HTTP/1.1 431 "), line
    with served.connect() as conn:
        conn.send(b"GET / HTTP/1.0\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        line = conn.read_until(b"\r\n")
    assert line.startswith(b"HTTP/1.0 431 "), line


# -- 5. signals in a single process --------------------------------------------------

OK_APP = (
    "def app(environ, start_response):\n"
    "    start_response('200 OK', [('Content-Length', '2')])\n"
    "    return [b'ok']\n"
)


def test_single_process_says_what_each_signal_did(tmp_path):
    write_app(tmp_path, OK_APP)
    proc, port = cli(tmp_path)
    try:
        proc.wait_for_line("Serving on")
        for sig, text in (
            (signal.SIGHUP, "SIGHUP: no TLS certificates to reload"),
            (signal.SIGTTIN, "SIGTTIN ignored"),
            (signal.SIGTTOU, "SIGTTOU ignored"),
            (signal.SIGUSR1, "SIGUSR1: no access log file to reopen"),
        ):
            os.kill(proc.proc.pid, sig)
            line = proc.wait_for_line(text)
            if sig in (signal.SIGTTIN, signal.SIGTTOU, signal.SIGHUP):
                assert "--workers" in line, line
        assert http_get(port) == (200, b"ok")
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr


# -- TLS: certificates -----------------------------------------------------------------


def handshake(port, ctx):
    raw = socket.create_connection((HOST, port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def metrics(served) -> str:
    host, port = served.server.metrics_address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def failures(text: str) -> dict:
    return {
        m[1]: int(m[2])
        for m in re.finditer(
            r'^maitre_tls_handshake_failures_total\{reason="(\w+)"\} (\d+)$',
            text,
            re.M,
        )
    }


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))

    def at(self, level, containing=""):
        return [m for lv, m in self.records if lv == level and containing in m]


@pytest.fixture
def maitre_log():
    log = logging.getLogger("maitre")
    handler = Records()
    level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


# -- 6. handshake failures: counted, said once ---------------------------------------


def test_handshake_failures_are_counted_and_said_once(serve_app, pki, maitre_log):
    """Ten clients with no protocol version in common (TLS 1.2 against a TLS 1.3
    only server): one INFO line in plain words, ten at DEBUG, and the metrics count
    ten under reason="no_shared_version"."""
    served = serve_app(
        raising_app,
        metrics_listen=f"{HOST}:0",
        **pki.settings(ssl_min_version="1.3"),
    )
    ctx = pki.context(maximum_version=ssl.TLSVersion.TLSv1_2)
    for _ in range(10):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(served.port, ctx)
    assert wait_for(
        lambda: failures(metrics(served)).get("no_shared_version") == 10, timeout=5
    ), metrics(served)
    counted = failures(metrics(served))
    assert set(counted) >= {"no_shared_version", "no_shared_cipher", "not_tls"}
    assert sum(counted.values()) == 10, counted
    assert wait_for(
        lambda: len(maitre_log.at(logging.DEBUG, "TLS handshake")) == 10, timeout=5
    )
    info = maitre_log.at(logging.INFO, "TLS handshake")
    assert len(info) == 1, info
    assert "no TLS version the server accepts" in info[0], info
    assert "Tls" not in info[0] and "Extension" not in info[0], info
    # A good client is still served.
    assert handshake(served.port, pki.context()).startswith(b"HTTP/1.1 200")


def test_log_socket_errors_off_counts_but_says_nothing(serve_app, pki, maitre_log):
    served = serve_app(
        raising_app,
        metrics_listen=f"{HOST}:0",
        log_socket_errors=False,
        **pki.settings(ssl_min_version="1.3"),
    )
    ctx = pki.context(maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(served.port, ctx)
    assert wait_for(
        lambda: failures(metrics(served)).get("no_shared_version") == 1, timeout=5
    )
    time.sleep(0.2)
    assert not [m for _, m in maitre_log.records if "TLS handshake" in m]


# -- 13 (d). binary bytes on a TLS port ----------------------------------------------


def test_binary_bytes_on_a_tls_port_are_not_called_plain_http(
    serve_app, pki, maitre_log
):
    served = serve_app(raising_app, metrics_listen=f"{HOST}:0", **pki.settings())
    with RawConnection(served.port, timeout=10) as conn:
        conn.send(b"\x80\x2e\x01\x02\xff\x00binary")
        data = conn.read_until_close()
    assert data == b"", data  # nothing an HTTP client would read
    assert wait_for(lambda: maitre_log.at(logging.INFO, "TLS handshake"), timeout=5)
    (line,) = maitre_log.at(logging.INFO, "TLS handshake")
    assert "not a TLS handshake" in line, line
    assert "plain HTTP" not in " ".join(m for _, m in maitre_log.records)
    assert failures(metrics(served))["not_tls"] == 1
    # An HTTP request line is still told it came to an HTTPS port.
    with RawConnection(served.port, timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = conn.read_until_close()
    assert data.startswith(b"HTTP/1.0 400 "), data
    assert b"HTTPS port" in data


# -- 7. X.509 v1 client certificates -------------------------------------------------

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command"
)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def client_certs(tmp_path):
    """A CA and two client certificates made with the openssl command: v1 (``x509
    -req`` without extensions, as OpenSSL 3.0 makes them) and v3 (the command
    docs/https.md gives)."""
    d = tmp_path / "openssl"
    d.mkdir()
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-subj", "/CN=ux test CA", "-days", "2", cwd=d,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
        "-out", "client.csr", "-subj", "/CN=alice", cwd=d,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "v1.pem", "-days", "2", cwd=d,
    )  # fmt: skip
    (d / "client.ext").write_text(
        "basicConstraints = CA:FALSE\n"
        "keyUsage = digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = clientAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "v3.pem", "-days", "2",
        "-extfile", "client.ext", cwd=d,
    )  # fmt: skip
    return d


@needs_openssl
def test_x509_v1_client_certificate_is_named_in_the_log(serve_app, pki, maitre_log):
    from cryptography import x509

    d = client_certs(pki.dir)
    v1 = x509.load_pem_x509_certificate((d / "v1.pem").read_bytes())
    assert v1.version == x509.Version.v1
    served = serve_app(
        raising_app,
        metrics_listen=f"{HOST}:0",
        **pki.settings(
            ssl_ca_certificate=str(d / "ca.pem"), ssl_verify_client="required"
        ),
    )
    ctx = pki.context()
    ctx.load_cert_chain(str(d / "v1.pem"), str(d / "client.key"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(served.port, ctx)
    assert wait_for(lambda: maitre_log.at(logging.INFO, "TLS handshake"), timeout=5)
    (line,) = maitre_log.at(logging.INFO, "TLS handshake")
    assert "client certificate is X.509 v1; only v3 is accepted" in line, line
    assert failures(metrics(served))["bad_certificate"] == 1
    # The v3 certificate the docs' command makes is accepted.
    ctx = pki.context()
    ctx.load_cert_chain(str(d / "v3.pem"), str(d / "client.key"))
    assert handshake(served.port, ctx).startswith(b"HTTP/1.1 200")


# -- 8. the queue warning --------------------------------------------------------------


def test_queue_warning_once_while_backed_up_and_once_when_cleared(serve_app):
    """One request waits three seconds for the only thread: one "Task queue depth"
    line (not one a second), and one line when the queue clears."""
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/sleep":
            release.wait(10)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    log = logging.getLogger("maitre.queue")
    handler = Records()
    level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        served = serve_app(app, threads=1)
        first, second = served.connect(), served.connect()
        try:
            first.send(get("/sleep"))
            time.sleep(0.2)
            second.send(get("/"))
            time.sleep(3.5)
            release.set()
            assert first.read_response().status == 200
            assert second.read_response().status == 200
        finally:
            release.set()
            first.close()
            second.close()
        assert wait_for(lambda: handler.at(logging.INFO, "cleared"), timeout=5)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    warnings = handler.at(logging.WARNING)
    assert warnings == ["Task queue depth is 1"], warnings
    (cleared,) = handler.at(logging.INFO)
    assert cleared.startswith("Task queue cleared after "), cleared
    assert "at most 1 waiting" in cleared, cleared


def test_a_tls_scan_costs_two_log_lines(serve_app, pki, maitre_log):
    """A scanner's hundreds of refused handshakes (old protocol versions, cipher
    suites one by one): at most two INFO lines (the first failure, then the minute's
    summary, which comes after this test), every failure counted by reason."""
    sslyze = pytest.importorskip("sslyze")
    served = serve_app(raising_app, metrics_listen=f"{HOST}:0", **pki.settings())
    location = sslyze.ServerNetworkLocation("localhost", served.port, ip_address=HOST)
    commands = {
        sslyze.ScanCommand.SSL_2_0_CIPHER_SUITES,
        sslyze.ScanCommand.SSL_3_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_1_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_2_CIPHER_SUITES,
    }
    scanner = sslyze.Scanner()
    scanner.queue_scans(
        [sslyze.ServerScanRequest(server_location=location, scan_commands=commands)]
    )
    [result] = list(scanner.get_results())
    assert result.scan_status == sslyze.ServerScanStatusEnum.COMPLETED
    time.sleep(0.5)
    counted = failures(metrics(served))
    total = sum(counted.values())
    debug = maitre_log.at(logging.DEBUG, "TLS handshake")
    info = maitre_log.at(logging.INFO, "TLS handshake")
    print(f"{total} failed handshakes {counted}; {len(info)} INFO line(s)")
    assert total >= 50, counted
    assert counted["no_shared_version"] > 0 and counted["no_shared_cipher"] > 0
    assert len(debug) == total
    assert len(info) == 1, info


def test_single_process_sighup_with_tls_says_the_certificates_were_reloaded(
    tmp_path, pki
):
    write_app(tmp_path, OK_APP)
    proc, port = cli(
        tmp_path,
        f"--ssl-certificate={pki.cert_file}",
        f"--ssl-private-key={pki.key_file}",
    )
    try:
        proc.wait_for_line("Serving on https://")
        os.kill(proc.proc.pid, signal.SIGHUP)
        proc.wait_for_line("TLS certificates reloaded")
        assert handshake(port, pki.context()).startswith(b"HTTP/1.1 200")
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()
    assert "no TLS certificates to reload" not in proc.stderr, proc.stderr
