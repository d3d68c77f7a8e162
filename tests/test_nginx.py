"""Behind a real nginx: the configuration of docs/behind-nginx.md, read from the page,
over TCP and over a Unix socket, checked by what the application sees.

nginx is Debian's package; when it is missing it is installed here (as root, with
apt-get; ``apt-get update`` only if the install fails). The tests start their own
nginx master with a configuration in a temporary directory, listening on a free port
of 127.0.0.1 (and ::1 when the machine has it), and kill it by PID at the end. They are
skipped only where nginx cannot be installed.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from apps import EnvironRecorder
from helpers import HOST, RawConnection, create_server, free_port, stop_server

# Installing nginx can take a while on a slow mirror; everything else is quick.
pytestmark = pytest.mark.timeout(1500)

INSTALL_TIMEOUT = 600
START_TIMEOUT = 15.0
DOC = Path(__file__).resolve().parent.parent / "docs" / "behind-nginx.md"

#: what nginx tells the application, exactly as docs/behind-nginx.md shows it
PROXY_HEADER_LINES = """\
proxy_set_header Host $host;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Forwarded-Host $host;
proxy_set_header X-Forwarded-Port $server_port;
"""

TRUSTED_HEADERS = {
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
}


# -- getting nginx ------------------------------------------------------------------


def find_nginx():
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("nginx", path=path)


@contextlib.contextmanager
def services_not_started():
    """Debian's nginx package starts the system nginx (port 80) after installing it,
    unless /usr/sbin/policy-rc.d says no: say no for the time of the install, if the
    machine does not already."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\n# maitre tests: installing nginx\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink()


