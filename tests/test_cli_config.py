"""The command line beyond its flags, run for real (``python -m maitre`` in
subprocesses, serving on loopback ports, stopped by PID): an application that
cannot be imported under ``--workers``, suggestions for unknown flags,
``--paste``, the log format with ``--log-level`` and ``--log-config``, settings
from ``MAITRE_*`` variables and ``--config`` files with their precedence
(``--check-config``), the cap on ``workers``, and start-up failures named as what
they are."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import maitre
import maitre.runner
import pytest
from helpers import HOST, RawConnection, ServerProcess, free_port, get, maitre_only
from maitre.adjustments import MAX_WORKERS, Adjustments

pytestmark = maitre_only("maitre's own command line")

TIMEOUT = 30

APP = """
def app(environ, start_response):
    body = environ.get("paste.marker", "plain").encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

def make_app(global_conf, marker="none"):
    def paste_app(environ, start_response):
        body = ("paste:" + marker + ":" + global_conf["__file__"]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    return paste_app
"""

DEEP_APP = "import deephelper\n\napp = deephelper.build()\n"
DEEP_HELPER = "import json\n\n\ndef build():\n    return json.loads('{not json')\n"


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "cfgapp.py").write_text(APP)
    (tmp_path / "deepapp.py").write_text(DEEP_APP)
    (tmp_path / "deephelper.py").write_text(DEEP_HELPER)
    return tmp_path


def clean_env(**extra: str) -> dict:
    """This process's environment without any MAITRE_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAITRE_")}
    env.update(extra)
    return env


def run_cli(args, cwd, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maitre", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=clean_env(**env),
    )


def serve_cli(args, cwd, **env: str) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "maitre", *args], cwd=cwd, env=clean_env(**env)
    )


def fetch(port: int, path: str = "/") -> bytes:
    with RawConnection(port) as conn:
        resp = conn.request(get(path))
    assert resp.status == 200, resp
    return resp.body


def check_config(args, cwd, **env: str) -> dict:
    """``--check-config``'s report: setting -> (value, source)."""
    result = run_cli(["--check-config", *args], cwd, **env)
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        name, value, source = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows[name] = (value, source)
    return rows


# ------------------------------------------ 3. an import error, one process or several


@pytest.mark.parametrize("workers", ["1", "2"])
def test_import_error_same_in_both_modes(appdir, workers):
    """With one process or a master and workers: exit 2, the user's frames only
    (no import machinery, no maitre), nothing about serving, the error last."""
    port = free_port()
    result = run_cli(
        [f"--workers={workers}", f"--listen={HOST}:{port}", "deepapp:app"], appdir
    )
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err)
    assert "Serving on" not in err, err
    assert err.count("Traceback (most recent call last):") == 1, err
    tb = err[err.index("Traceback") : err.index("Usage: ")]
    assert f'File "{appdir / "deepapp.py"}", line 3, in <module>' in tb, tb
    assert f'File "{appdir / "deephelper.py"}", line 5, in build' in tb, tb
    frames = [line for line in tb.splitlines() if line.strip().startswith("File ")]
    # The user's modules, and the standard library's json they called: no other.
    assert all(str(appdir) in f or f"{os.sep}json{os.sep}" in f for f in frames), tb
    assert "importlib" not in tb and "maitre" not in tb, tb
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("Error: cannot import the application 'deepapp:app': ")
    assert "JSONDecodeError" in last


# --------------------------------------------------------------- 4. flags


def test_unknown_flag_suggests_the_closest(appdir):
    result = run_cli(["--treads=8", "cfgapp:app"], appdir)
    assert result.returncode == 2
    assert "option --treads not recognized; did you mean --threads" in result.stderr


def test_ambiguous_prefix_lists_the_candidates(appdir):
    result = run_cli(["--log=x", "cfgapp:app"], appdir)
    assert result.returncode == 2
    assert "--log-level" in result.stderr and "--log-config" in result.stderr


