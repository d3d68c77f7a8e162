"""The command line, run for real: ``python -m maitre`` and the ``maitre-serve``
console script in subprocesses (serving requests, stopped by SIGTERM), every
usage error (exit status 2, a short usage message, never a traceback), and
``--help`` covering every setting."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import maitre
import maitre.runner
import pytest
from helpers import HOST, RawConnection, ServerProcess, free_port, get, maitre_only
from maitre.adjustments import SETTINGS, asbool

pytestmark = maitre_only("maitre's command line (waitress-serve exits 1 or 0)")

TIMEOUT = 30
CONSOLE_SCRIPT = Path(sys.executable).with_name("maitre-serve")

APP_MODULE = """
def app(environ, start_response):
    body = "|".join(
        [environ["SCRIPT_NAME"], environ["PATH_INFO"], environ["SERVER_PORT"]]
    ).encode("latin-1")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

NOT_CALLABLE = 42

def failing_factory():
    raise LookupError("factory-failed-marker")
"""

FACTORY_MODULE = """
class Factories:
    @staticmethod
    def make():
        def app(environ, start_response):
            body = b"from-factory " + environ["SCRIPT_NAME"].encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        return app

class Holder:
    from cliapp import app
"""


@pytest.fixture
def appdir(tmp_path):
    """A directory with the modules the tests serve; the CLI runs in it."""
    (tmp_path / "cliapp.py").write_text(APP_MODULE)
    pkg = tmp_path / "clipkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "factories.py").write_text(FACTORY_MODULE)
    (tmp_path / "broken.py").write_text(
        "x = 1\nraise RuntimeError('import-failed-marker')\n"
    )
    (tmp_path / "syntaxerr.py").write_text("def app(:\n")
    (tmp_path / "needsdep.py").write_text("import no_such_dependency_xyz\n")
    return tmp_path


def python_m() -> list:
    return [sys.executable, "-m", "maitre"]


def console_script() -> list:
    if not CONSOLE_SCRIPT.exists():
        pytest.skip(f"no console script at {CONSOLE_SCRIPT}")
    return [str(CONSOLE_SCRIPT)]


COMMANDS = pytest.mark.parametrize(
    "command", [python_m, console_script], ids=["python-m", "maitre-serve"]
)


def run_cli(command, args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        command + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def served_ports(proc: ServerProcess, count: int) -> list:
    ports = []
    for line in proc.wait_for_lines("Serving on", count):
        match = re.search(r"Serving on http://127\.0\.0\.1:(\d+)$", line)
        assert match, line
        ports.append(int(match[1]))
    return ports


def fetch(port: int, path: str) -> bytes:
    with RawConnection(port) as conn:
        resp = conn.request(get(path))
    assert resp.status == 200, resp
    return resp.body


# ------------------------------------------------------------------ serving


@COMMANDS
def test_serves_and_stops_on_sigterm(command, appdir):
    """Two --listen options: one server on both sockets, a 'Serving on' line
    each; settings as flags; SIGTERM stops it with status 0."""
    proc = ServerProcess(
        command()
        + [
            f"--listen={HOST}:0",
            "--listen",
            f"{HOST}:0",
            "--threads=2",
            "--url-prefix=mnt/",
            "--no-ipv6",
            "cliapp:app",
        ],
        cwd=appdir,
    )
    try:
        ports = served_ports(proc, 2)
        assert ports[0] != ports[1]
        for port in ports:
            assert fetch(port, "/mnt/p") == f"/mnt|/p|{port}".encode()
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()
    assert "Traceback" not in proc.stderr, proc.stderr
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=5).close()


@COMMANDS
def test_app_option_dotted_path_and_call(command, appdir):
    """--app=pkg.mod:obj.attr with --call (an application factory), the module
    found in the current directory; --ident, --host, --port."""
    port = free_port()
    proc = ServerProcess(
        command()
        + [
            "--call",
            "--app=clipkg.sub.factories:Factories.make",
            f"--host={HOST}",
            f"--port={port}",
            "--ident=cli-ident",
            "--url-prefix=/pre",
        ],
        cwd=appdir,
    )
    try:
        assert served_ports(proc, 1) == [port]
        with RawConnection(port) as conn:
            resp = conn.request(get("/pre/x"))
        assert resp.body == b"from-factory /pre"
        assert resp.header("Server") == "cli-ident"
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_positional_dotted_attribute(appdir):
    """MODULE:OBJECT.ATTR as the positional argument."""
    proc = ServerProcess(
        python_m() + [f"--listen={HOST}:0", "clipkg.sub.factories:Holder.app"],
        cwd=appdir,
    )
    try:
        [port] = served_ports(proc, 1)
        assert fetch(port, "/dotted") == f"|/dotted|{port}".encode()
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_unix_socket(appdir):
    path = appdir / "cli.sock"
    if len(str(path)) > 100:
        pytest.skip("temporary path too long for a Unix socket")
    proc = ServerProcess(
        python_m() + [f"--unix-socket={path}", "--unix-socket-perms=660", "cliapp:app"],
        cwd=appdir,
    )
    try:
        line = proc.wait_for_lines("Serving on")[0]
        assert line.endswith(f"Serving on http://unix:{path}")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(b"GET /u HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.0 200 ")
        assert b"|/u|" in data
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert not path.exists()


def test_sockets_file_descriptor(appdir):
    """Socket activation: --sockets=FD serves a socket the parent bound and
    passed down (as systemd does)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        fd = sock.fileno()
        proc = ServerProcess(
            python_m() + [f"--sockets={fd}", "cliapp:app"],
            cwd=appdir,
            pass_fds=(fd,),
        )
        try:
            assert served_ports(proc, 1) == [port]
            assert fetch(port, "/activated") == f"|/activated|{port}".encode()
            assert proc.stop() == 0
        finally:
            proc.kill()
    finally:
        sock.close()