def apt_get(args, log):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        proc = subprocess.run(
            ["apt-get", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        log.append(f"apt-get {' '.join(args)}: no answer in {INSTALL_TIMEOUT}s")
        return False
    log.append(f"apt-get {' '.join(args)} -> {proc.returncode}")
    log.append(proc.stdout.decode("utf-8", "replace")[-1500:])
    return proc.returncode == 0


@pytest.fixture(scope="session")
def nginx_binary():
    """Path of nginx, installed with apt-get if missing."""
    found = find_nginx()
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("nginx is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("nginx is not installed and installing it needs root")
    log = []
    with services_not_started():
        for update_first in (False, True):
            if update_first and not apt_get(["update", "-q"], log):
                break
            for package in ("nginx-light", "nginx"):
                install = ["install", "-y", "-q", "--no-install-recommends", package]
                if apt_get(install, log) and find_nginx():
                    return find_nginx()
    pytest.skip("nginx could not be installed:\n" + "\n".join(log)[-3000:])


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- running nginx ------------------------------------------------------------------


def documented_config() -> str:
    """The first ``nginx`` block of docs/behind-nginx.md: the upstream and the server
    over TCP."""
    blocks = re.findall(r"^```nginx\n(.*?)^```", DOC.read_text(), re.M | re.S)
    return blocks[0]


#: added to the guide's server block: what a proxy terminating TLS in front of this
#: one would say (no TLS here)
SECURE_LOCATION = """
    location /app/secure/ {
        proxy_pass http://maitre;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Forwarded-Port 443;
    }
}
"""


def nginx_config(prefix: Path, port: int, upstream: str, ipv6: bool) -> str:
    """The configuration of the guide, its addresses those of the test, inside an
    ``http`` block that keeps everything in ``prefix``."""
    user = ""
    if os.geteuid() == 0:
        # Workers of a root master run as nobody, who cannot reach the temporary
        # directory and the Unix socket: run them as ourselves.
        name = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        user = f"user {name} {group};"
    guide = documented_config()
    for old, new in (
        ("    server 127.0.0.1:8080;\n", f"    server {upstream};\n"),
        ("    listen 80;\n", f"    listen {HOST}:{port};\n"),
    ):
        assert guide.count(old) == 1, old
        guide = guide.replace(old, new)
    if ipv6:
        guide = guide.replace(
            f"    listen {HOST}:{port};\n",
            f"    listen {HOST}:{port};\n    listen [::1]:{port};\n",
        )
    assert guide.endswith("}\n")
    guide = guide[: -len("}\n")] + SECURE_LOCATION
    return f"""
{user}
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

{guide}
}}
"""


class Nginx:
    """An nginx master of our own; ``stop()`` (in a finally) kills it by PID."""

    def __init__(self, binary: str, prefix: Path, upstream: str):
        self.prefix = prefix
        self.port = free_port()
        self.ipv6 = ipv6_loopback()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, self.port, upstream, self.ipv6))
        self.error_log = prefix / "error.log"
        self.proc = subprocess.Popen(
            [
                binary,
                "-p",
                str(prefix),
                "-c",
                str(conf),
                "-e",
                str(self.error_log),
                "-g",
                f"daemon off; master_process on; pid {prefix}/nginx.pid; "
                f"error_log {self.error_log} info;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_listening()

    def _log(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no error log)"

    def _wait_until_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited ({self.proc.returncode}):\n{self._log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"nginx not listening after {START_TIMEOUT}s:\n{self._log()}")

    def _workers(self):
        """PIDs of the master's children (its workers), from /proc."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(self.proc.pid):
                pids.append(int(stat.parent.name))
        return pids

    def stop(self):
        if self.proc.poll() is not None:
            return
        workers = self._workers()
        self.proc.send_signal(signal.SIGTERM)  # fast shutdown, workers included
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def request(self, data: bytes, host: str = HOST):
        with RawConnection(self.port, host) as conn:
            return conn.request(data)


@contextlib.contextmanager
def nginx_in_front(binary, upstream):
    prefix = Path(tempfile.mkdtemp(prefix="maitre-nginx-"))
    nginx = None
    try:
        nginx = Nginx(binary, prefix, upstream)
        yield nginx
    finally:
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(prefix, ignore_errors=True)


def request(path: str, headers: bytes = b"", method="GET", body=b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: www.example.com\r\n".encode()
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + headers + b"\r\n" + body


def check_through_nginx(nginx, recorder, peer_is_unix: bool):
    # a spoofed X-Forwarded-For from the client: nginx appends the address it saw,
    # and only that last hop is believed
    resp = nginx.request(
        request("/app/hello/world?x=1", b"X-Forwarded-For: 6.6.6.6\r\n")
    )
    assert resp.status == 200, resp.body
    env = recorder.last
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_HOST"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"www.example.com:{nginx.port}"
    assert env["SERVER_NAME"] == "www.example.com"
    assert env["SERVER_PORT"] == str(nginx.port)
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/hello/world"
    assert env["QUERY_STRING"] == "x=1"
    assert env["REQUEST_URI"] == "/app/hello/world?x=1"
    if peer_is_unix:
        # what the server saw without the proxy headers
        assert env["REMOTE_PORT"] == "None"

    # the scheme, host and port a TLS-terminating proxy reports
    resp = nginx.request(request("/app/secure/page"))
    assert resp.status == 200
    env = recorder.last
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "www.example.com"
    assert env["SERVER_PORT"] == "443"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/secure/page"

    # a request body, and several requests on nginx's kept-alive upstream connections
    for i in range(3):
        body = b"payload %d" % i
        resp = nginx.request(request("/app/post", method="POST", body=body))
        assert resp.status == 200
        assert recorder.last["test.body"] == body
        assert recorder.last["REQUEST_METHOD"] == "POST"

    if nginx.ipv6:
        # the client reaches nginx over ::1; the server sees nginx on 127.0.0.1 (or
        # the Unix socket) but the application sees the client
        resp = nginx.request(request("/app/v6"), host="::1")
        assert resp.status == 200
        assert recorder.last["REMOTE_ADDR"] == "::1"
        assert recorder.last["HTTP_X_FORWARDED_FOR"] == "::1"


def test_behind_nginx_over_tcp(nginx_binary, serve_app):
    recorder = EnvironRecorder()
    srv = serve_app(
        recorder,
        trusted_proxy="127.0.0.1",
        trusted_proxy_count=1,
        trusted_proxy_headers=TRUSTED_HEADERS,
        url_prefix="/app",
    )
    with nginx_in_front(nginx_binary, f"{HOST}:{srv.port}") as nginx:
        check_through_nginx(nginx, recorder, peer_is_unix=False)


@contextlib.contextmanager
def unix_server(app, path, **settings):
    """A server on the Unix socket ``path``, run in a thread and closed at the end
    (the ``serve_app`` fixture serves TCP only)."""
    server = create_server(app, unix_socket=str(path), **settings)
    thread = threading.Thread(target=server.run, name="unix-test-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop_server(server, thread)


def test_behind_nginx_over_a_unix_socket(nginx_binary):
    recorder = EnvironRecorder()
    sock_dir = Path(tempfile.mkdtemp(prefix="maitre-sock-"))
    path = sock_dir / "maitre.sock"
    try:
        with unix_server(
            recorder,
            path,
            trusted_proxy="localhost",  # the peer of a Unix socket
            trusted_proxy_count=1,
            trusted_proxy_headers=TRUSTED_HEADERS,
            url_prefix="/app",
        ):
            with nginx_in_front(nginx_binary, f"unix:{path}") as nginx:
                check_through_nginx(nginx, recorder, peer_is_unix=True)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_untrusted_nginx_gets_no_say(nginx_binary, serve_app):
    """The same nginx, but the server trusts another proxy: nothing it says is used,
    and the proxy headers are removed."""
    recorder = EnvironRecorder()
    srv = serve_app(
        recorder,
        trusted_proxy="10.255.255.1",
        trusted_proxy_headers=TRUSTED_HEADERS,
        url_prefix="/app",
    )
    with nginx_in_front(nginx_binary, f"{HOST}:{srv.port}") as nginx:
        resp = nginx.request(request("/app/secure/x", b"X-Forwarded-For: 6.6.6.6\r\n"))
        assert resp.status == 200
    env = recorder.last
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "www.example.com"
    assert env["SERVER_PORT"] == str(srv.port)
    for name in ("FOR", "PROTO", "HOST", "PORT"):
        assert f"HTTP_X_FORWARDED_{name}" not in env


def test_guide_shows_the_tested_configuration():
    """docs/behind-nginx.md has the proxy_set_header lines tested here, and the
    matching server settings."""
    text = DOC.read_text()
    lines = {re.sub(r"\s+", " ", line.strip()) for line in text.splitlines()}
    for line in PROXY_HEADER_LINES.splitlines():
        assert line in lines, f"{line!r} missing from {DOC.name}"
    for setting in (
        'trusted_proxy="127.0.0.1"',
        "trusted_proxy_headers=",
        "unix_socket=",
        'trusted_proxy="localhost"',
        "--trusted-proxy=127.0.0.1",
    ):
        assert setting in text, f"{setting} missing from {DOC.name}"