def test_prefix_of_a_flag_is_the_flag(appdir, monkeypatch):
    """getopt's prefix matching, as waitress-serve: --thread=8 is --threads=8."""
    monkeypatch.chdir(appdir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [k for k in os.environ if k.startswith("MAITRE_")]:
        monkeypatch.delenv(name)
    calls = []
    argv = ["maitre-serve", "--thread=8", "cfgapp:app"]
    assert maitre.runner.run(argv, _serve=lambda app, **kw: calls.append(kw)) == 0
    assert calls == [{"threads": "8"}]


# --------------------------------------------------------------- 10. --paste

INI = """\
[app:main]
use = call:cfgapp:make_app
marker = from-main

[app:other]
use = call:cfgapp:make_app
marker = from-other

[server:main]
use = egg:maitre#main
listen = {listen}
threads = 3
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_paste_serves_the_ini_app_with_its_server_settings(appdir, workers):
    port = free_port()
    ini = appdir / "site.ini"
    ini.write_text(INI.format(listen=f"{HOST}:{port}"))
    proc = serve_cli(["--paste", str(ini), f"--workers={workers}"], appdir)
    try:
        proc.wait_for_line(f"Serving on http://{HOST}:{port}")
        assert fetch(port) == f"paste:from-main:{ini}".encode()
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_paste_section_and_command_line_overrides(appdir):
    """#other picks [app:other]; the server section falls back to [server:main];
    a flag wins over the ini's key."""
    port, other = free_port(), free_port()
    ini = appdir / "site.ini"
    ini.write_text(INI.format(listen=f"{HOST}:{port}"))
    rows = check_config(["--paste", f"{ini}#other", "--threads=5"], appdir)
    assert rows["threads"] == ("5", "command line (--threads)")
    assert rows["listen"] == (f"{HOST}:{port}", f"paste {ini}")
    proc = serve_cli(["--paste", f"{ini}#other", f"--listen={HOST}:{other}"], appdir)
    try:
        proc.wait_for_line(f"Serving on http://{HOST}:{other}")
        assert fetch(other) == f"paste:from-other:{ini}".encode()
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_paste_ini_logging_sections_configure_logging(appdir):
    """An ini with [loggers] (as pserve reads it) is the logging configuration."""
    port = free_port()
    ini = appdir / "site.ini"
    ini.write_text(INI.format(listen=f"{HOST}:{port}") + "\n" + LOG_INI)
    proc = serve_cli(["--paste", str(ini)], appdir)
    try:
        line = proc.wait_for_line("Serving on")
        assert line == f"INICFG INFO maitre Serving on http://{HOST}:{port}", line
        fetch(port)  # answered: the signal handlers are in place
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_paste_with_an_application_is_a_usage_error(appdir):
    ini = appdir / "site.ini"
    ini.write_text(INI.format(listen=f"{HOST}:1"))
    result = run_cli(["--paste", str(ini), "cfgapp:app"], appdir)
    assert result.returncode == 2
    assert "--paste names the application" in result.stderr


def test_paste_unknown_server_key_is_named(appdir):
    ini = appdir / "site.ini"
    ini.write_text(INI.format(listen=f"{HOST}:1") + "treads = 4\n")
    result = run_cli(["--paste", str(ini)], appdir)
    assert result.returncode == 2
    assert "'treads' is not a setting; did you mean threads" in result.stderr


# --------------------------------------------------------------- 11. logging

TIMESTAMPED = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] INFO maitre: Serving on "
)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_log_lines_have_time_level_and_logger(appdir, workers):
    port = free_port()
    proc = serve_cli(
        [f"--listen={HOST}:{port}", f"--workers={workers}", "cfgapp:app"], appdir
    )
    try:
        line = proc.wait_for_line("Serving on")
        assert TIMESTAMPED.match(line), line
        fetch(port)  # answered: the signal handlers are in place
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_log_level_warning_hides_info(appdir):
    port = free_port()
    proc = serve_cli(
        [f"--listen={HOST}:{port}", "--log-level=warning", "cfgapp:app"], appdir
    )
    try:
        _wait_until_served(proc, port)
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert "Serving on" not in proc.stderr, proc.stderr


def test_log_level_keeps_the_access_log(appdir):
    """--log-level quiets the server's messages, not access_log = logging's lines."""
    port = free_port()
    args = [f"--listen={HOST}:{port}", "--log-level=warning", "--access-log=logging"]
    proc = serve_cli([*args, "cfgapp:app"], appdir)
    try:
        _wait_until_served(proc, port)
        proc.wait_for_line('"GET / HTTP/1.1" 200')
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert "Serving on" not in proc.stderr, proc.stderr