def test_address_in_use(appdir):
    """A start-up failure that is not a usage error: status 1, the address in
    the message, no traceback."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            python_m(), [f"--port={port}", f"--host={HOST}", "cliapp:app"], appdir
        )
    assert result.returncode == 1, result.stderr
    assert f"{HOST}:{port}" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------- usage errors

USAGE_ERRORS = [
    ("no-app", [], "no application"),
    ("two-apps", ["cliapp:app", "cliapp:app"], "one application"),
    (
        "app-option-and-positional",
        ["--app=cliapp:app", "cliapp:app"],
        "one application",
    ),
    ("app-option-twice", ["--app=cliapp:app", "--app=cliapp:app"], "--app"),
    ("unknown-flag", ["--no-such-flag=1", "cliapp:app"], "--no-such-flag"),
    ("short-flag", ["-x", "cliapp:app"], "-x"),
    ("missing-value", ["cliapp:app", "--threads"], "--threads requires argument"),
    ("bool-with-value", ["--ipv4=yes", "cliapp:app"], "--ipv4 must not have"),
    ("bad-port", ["--port=abc", "cliapp:app"], "port: 'abc'"),
    ("bad-threads", ["--threads=0", "cliapp:app"], "threads must be at least 1"),
    (
        "bad-perms",
        ["--unix-socket=/x", "--unix-socket-perms=9", "cliapp:app"],
        "unix_socket_perms",
    ),
    ("listen-and-port", [f"--listen={HOST}:1", "--port=2", "cliapp:app"], "listen"),
    (
        "unix-and-listen",
        ["--unix-socket=/x", f"--listen={HOST}:1", "cliapp:app"],
        "unix_socket",
    ),
    ("bad-listen", ["--listen=127.0.0.1:70000", "cliapp:app"], "listen"),
    (
        "proxy-headers-alone",
        ["--trusted-proxy-headers=forwarded", "cliapp:app"],
        "trusted_proxy",
    ),
    (
        "proxy-headers-unknown",
        ["--trusted-proxy=*", "--trusted-proxy-headers=x-bogus", "cliapp:app"],
        "trusted_proxy_headers value (x-bogus)",
    ),
    ("sockets-not-a-socket", ["--sockets=0", "cliapp:app"], "sockets"),
    ("no-module", ["no_such_module_xyz:app"], "No module named 'no_such_module_xyz'"),
    ("no-attribute", ["cliapp:nope"], "has no attribute 'nope'"),
    ("import-raises", ["broken:app"], "RuntimeError: import-failed-marker"),
    ("import-syntax-error", ["syntaxerr:app"], "SyntaxError"),
    (
        "missing-dependency",
        ["needsdep:app"],
        "No module named 'no_such_dependency_xyz'",
    ),
    ("not-callable", ["cliapp:NOT_CALLABLE"], "not callable"),
    (
        "factory-fails",
        ["--call", "cliapp:failing_factory"],
        "LookupError: factory-failed-marker",
    ),
    ("call-not-callable", ["--call", "cliapp:NOT_CALLABLE"], "not callable"),
]


#: applications whose import (or factory) raises in the user's code
USER_CODE_RAISES = {
    "broken:app",
    "syntaxerr:app",
    "needsdep:app",
    "cliapp:failing_factory",
}


@pytest.mark.parametrize(
    "args,expected", [e[1:] for e in USAGE_ERRORS], ids=[e[0] for e in USAGE_ERRORS]
)
def test_usage_error(appdir, args, expected):
    """Exit status 2, the short usage and the error (no option list), on stderr;
    nothing on stdout. Only when the user's code raised is a traceback shown, before
    the usage (test_import_failure_shows_the_user_traceback)."""
    result = run_cli(python_m(), args, appdir)
    assert result.returncode == 2, (result.returncode, result.stderr)
    err = result.stderr
    if args and args[-1] in USER_CODE_RAISES:
        assert err.startswith(("Traceback", "  File")), err
        err = err[err.index("Usage: ") :]
    assert "Traceback" not in err, err
    assert "Usage: python -m maitre [OPTIONS] MODULE:OBJECT" in err
    assert expected in err, err
    error_lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1 and expected in err[err.index("Error: ") :], err
    assert len(err.splitlines()) <= 10, err  # one screen, not the option list
    assert "--max-request-body-size" not in err
    assert result.stdout == ""


def test_settings_checked_before_importing(appdir):
    """A bad setting is reported even when the application cannot be imported
    (and before the user's module runs)."""
    result = run_cli(python_m(), ["--port=abc", "broken:app"], appdir)
    assert result.returncode == 2
    assert "port" in result.stderr and "import-failed-marker" not in result.stderr


def test_usage_error_import_shows_where(appdir):
    """An exception raised by the application's module: its type, message and
    where it was raised."""
    result = run_cli(python_m(), ["broken:app"], appdir)
    assert result.returncode == 2
    assert f"{appdir / 'broken.py'}, line 2" in result.stderr, result.stderr


def test_import_failure_shows_the_user_traceback(appdir):
    """An application that fails to import shows the traceback of the user's code
    (every frame of it, not the innermost one, which is often in the standard
    library), without the import machinery's frames; then the usage error."""
    (appdir / "deepapp.py").write_text(
        "import deephelper\n\napp = deephelper.build()\n"
    )
    (appdir / "deephelper.py").write_text(
        "import json\n\n\ndef build():\n    return json.loads('{not json')\n"
    )
    result = run_cli(python_m(), ["deepapp:app"], appdir)
    assert result.returncode == 2
    err = result.stderr
    tb, usage = err.split("Usage: ", 1)
    assert tb.startswith("Traceback (most recent call last):"), err
    assert f'File "{appdir / "deepapp.py"}", line 3, in <module>' in tb, tb
    assert f'File "{appdir / "deephelper.py"}", line 5, in build' in tb, tb
    assert "json.decoder.JSONDecodeError" in tb
    assert "importlib" not in tb and "maitre" not in tb, tb
    assert "Error: cannot import the application 'deepapp:app'" in usage


def test_version(appdir):
    """--version prints maitre's version (the package's metadata, one source:
    pyproject.toml) and exits 0; maitre.__version__ is the same."""
    from importlib.metadata import version

    result = run_cli(python_m(), ["--version"], appdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"maitre {version('maitre')}\n"
    assert maitre.__version__ == version("maitre")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", maitre.__version__)


def test_usage_error_console_script_name(appdir):
    """The console script names itself in the usage."""
    result = run_cli(console_script(), ["--bogus", "cliapp:app"], appdir)
    assert result.returncode == 2
    assert "Usage: maitre-serve [OPTIONS] MODULE:OBJECT" in result.stderr
    assert "Error: option --bogus not recognized" in result.stderr


# ------------------------------------------------------------------ --help


def help_flags(text: str) -> set:
    """The option names that --help documents (lines starting an entry)."""
    flags = set()
    for line in text.splitlines():
        if re.match(r"^    --", line):
            flags.update(re.findall(r"--([a-z0-9-]+)", line))
    return flags


@COMMANDS
def test_help_lists_every_setting(command, appdir):
    """--help: exit 0, on stdout, every setting as a flag (--no-X too for
    booleans) with its default, and no flag that is not a setting."""
    result = run_cli(command(), ["--help"], appdir)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    expected = {"help", "call", "version", "app", "mount", "paste", "config"}
    expected.add("check-config")
    for s in SETTINGS:
        flag = s.name.replace("_", "-")
        expected.add(flag)
        if s.convert is asbool:
            expected.add("no-" + flag)
    assert help_flags(text) == expected
    entries = re.split(r"\n(?=    --)", text)
    for s in SETTINGS:
        flag = s.name.replace("_", "-")
        [entry] = [
            e
            for e in entries
            if e.startswith(f"    --{flag}=") or e.startswith(f"    --{flag},")
        ]
        assert "Default: " in entry, entry
    for flag, default in [
        ("port", "8080"),
        ("threads", "4"),
        ("host", "0.0.0.0"),
        ("listen", "0.0.0.0:8080"),
        ("unix-socket-perms", "600"),
        ("ipv6", "on"),
        ("expose-tracebacks", "off"),
        ("ident", "maitre"),
        ("server-name", "maitre.invalid"),
        ("connection-limit", "100"),
        ("max-request-body-size", "1073741824"),
    ]:
        [entry] = [e for e in entries if re.match(rf"    --{flag}[=,]", e)]
        assert re.search(rf"^        Default: {re.escape(default)}$", entry, re.M), (
            entry
        )


def test_help_wins_over_other_arguments(appdir):
    result = run_cli(python_m(), ["--help", "--threads=2"], appdir)
    assert result.returncode == 0
    assert "--channel-request-lookahead=INT" in result.stdout


# ------------------------------------------------ run() in-process (fast)


def test_run_passes_settings_as_strings(appdir, monkeypatch):
    """run() hands serve() every setting as given on the command line; serve()
    converts them with the settings table."""
    monkeypatch.chdir(appdir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    calls = []

    def fake_serve(app, **kw):
        calls.append((app, kw))

    code = maitre.runner.run(
        [
            "maitre-serve",
            "--listen=127.0.0.1:1",
            "--listen=127.0.0.2:2",
            "--no-ipv6",
            "--expose-tracebacks",
            "--threads=9",
            "--trusted-proxy=10.0.0.1",
            "--trusted-proxy-headers=x-forwarded-for x-forwarded-proto",
            "cliapp:app",
        ],
        _serve=fake_serve,
    )
    assert code == 0
    [(app, kw)] = calls
    assert app.__module__ == "cliapp" and app.__name__ == "app"
    assert kw == {
        "listen": " 127.0.0.1:1 127.0.0.2:2",  # as waitress builds it
        "ipv6": "false",
        "expose_tracebacks": "true",
        "threads": "9",
        "trusted_proxy": "10.0.0.1",
        "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto",
    }
    assert sys.path[0] == str(appdir)


def test_run_options_after_the_application(appdir, monkeypatch):
    """maitre-serve myapp:app --port=9000 works (waitress-serve refuses it)."""
    monkeypatch.chdir(appdir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    calls = []
    argv = ["maitre-serve", "cliapp:app", "--port=9000", "--no-ipv6"]
    assert maitre.runner.run(argv, _serve=lambda app, **kw: calls.append(kw)) == 0
    assert calls == [{"port": "9000", "ipv6": "false"}]


def test_run_value_error_from_serve_is_a_usage_error(appdir, monkeypatch, capsys):
    monkeypatch.chdir(appdir)
    monkeypatch.setattr(sys, "path", list(sys.path))

    def fake_serve(app, **kw):
        raise ValueError("threads must be at least 1, not 0")

    assert maitre.runner.run(["maitre-serve", "cliapp:app"], _serve=fake_serve) == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith("Error: threads must be at least 1, not 0")


def test_show_help_signature():
    """show_help(stream, name, error=None), as waitress's."""
    import io

    full, short = io.StringIO(), io.StringIO()
    maitre.runner.show_help(full, "prog")
    maitre.runner.show_help(short, "prog", "it broke")
    assert "Usage: prog [OPTIONS] MODULE:OBJECT" in full.getvalue()
    assert "--outbuf-high-watermark=INT" in full.getvalue()
    assert "Error: it broke" in short.getvalue()
    assert "--outbuf-high-watermark" not in short.getvalue()


def test_dunder_main_is_the_cli():
    """python -m maitre runs the same code; importing maitre.__main__ does not
    start anything."""
    result = subprocess.run(
        [sys.executable, "-c", "import maitre.__main__; print('imported')"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0 and result.stdout == "imported\n", result.stderr
