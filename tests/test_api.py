"""Python API and command line: create_server, serve(), ``python -m``, import
side effects, fork safety, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from apps import hello_app
from helpers import (
    HOST,
    TARGET,
    RawConnection,
    ServerProcess,
    create_server,
    free_port,
    get,
    maitre_only,
    stop_server,
)

PROCESS_TIMEOUT = 30


def run_python(code: str, timeout=PROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, bounded in time."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


TEST_APP_MODULE = """
def app(environ, start_response):
    body = ("cli-app " + environ["PATH_INFO"]).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


# ------------------------------------------------------------ create_server


def test_create_server_port_zero_gets_real_port(serve_app):
    """create_server(port=0) binds at once; effective_host/port are real."""
    srv = serve_app(hello_app)
    server = srv.server
    assert server.effective_host == HOST
    # waitress gives the port as a str (from getnameinfo); only the value is pinned
    assert 0 < int(server.effective_port) < 65536
    assert int(server.effective_port) == srv.port
    resp = srv.request(get("/"))
    assert (resp.status, resp.body) == (200, b"Hello, world!")


def test_create_server_binds_before_run():
    """The socket is listening as soon as create_server returns: a client can
    connect (and be answered once run() starts)."""
    server = create_server(hello_app, host=HOST, port=0, threads=1)
    thread = None
    try:
        conn = RawConnection(int(server.effective_port))
        conn.send(get("/"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        with conn:
            assert conn.read_response().status == 200
    finally:
        stop_server(server, thread)


def test_close_releases_the_port():
    """After close() and run() returning, the port no longer accepts."""
    server = create_server(hello_app, host=HOST, port=0, threads=1)
    port = int(server.effective_port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert RawConnection(port).request(get("/")).status == 200
    stop_server(server, thread)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5).close()


def test_unknown_setting_rejected():
    """An unknown setting is refused at creation with a message naming it."""
    with pytest.raises(ValueError, match="no_such_setting"):
        create_server(hello_app, host=HOST, port=0, no_such_setting=1)


def test_listen_with_host_rejected():
    """listen together with host/port is refused."""
    with pytest.raises(ValueError, match="listen"):
        create_server(hello_app, host=HOST, port=0, listen=f"{HOST}:0")


def test_listen_setting():
    """listen="127.0.0.1:0" binds like host/port."""
    server = create_server(hello_app, listen=f"{HOST}:0", threads=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert int(server.effective_port) > 0
        resp = RawConnection(int(server.effective_port)).request(get("/"))
        assert resp.status == 200
    finally:
        stop_server(server, thread)


# ---------------------------------------------------------------- serve()

SERVE_SCRIPT = """
import logging, sys
logging.basicConfig(
    level=logging.INFO, stream=sys.stderr, format="%(name)s|%(message)s"
)
from {target} import serve

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "8")])
    return [b"serve-ok"]

serve(app, host="127.0.0.1", port={port}, threads=2)
print("serve-returned", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serve_logs_and_stops_on_signal(signum):
    """serve() logs "Serving on http://HOST:PORT" on the server's logger,
    serves, and a SIGTERM/SIGINT stops the process without a traceback."""
    port = free_port()
    script = SERVE_SCRIPT.format(target=TARGET, port=port)
    proc = ServerProcess([sys.executable, "-c", script])
    try:
        line = proc.wait_for_line("Serving on")
        assert line == f"{TARGET}|Serving on http://127.0.0.1:{port}"
        resp = RawConnection(port).request(get("/"))
        assert (resp.status, resp.body) == (200, b"serve-ok")
        os.kill(proc.proc.pid, signum)
        code = proc.wait()
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    if signum == signal.SIGINT:
        # Ctrl-C makes serve() return normally
        assert code == 0, proc.stderr
        assert "serve-returned" in proc.stdout
    else:
        assert code in (0, -signal.SIGTERM), proc.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5).close()


# -------------------------------------------------------------- the CLI


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_cli_module_app(tmp_path, signum):
    """``python -m <server> --listen=127.0.0.1:PORT module:app`` serves the app
    (module found in the current directory) and stops cleanly on a signal."""
    (tmp_path / "cliapp.py").write_text(TEST_APP_MODULE)
    port = free_port()
    proc = ServerProcess(
        [sys.executable, "-m", TARGET, f"--listen=127.0.0.1:{port}", "cliapp:app"],
        cwd=tmp_path,
    )
    try:
        line = proc.wait_for_line("Serving on")
        assert line.endswith(f"Serving on http://127.0.0.1:{port}")
        resp = RawConnection(port).request(get("/from-cli"))
        assert (resp.status, resp.body) == (200, b"cli-app /from-cli")
        os.kill(proc.proc.pid, signum)
        code = proc.wait()
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert code in (0, -signal.SIGTERM)


@maitre_only("waitress has no bundled demo app")
def test_cli_demo_app():
    """``python -m maitre --listen=... maitre.demo:app`` serves a page that
    shows the request."""
    port = free_port()
    proc = ServerProcess(
        [
            sys.executable,
            "-m",
            "maitre",
            f"--listen=127.0.0.1:{port}",
            "maitre.demo:app",
        ]
    )
    try:
        proc.wait_for_line("Serving on")
        resp = RawConnection(port).request(get("/demo-path-marker?q=1"))
        assert resp.status == 200
        assert b"demo-path-marker" in resp.body
        os.kill(proc.proc.pid, signal.SIGINT)
        assert proc.wait() == 0
    finally:
        proc.kill()


def run_bad_option() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", TARGET, "--no-such-flag=1", "x:app"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_cli_bad_option_shows_usage():
    """An unknown CLI option: an error naming it and the usage text."""
    result = run_bad_option()
    assert "no-such-flag" in result.stderr
    assert "usage" in result.stderr.lower()


@maitre_only("waitress's python -m waitress exits 0 after a usage error")
def test_cli_bad_option_exit_code():
    """The CLI exits with status 2 on a usage error."""
    result = run_bad_option()
    assert result.returncode == 2, result.stderr


# ------------------------------------------------- process-level behaviour


def test_import_starts_no_thread():
    """Importing the package starts no Python thread and no native thread."""
    result = run_python(
        f"""
        import json, os, threading
        def counts():
            return [threading.active_count(), len(os.listdir("/proc/self/task"))]
        before = counts()
        import {TARGET}
        import {TARGET}.server
        print(json.dumps([before, counts()]))
        """
    )
    assert result.returncode == 0, result.stderr
    before, after = json.loads(result.stdout)
    assert after == before


FORK_SCRIPT = """
import os, signal, socket, sys, threading, time, traceback
import {target}
from {target}.server import create_server

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "9")])
    return [b"forked-ok"]

pid = os.fork()
if pid == 0:
    try:
        server = create_server(app, host="127.0.0.1", port=0, threads=2)
        threading.Thread(target=server.run, daemon=True).start()
        port = int(server.effective_port)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        ok = data.startswith(b"HTTP/1.0 200 ") and data.endswith(b"forked-ok")
        if not ok:
            print("bad response", data, file=sys.stderr, flush=True)
        os._exit(0 if ok else 3)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(4)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.02)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
sys.exit(5)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_import_child_can_serve():
    """A process that imported the package can fork; the child starts a
    server and serves a request."""
    result = run_python(FORK_SCRIPT.format(target=TARGET))
    assert result.returncode == 0, (result.returncode, result.stderr)