def _wait_until_served(proc: ServerProcess, port: int) -> None:
    import time

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, proc.stderr
        try:
            assert fetch(port) == b"plain"
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("never served")


LOG_INI = """\
[loggers]
keys = root

[handlers]
keys = err

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = err

[handler_err]
class = StreamHandler
args = (sys.stderr,)
formatter = plain

[formatter_plain]
format = INICFG %(levelname)s %(name)s %(message)s
"""


@pytest.mark.parametrize("kind", ["json", "ini", "env"])
def test_log_config_file(appdir, kind):
    """--log-config with a dictConfig JSON file or a fileConfig INI file (and the
    same from MAITRE_LOG_CONFIG): its format, not maitre's."""
    port = free_port()
    if kind == "json":
        path = appdir / "logging.json"
        path.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {
                        "f": {"format": "JSONCFG %(levelname)s %(message)s"}
                    },
                    "handlers": {
                        "h": {
                            "class": "logging.StreamHandler",
                            "formatter": "f",
                            "stream": "ext://sys.stderr",
                        }
                    },
                    "root": {"level": "INFO", "handlers": ["h"]},
                }
            )
        )
        expected = f"JSONCFG INFO Serving on http://{HOST}:{port}"
    else:
        path = appdir / "logging.ini"
        path.write_text(LOG_INI)
        expected = f"INICFG INFO maitre Serving on http://{HOST}:{port}"
    args = [f"--listen={HOST}:{port}", "cfgapp:app"]
    env = {}
    if kind == "env":
        env["MAITRE_LOG_CONFIG"] = str(path)
    else:
        args.insert(0, f"--log-config={path}")
    proc = serve_cli(args, appdir, **env)
    try:
        assert proc.wait_for_line("Serving on") == expected
        fetch(port)  # answered: the signal handlers are in place
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_bad_log_config_is_a_usage_error(appdir):
    (appdir / "bad.json").write_text("{not json")
    result = run_cli(["--log-config=bad.json", "cfgapp:app"], appdir)
    assert result.returncode == 2
    assert "log_config: bad.json is not a usable logging configuration" in result.stderr


APP_LOGGING_SCRIPT = """
import logging, sys
logging.basicConfig(format="APPFMT %(name)s %(message)s", level=logging.INFO)
sys.path.insert(0, ".")
from cfgapp import app
from maitre import serve
serve(app, listen=sys.argv[1])
"""


def test_application_logging_setup_is_kept(appdir):
    """An application that set up logging itself keeps its format."""
    port = free_port()
    proc = ServerProcess(
        [sys.executable, "-c", APP_LOGGING_SCRIPT, f"{HOST}:{port}"],
        cwd=appdir,
        env=clean_env(),
    )
    try:
        line = proc.wait_for_line("Serving on")
        assert line == f"APPFMT maitre Serving on http://{HOST}:{port}", line
        fetch(port)  # answered: the signal handlers are in place
        assert proc.stop() == 0
    finally:
        proc.kill()


# ------------------------------------ 12. environment, --config, precedence


def test_precedence_command_line_environment_file_default(appdir):
    (appdir / "maitre.toml").write_text(
        'threads = 3\nchannel-timeout = 33\nident = "from-file"\n'
        "expose_tracebacks = true\n"
    )
    env = {"MAITRE_THREADS": "5", "MAITRE_CHANNEL_TIMEOUT": "55"}
    rows = check_config(["--config=maitre.toml", "--threads=7"], appdir, **env)
    assert rows["threads"] == ("7", "command line (--threads)")
    assert rows["channel_timeout"] == ("55", "environment (MAITRE_CHANNEL_TIMEOUT)")
    assert rows["ident"] == ("from-file", "file maitre.toml")
    assert rows["expose_tracebacks"] == ("on", "file maitre.toml")
    assert rows["connection_limit"] == ("100", "default")
    rows = check_config(["--config=maitre.toml"], appdir, **env)
    assert rows["threads"] == ("5", "environment (MAITRE_THREADS)")
    rows = check_config(["--config=maitre.toml"], appdir)
    assert rows["threads"] == ("3", "file maitre.toml")
    assert check_config([], appdir)["threads"] == ("4", "default")


