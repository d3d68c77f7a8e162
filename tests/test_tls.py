"""HTTPS: TLS in the engine, with certificates made at test time (trustme) and real
clients (``ssl``/``http.client``, ``requests``, ``curl``, ``openssl s_client``, the
``sslyze`` scanner).

waitress has no TLS: the whole module is maitre-only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
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
from apps import hello_app
from helpers import (
    HOST,
    RawConnection,
    ServerProcess,
    create_server,
    free_port,
    maitre_only,
    stop_server,
    wait_for,
)

trustme = pytest.importorskip("trustme")
from cryptography import x509  # noqa: E402  (comes with trustme)
from cryptography.hazmat.primitives import serialization  # noqa: E402

pytestmark = [maitre_only("waitress has no TLS"), pytest.mark.timeout(300)]

MiB = 1 << 20


# -- certificates --------------------------------------------------------------------


def pem_of(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def environ_app(environ, start_response):
    """Answers the environ's str values as JSON."""
    body = json.dumps(
        {k: v for k, v in environ.items() if isinstance(v, str)}, sort_keys=True
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def https_get(port, ctx, path="/", host="localhost"):
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tls_socket(port, ctx, host="localhost"):
    raw = socket.create_connection((HOST, port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)


def read_response(sock_file):
    """One HTTP/1.1 response with a Content-Length from a file over a socket."""
    status = sock_file.readline()
    headers = {}
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b""):
            break
        name, value = line.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = sock_file.read(int(headers.get("content-length", 0)))
    return status, headers, body


def command(name: str) -> str:
    """Path of a command-line client, installed with apt-get (Debian package of the
    same name) when missing, as tests/test_nginx.py does for nginx."""
    found = shutil.which(name)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{name} is not installed and cannot be installed here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (
        ["install", "-y", "-q", name],
        ["update", "-q"],
        ["install", "-y", name],
    ):
        subprocess.run(
            ["apt-get", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=600,
        )
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(f"{name} could not be installed")


# -- serving -------------------------------------------------------------------------


def test_https_request_and_mod_ssl_environ(serve_app, pki):
    served = serve_app(environ_app, **pki.settings())
    status, body = https_get(served.port, pki.client_context())
    assert status == 200
    env = json.loads(body)
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == "TLSv1.3"
    assert env["SSL_CIPHER"].startswith("TLS_")
    assert env["SSL_TLS_SNI"] == "localhost"
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_CERT" not in env


def test_tls12_reports_openssl_cipher_names(serve_app, pki):
    served = serve_app(environ_app, **pki.settings())
    ctx = pki.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    status, body = https_get(served.port, ctx)
    env = json.loads(body)
    assert env["SSL_PROTOCOL"] == "TLSv1.2"
    # The ECDSA certificate of trustme: an ECDHE-ECDSA suite, named as OpenSSL does.
    assert env["SSL_CIPHER"].startswith("ECDHE-ECDSA-"), env["SSL_CIPHER"]
    with tls_socket(served.port, ctx) as s:
        assert s.cipher()[0] == env["SSL_CIPHER"]


def legacy_context(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # OpenSSL 3 refuses the old versions by itself below security level 0.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["1.0", "1.1"]
)
def test_old_protocols_are_refused_by_the_server(serve_app, pki, version):
    served = serve_app(hello_app, **pki.settings())
    with pytest.raises(ssl.SSLError) as info:
        with tls_socket(served.port, legacy_context(version)):
            pass
    # The server said no (an alert), rather than the client refusing to try.
    text = str(info.value).upper()
    assert "ALERT" in text or "PROTOCOL_VERSION" in text, text
    # And the server is fine.
    assert https_get(served.port, pki.client_context())[0] == 200


def test_min_version_13_refuses_12(serve_app, pki):
    served = serve_app(hello_app, **pki.settings(ssl_min_version="1.3"))
    ctx = pki.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        https_get(served.port, ctx)
    assert https_get(served.port, pki.client_context())[0] == 200


def test_requests_with_the_ca(serve_app, pki):
    requests = pytest.importorskip("requests")
    served = serve_app(hello_app, **pki.settings())
    resp = requests.get(f"https://localhost:{served.port}/", verify=pki.ca_file)
    assert resp.status_code == 200
    assert resp.content == b"Hello, world!"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{served.port}/")  # not the system's CA


@pytest.mark.parametrize("version", ["--tlsv1.2", "--tlsv1.3"])
def test_curl(serve_app, pki, version):
    served = serve_app(hello_app, **pki.settings())
    extra = ["--tls-max", "1.2"] if version == "--tlsv1.2" else []
    out = subprocess.run(
        [
            command("curl"),
            "-sS",
            "--cacert",
            pki.ca_file,
            version,
            *extra,
            "-w",
            "\n%{http_version}",
            f"https://localhost:{served.port}/",
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Hello, world!\n1.1"


def s_client(port, *args, data=b""):
    return subprocess.run(
        [
            command("openssl"),
            "s_client",
            "-connect",
            f"{HOST}:{port}",
            "-servername",
            "localhost",
            "-ign_eof",
            *args,
        ],
        input=data,
        capture_output=True,
        timeout=20,
    )


def test_openssl_s_client_versions_and_alpn(serve_app, pki):
    served = serve_app(hello_app, **pki.settings())
    for flag, ok in [
        ("-tls1", False),
        ("-tls1_1", False),
        ("-tls1_2", True),
        ("-tls1_3", True),
    ]:
        out = s_client(
            served.port,
            flag,
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-CAfile",
            pki.ca_file,
            "-alpn",
            "h2,http/1.1",
            data=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        text = out.stdout.decode("latin-1") + out.stderr.decode("latin-1")
        if ok:
            assert "Verify return code: 0 (ok)" in text, text
            assert "ALPN protocol: http/1.1" in text, text
            assert "Hello, world!" in text, text
        else:
            # The server refused with an alert (rustls says handshake_failure), rather
            # than the client declining to try.
            assert "SSL alert number" in text, text
            assert "Hello, world!" not in text, text


# -- client certificates -------------------------------------------------------------


def test_required_client_certificate(serve_app, pki):
    served = serve_app(
        environ_app,
        **pki.settings(ssl_ca_certificate=pki.ca_file, ssl_verify_client="required"),
    )
    status, body = https_get(served.port, pki.client_context(pki.client))
    assert status == 200
    env = json.loads(body)
    cert = x509.load_pem_x509_certificate(pki.client.cert_chain_pems[0].bytes())
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == cert.subject.rfc4514_string()
    assert env["SSL_CLIENT_I_DN"] == cert.issuer.rfc4514_string()
    assert "O=Example\\, Inc." in env["SSL_CLIENT_S_DN"]
    assert env["SSL_CLIENT_S_DN_CN"] == "alice"
    assert env["SSL_CLIENT_M_VERSION"] == "3"
    # Serial and dates exactly as OpenSSL prints them for Python's getpeercert(),
    # which is what cheroot puts in its environ (and mod_ssl prints the same way):
    # the serial in whole bytes of upper-case hex, a leading 0 kept.
    decoded = ssl._ssl._test_decode_cert(pki.write("client.pem", pem_of(cert)))
    assert env["SSL_CLIENT_M_SERIAL"] == decoded["serialNumber"]
    assert int(env["SSL_CLIENT_M_SERIAL"], 16) == cert.serial_number
    assert env["SSL_CLIENT_V_START"] == decoded["notBefore"]
    assert env["SSL_CLIENT_V_END"] == decoded["notAfter"]
    pem = env["SSL_CLIENT_CERT"].encode()
    assert x509.load_pem_x509_certificate(pem) == cert
    assert pem == cert.public_bytes(serialization.Encoding.PEM)
    # No certificate, or one from another CA: no handshake.
    for client in (None, pki.stranger):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(served.port, pki.client_context(client))


def test_optional_client_certificate(serve_app, pki):
    served = serve_app(
        environ_app,
        **pki.settings(ssl_ca_certificate=pki.ca_file, ssl_verify_client="optional"),
    )
    env = json.loads(https_get(served.port, pki.client_context())[1])
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in env
    env = json.loads(https_get(served.port, pki.client_context(pki.client))[1])
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN_CN"] == "alice"
    # A certificate that does not verify is refused, even when optional.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(served.port, pki.client_context(pki.stranger))


# -- connection behaviour ------------------------------------------------------------


def test_keep_alive_and_pipelining(serve_app, pki):
    served = serve_app(environ_app, **pki.settings())
    with tls_socket(served.port, pki.client_context()) as s:
        f = s.makefile("rb")
        for i in range(3):
            s.sendall(f"GET /k{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            status, _, body = read_response(f)
            assert status.startswith(b"HTTP/1.1 200"), status
            assert json.loads(body)["PATH_INFO"] == f"/k{i}"
        s.sendall(
            b"".join(
                f"GET /p{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
                for i in range(10)
            )
        )
        for i in range(10):
            status, _, body = read_response(f)
            assert json.loads(body)["PATH_INFO"] == f"/p{i}"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_resumption_and_alpn(serve_app, pki, version):
    served = serve_app(hello_app, **pki.settings())
    ctx = pki.client_context()
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with tls_socket(served.port, ctx) as first:
        assert first.selected_alpn_protocol() == "http/1.1"
        first.sendall(request)
        # (A TLS 1.3 ticket arrives after the handshake: read something first.)
        assert read_response(first.makefile("rb"))[2] == b"Hello, world!"
        session = first.session
        assert not first.session_reused
    raw = socket.create_connection((HOST, served.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as second:
        assert second.session_reused
        second.sendall(request)
        assert read_response(second.makefile("rb"))[2] == b"Hello, world!"


def test_plain_http_to_the_tls_port_gets_400(serve_app, pki):
    served = serve_app(hello_app, **pki.settings())
    with RawConnection(served.port, timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = conn.read_until_close()
    assert data.startswith(b"HTTP/1.0 400 Bad Request\r\n"), data
    assert b"HTTPS port" in data
    assert https_get(served.port, pki.client_context())[0] == 200


def test_the_400_for_plain_http_has_its_access_log_line(serve_app, pki, tmp_path):
    """The engine's own 400 is a response like any other: one line, with no request
    line (the bytes were not read as HTTP) and the body bytes it sent."""
    log = tmp_path / "access.log"
    settings = pki.settings(access_log=str(log), access_log_format="%(r)s %(s)s %(b)s")
    served = serve_app(hello_app, **settings)
    with RawConnection(served.port, timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = conn.read_until_close()
    assert data.startswith(b"HTTP/1.0 400 Bad Request\r\n"), data
    assert https_get(served.port, pki.client_context())[0] == 200

    def lines():
        return log.read_text().splitlines() if log.exists() else []

    assert wait_for(lambda: len(lines()) >= 2)
    body = len(data.split(b"\r\n\r\n", 1)[1])
    assert lines()[0] == f"- 400 {body}"
    assert lines()[1].endswith(" 200 13")


def test_slow_handshake_is_cut_while_others_are_served(serve_app, pki):
    served = serve_app(hello_app, **pki.settings(channel_timeout=2, cleanup_interval=1))
    slow = socket.create_connection((HOST, served.port), timeout=10)
    # The start of a handshake record, and then nothing more.
    slow.sendall(b"\x16\x03\x01")
    start = time.monotonic()
    served_meanwhile = 0
    while time.monotonic() - start < 1.5:
        assert https_get(served.port, pki.client_context())[0] == 200
        served_meanwhile += 1
    slow.settimeout(10)
    assert slow.recv(1024) == b""  # closed by the server
    took = time.monotonic() - start
    slow.close()
    assert 2 <= took < 5, took
    assert served_meanwhile >= 3


def big_app(environ, start_response):
    """POST: sha256 and length of the body; GET /N: N MiB of a pattern, in 1 MiB
    items; GET /file/N: the same through wsgi.file_wrapper."""
    if environ["REQUEST_METHOD"] == "POST":
        digest = hashlib.sha256()
        total = 0
        stream = environ["wsgi.input"]
        while block := stream.read(MiB):
            digest.update(block)
            total += len(block)
        body = json.dumps({"length": total, "sha256": digest.hexdigest()}).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    parts = environ["PATH_INFO"].strip("/").split("/")
    size = int(parts[-1]) * MiB
    start_response("200 OK", [("Content-Length", str(size))])
    if parts[0] == "file":
        return environ["wsgi.file_wrapper"](open(environ["test.file"], "rb"), MiB)
    return (pattern_block(i) for i in range(size // MiB))


def pattern_block(i: int) -> bytes:
    return bytes([i % 251]) * (MiB // 2) + bytes([(i * 7) % 253]) * (MiB // 2)


def test_100_mib_each_way(serve_app, pki):
    served = serve_app(big_app, **pki.settings())
    body_digest = hashlib.sha256()
    with tls_socket(served.port, pki.client_context()) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: localhost\r\n"
            + f"Content-Length: {100 * MiB}\r\n\r\n".encode()
        )
        for i in range(100):
            block = pattern_block(i)
            body_digest.update(block)
            s.sendall(block)
        f = s.makefile("rb")
        status, _, body = read_response(f)
        assert json.loads(body) == {
            "length": 100 * MiB,
            "sha256": body_digest.hexdigest(),
        }
        s.sendall(b"GET /100 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, body = read_response(f)
        assert status.startswith(b"HTTP/1.1 200")
        assert len(body) == 100 * MiB
        assert hashlib.sha256(body).hexdigest() == body_digest.hexdigest()


def test_file_wrapper_over_tls(serve_app, pki, tmp_path):
    data = os.urandom(3 * MiB) * 8  # 24 MiB
    path = tmp_path / "blob"
    path.write_bytes(data)

    def app(environ, start_response):
        environ["test.file"] = str(path)
        return big_app(environ, start_response)

    served = serve_app(app, **pki.settings())
    with tls_socket(served.port, pki.client_context()) as s:
        f = s.makefile("rb")
        for _ in range(2):  # and the connection stays usable after it
            s.sendall(b"GET /file/24 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body = read_response(f)
            assert status.startswith(b"HTTP/1.1 200")
            assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_slow_reader_of_a_large_tls_response(serve_app, pki):
    """A client that reads slowly still gets every byte (output queued as plaintext,
    encrypted as the socket drains)."""
    served = serve_app(big_app, **pki.settings(outbuf_overflow=MiB))
    with tls_socket(served.port, pki.client_context()) as s:
        s.sendall(b"GET /8 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(1)  # the worker queues what the socket does not take
        f = s.makefile("rb")
        status, _, body = read_response(f)
        expected = b"".join(pattern_block(i) for i in range(8))
        assert body == expected


# -- listeners -----------------------------------------------------------------------


def test_https_prefix_marks_only_that_listener(serve_app, pki):
    served = serve_app(
        environ_app, listen=f"{HOST}:0 https://{HOST}:0", **pki.settings()
    )
    (_, plain_port), (_, tls_port) = served.server.effective_listen
    conn = http.client.HTTPConnection(HOST, plain_port, timeout=10)
    conn.request("GET", "/")
    env = json.loads(conn.getresponse().read())
    assert env["wsgi.url_scheme"] == "http" and "HTTPS" not in env
    conn.close()
    ctx = pki.client_context()
    ctx.check_hostname = False
    env = json.loads(https_get(tls_port, ctx, host=HOST)[1])
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"


def test_unix_socket_tls(pki, tmp_path):
    path = str(tmp_path / "s.sock")
    server = create_server(environ_app, unix_socket=path, **pki.settings())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(10)
        raw.connect(path)
        with pki.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            _, _, body = read_response(s.makefile("rb"))
        env = json.loads(body)
        assert env["HTTPS"] == "on" and env["wsgi.url_scheme"] == "https"
    finally:
        stop_server(server, thread)


# -- certificate rotation ------------------------------------------------------------


def peer_serial(sock) -> int:
    der = sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def test_reload_certificates(serve_app, pki, caplog):
    served = serve_app(hello_app, **pki.settings())
    ctx = pki.client_context()
    old = tls_socket(served.port, ctx)
    old_serial = peer_serial(old)
    # New files in place (as a renewal does), then the reload.
    renewed = pki.ca.issue_cert("localhost", "127.0.0.1")
    renewed.private_key_pem.write_to_path(pki.key_file)
    with open(pki.cert_file, "wb") as f:
        f.write(b"".join(b.bytes() for b in renewed.cert_chain_pems))
    assert served.server.reload_certificates() is True
    with tls_socket(served.port, ctx) as new:
        new_serial = peer_serial(new)
    assert new_serial != old_serial
    assert (
        new_serial
        == x509.load_pem_x509_certificate(
            renewed.cert_chain_pems[0].bytes()
        ).serial_number
    )
    # The connection opened before the reload is undisturbed.
    with old:
        old.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, body = read_response(old.makefile("rb"))
        assert body == b"Hello, world!"
    # A bad new file: the current certificate stays, and the log says why.
    with open(pki.key_file, "wb") as f:
        f.write(b"not a key")
    with caplog.at_level(logging.ERROR, logger="maitre"):
        assert served.server.reload_certificates() is False
    assert any("ssl_private_key" in r.getMessage() for r in caplog.records)
    with tls_socket(served.port, ctx) as again:
        assert peer_serial(again) == new_serial


# -- bad configuration fails at start ------------------------------------------------


def test_key_formats_and_encrypted_keys(serve_app, pki):
    key = serialization.load_pem_private_key(
        pki.server.private_key_pem.bytes(), password=None
    )
    formats = {
        "pkcs8": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "sec1": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        "encrypted": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        ),
    }
    for name, pem in formats.items():
        path = pki.write(f"{name}.key", pem)
        extra = {"ssl_private_key_password": "s3cret"} if name == "encrypted" else {}
        served = serve_app(hello_app, **pki.settings(ssl_private_key=path, **extra))
        assert https_get(served.port, pki.client_context())[0] == 200, name
    rsa = trustme.CA().issue_cert("localhost", key_type=trustme.KeyType.RSA)
    assert b"BEGIN RSA PRIVATE KEY" in rsa.private_key_pem.bytes()  # PKCS#1
    rsa_key = pki.write("rsa.key", rsa.private_key_pem.bytes())
    rsa_cert = pki.write("rsa.pem", rsa.cert_chain_pems[0].bytes())
    server = create_server(
        hello_app, host=HOST, port=0, ssl_certificate=rsa_cert, ssl_private_key=rsa_key
    )
    server.close()


def bad_setups(pki):
    garbage = pki.write("garbage.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    empty = pki.write("empty.pem", b"")
    other_key = pki.write("other.key", pki.client.private_key_pem.bytes())
    key = serialization.load_pem_private_key(
        pki.server.private_key_pem.bytes(), password=None
    )
    encrypted = pki.write(
        "enc.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        ),
    )
    legacy = pki.write(
        "legacy.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"right"),
        ),
    )
    missing = str(pki.dir / "missing.pem")
    return [
        ("ssl_certificate", pki.settings(ssl_certificate=missing)),
        ("ssl_certificate", pki.settings(ssl_certificate=garbage)),
        ("ssl_certificate", pki.settings(ssl_certificate=empty)),
        ("ssl_private_key", pki.settings(ssl_private_key=missing)),
        ("ssl_private_key", pki.settings(ssl_private_key=empty)),
        ("ssl_private_key", pki.settings(ssl_private_key=other_key)),
        ("ssl_private_key", {"ssl_certificate": pki.cert_file}),
        ("ssl_private_key_password", pki.settings(ssl_private_key=encrypted)),
        (
            "ssl_private_key_password",
            pki.settings(ssl_private_key=encrypted, ssl_private_key_password="wrong"),
        ),
        ("ssl_private_key", pki.settings(ssl_private_key=legacy)),
        ("ssl_certificate_chain", pki.settings(ssl_certificate_chain=missing)),
        ("ssl_ca_certificate", pki.settings(ssl_ca_certificate=missing)),
        ("ssl_ca_certificate", pki.settings(ssl_ca_certificate=garbage)),
        ("ssl_ca_certificate", pki.settings(ssl_verify_client="required")),
        ("ssl_verify_client", pki.settings(ssl_verify_client="sometimes")),
        ("ssl_min_version", pki.settings(ssl_min_version="1.1")),
        ("ssl_certificate", {"listen": f"https://{HOST}:0"}),
    ]


def test_each_bad_setup_is_refused_at_start_naming_the_setting(pki):
    for setting, settings in bad_setups(pki):
        if "listen" not in settings:
            settings = dict(settings, host=HOST, port=0)
        with pytest.raises(ValueError) as info:
            server = create_server(hello_app, **settings)
            server.close()
        assert setting in str(info.value), (setting, str(info.value))


def test_cli_flags(pki):
    from maitre.adjustments import Adjustments

    kw, args = Adjustments.parse_args(
        [
            f"--ssl-certificate={pki.cert_file}",
            f"--ssl-private-key={pki.key_file}",
            "--ssl-verify-client=optional",
            f"--ssl-ca-certificate={pki.ca_file}",
            "--ssl-min-version=1.3",
            f"--listen=https://{HOST}:0",
            "app:app",
        ]
    )
    adj = Adjustments(**{k: v for k, v in kw.items() if k not in ("help", "call")})
    assert adj.listen_tls == [True]
    assert adj.ssl_verify_client == "optional" and adj.ssl_min_version == "1.3"


# -- a real scanner ------------------------------------------------------------------


def test_sslyze_scan(serve_app, pki):
    sslyze = pytest.importorskip("sslyze")
    from pathlib import Path

    # The leaf from an intermediate CA, the intermediate in ssl_certificate_chain: the
    # scanner, trusting only the root, validates only if the chain is sent complete.
    intermediate = pki.ca.create_child_ca()
    leaf = intermediate.issue_cert("localhost", "127.0.0.1")
    cert = pki.write("leaf.pem", leaf.cert_chain_pems[0].bytes())
    chain = pki.write("chain.pem", intermediate.cert_pem.bytes())
    key = pki.write("leaf.key", leaf.private_key_pem.bytes())
    served = serve_app(
        hello_app,
        ssl_certificate=cert,
        ssl_private_key=key,
        ssl_certificate_chain=chain,
    )
    location = sslyze.ServerNetworkLocation("localhost", served.port, ip_address=HOST)
    commands = {
        sslyze.ScanCommand.SSL_2_0_CIPHER_SUITES,
        sslyze.ScanCommand.SSL_3_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_1_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_2_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_3_CIPHER_SUITES,
        sslyze.ScanCommand.CERTIFICATE_INFO,
    }
    request = sslyze.ServerScanRequest(
        server_location=location,
        scan_commands=commands,
        scan_commands_extra_arguments=sslyze.ScanCommandsExtraArguments(
            certificate_info=sslyze.CertificateInfoExtraArgument(
                custom_ca_file=Path(pki.ca_file)
            )
        ),
    )
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    [result] = list(scanner.get_results())
    assert result.scan_status == sslyze.ServerScanStatusEnum.COMPLETED
    r = result.scan_result
    for old in (
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ):
        attempt = getattr(r, old)
        assert attempt.status == sslyze.ScanCommandAttemptStatusEnum.COMPLETED, old
        assert attempt.result.accepted_cipher_suites == [], old
    tls12 = r.tls_1_2_cipher_suites.result.accepted_cipher_suites
    tls13 = r.tls_1_3_cipher_suites.result.accepted_cipher_suites
    assert tls12 and tls13
    for suite in tls12:
        name = suite.cipher_suite.name
        # Forward secrecy and AEAD only: no RSA key exchange, no CBC, RC4, 3DES...
        assert name.startswith("TLS_ECDHE_"), name
        assert "GCM" in name or "CHACHA20" in name, name
    info = r.certificate_info.result.certificate_deployments[0]
    assert info.received_chain_has_valid_order
    assert len(info.received_certificate_chain) == 2
    # sslyze's own path validation (cryptography's strict verifier) rejects trustme's
    # certificates for a critical subjectAltName beside a non-empty subject; OpenSSL,
    # trusting only the root, validates the chain as sent.
    assert not info.verified_chain_has_sha1_signature
    assert https_get(served.port, pki.client_context())[0] == 200


# -- real processes and real signals -------------------------------------------------


def renew(pki):
    """New certificate and key files in place (as a renewal does); the new serial."""
    renewed = pki.ca.issue_cert("localhost", "127.0.0.1")
    renewed.private_key_pem.write_to_path(pki.key_file)
    with open(pki.cert_file, "wb") as f:
        f.write(b"".join(b.bytes() for b in renewed.cert_chain_pems))
    return x509.load_pem_x509_certificate(
        renewed.cert_chain_pems[0].bytes()
    ).serial_number


def serial_of_new_connection(port, ctx) -> int | None:
    try:
        with tls_socket(port, ctx) as s:
            return peer_serial(s)
    except (OSError, ssl.SSLError):
        return None


def tls_cli(pki, tmp_path, *flags) -> ServerProcess:
    (tmp_path / "tlsapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n"
    )
    return ServerProcess(
        [
            sys.executable,
            "-m",
            "maitre",
            f"--ssl-certificate={pki.cert_file}",
            f"--ssl-private-key={pki.key_file}",
            *flags,
            "tlsapp:app",
        ],
        cwd=tmp_path,
        timeout=20,
    )


def test_sighup_rotates_the_certificate(pki, tmp_path):
    proc = tls_cli(pki, tmp_path, f"--listen={HOST}:0")
    try:
        line = proc.wait_for_line("Serving on https://")
        port = int(re.search(r":(\d+)$", line)[1])
        ctx = pki.client_context()
        old = tls_socket(port, ctx)
        old_serial = peer_serial(old)
        new_serial = renew(pki)
        os.kill(proc.proc.pid, signal.SIGHUP)
        assert wait_for(
            lambda: serial_of_new_connection(port, ctx) == new_serial, timeout=5
        )
        assert new_serial != old_serial
        with old:  # the connection from before is undisturbed
            old.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert read_response(old.makefile("rb"))[2] == b"ok"
        # Unusable new files: the certificate stays, the log says why.
        with open(pki.cert_file, "wb") as f:
            f.write(b"garbage")
        os.kill(proc.proc.pid, signal.SIGHUP)
        proc.wait_for_line("not reloaded")
        assert serial_of_new_connection(port, ctx) == new_serial
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr


def test_workers_serve_tls_and_rotate_on_sighup(pki, tmp_path):
    port = free_port()
    proc = tls_cli(pki, tmp_path, f"--listen={HOST}:{port}", "--workers=2")
    try:
        proc.wait_for_line("Ready with 2 worker(s)")
        proc.wait_for_line(f"Serving on https://{HOST}:{port}")
        ctx = pki.client_context()
        status, body = https_get(port, ctx)
        assert (status, body) == (200, b"ok")
        new_serial = renew(pki)
        os.kill(proc.proc.pid, signal.SIGHUP)
        proc.wait_for_line("Reloaded:")

        def all_new():  # the old workers may still finish what they had
            return all(
                serial_of_new_connection(port, ctx) == new_serial for _ in range(10)
            )

        # The new workers read the new files.
        assert wait_for(all_new, timeout=15, interval=0.2)
        # Unusable files: the master keeps the workers it has.
        with open(pki.key_file, "wb") as f:
            f.write(b"garbage")
        os.kill(proc.proc.pid, signal.SIGHUP)
        proc.wait_for_line("TLS files are not usable")
        # The workers serving the new files go on (a connection refused or timed out
        # on a loaded machine is tried again; a worker with other files never passes).
        assert wait_for(all_new, timeout=5, interval=0.2)
        assert https_get(port, ctx)[0] == 200
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()


def test_workers_refuse_bad_files_at_start(pki, tmp_path):
    with open(pki.key_file, "wb") as f:
        f.write(b"garbage")
    proc = tls_cli(pki, tmp_path, f"--listen={HOST}:{free_port()}", "--workers=2")
    try:
        assert proc.wait() != 0
    finally:
        proc.kill()
    assert "ssl_private_key" in proc.stderr, proc.stderr