def test_address_settings_move_as_a_group(appdir):
    """listen in the file, --port on the command line: the port wins, no
    conflict between sources."""
    (appdir / "maitre.toml").write_text(f'listen = ["{HOST}:1"]\n')
    rows = check_config(["--config=maitre.toml", f"--host={HOST}", "--port=9"], appdir)
    assert rows["listen"][0] == f"{HOST}:9"
    assert rows["port"] == ("9", "command line (--port)")


def test_file_and_environment_serve(appdir):
    """A real server configured by a TOML file and the environment only."""
    port = free_port()
    (appdir / "maitre.toml").write_text(f'listen = "{HOST}:{port}"\nthreads = 2\n')
    proc = serve_cli(
        ["--config=maitre.toml", "cfgapp:app"], appdir, MAITRE_IDENT="env-ident"
    )
    try:
        proc.wait_for_line(f"Serving on http://{HOST}:{port}")
        with RawConnection(port) as conn:
            resp = conn.request(get("/"))
        assert resp.header("server") == "env-ident"
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_bad_values_name_their_source(appdir):
    (appdir / "maitre.toml").write_text("treads = 3\n")
    result = run_cli(["--config=maitre.toml", "cfgapp:app"], appdir)
    assert result.returncode == 2
    assert "'treads' is not a setting; did you mean threads" in result.stderr
    (appdir / "maitre.toml").write_text("threads = [\n")
    result = run_cli(["--config=maitre.toml", "cfgapp:app"], appdir)
    assert result.returncode == 2 and "is not valid TOML" in result.stderr
    result = run_cli(["cfgapp:app"], appdir, MAITRE_THREADS="zero")
    assert result.returncode == 2
    assert "Invalid value for threads: 'zero'" in result.stderr
    result = run_cli(["--check-config"], appdir, MAITRE_TREADS="3")
    assert "MAITRE_TREADS is not a setting (did you mean MAITRE_THREADS?)" in (
        result.stderr
    )


def test_serve_reads_no_environment(monkeypatch):
    """Only the command line reads MAITRE_*: a library call is the same anywhere."""
    monkeypatch.setenv("MAITRE_THREADS", "9")
    monkeypatch.setenv("MAITRE_LISTEN", "127.0.0.1:1")
    server = maitre.create_server(
        lambda e, s: [],
        host=HOST,
        port=0,
    )
    try:
        assert server.adj.threads == 4
        assert Adjustments().threads == 4
    finally:
        server.close()


# ------------------------------------------------------ 13. small things


@pytest.mark.parametrize("how", ["flag", "env"])
def test_workers_are_capped(appdir, how):
    args, env = ["cfgapp:app"], {}
    if how == "flag":
        args.insert(0, "--workers=99999999999")
    else:
        env["MAITRE_WORKERS"] = "99999999999"
    result = run_cli(args, appdir, **env)
    assert result.returncode == 2, result.stderr
    assert f"workers must be at most {MAX_WORKERS}, not 99999999999" in result.stderr
    assert "Booting worker" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pid_file_failure_is_named(appdir, workers):
    pid_file = appdir / "no-such-dir" / "maitre.pid"
    result = run_cli(
        [
            f"--pid-file={pid_file}",
            f"--workers={workers}",
            f"--listen={HOST}:0",
            "cfgapp:app",
        ],
        appdir,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot listen" not in result.stderr, result.stderr
    assert (
        f"Error: pid_file: cannot write {pid_file}: No such file or directory"
        in result.stderr
    )


FORK_FAILS = """
import errno, os, sys
def fork():
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
os.fork = fork
sys.argv[0] = "maitre-serve"
from maitre.runner import main
main()
"""


def test_fork_failure_is_named(appdir):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FORK_FAILS,
            "--workers=2",
            f"--listen={HOST}:0",
            "cfgapp:app",
        ],
        cwd=appdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
    )
    assert result.returncode == 1, result.stderr
    assert "cannot listen" not in result.stderr, result.stderr
    assert "Serving on" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "Error: cannot start a worker process: fork failed: "
        "Resource temporarily unavailable"
    )
