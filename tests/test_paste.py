"""PasteDeploy: ``[server:main] use = egg:<server>#main`` loaded by the real
pastedeploy package from a real ini file, serving an app that PasteDeploy loaded
from a factory module, with the ini's string values converted by the settings
table."""

from __future__ import annotations

import importlib
import importlib.metadata
import signal
import sys
import textwrap

import pytest
from apps import hello_app
from helpers import HOST, TARGET, RawConnection, ServerProcess, get, maitre_only

pytest.importorskip("paste.deploy", reason="needs the pastedeploy package")
from paste.deploy import loadserver  # noqa: E402
from paste.deploy.loadwsgi import SERVER, loadcontext  # noqa: E402

APP_FACTORY = '''
def make_app(global_conf, greeting="hello", **local_conf):
    """A PasteDeploy app factory: its settings come from [app:main]."""
    def app(environ, start_response):
        body = "|".join([
            greeting,
            global_conf.get("shared", ""),
            environ["SCRIPT_NAME"],
            environ["PATH_INFO"],
            environ["wsgi.url_scheme"],
        ]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    return app
'''

INI = """
[DEFAULT]
shared = from-defaults

[app:main]
use = call:pasteapp:make_app
greeting = hello-from-ini

[server:main]
use = egg:{target}#main
listen = 127.0.0.1:0
threads = 2
ident = paste-ident
url_prefix = /mount/
url_scheme = https
expose_tracebacks = true
channel_timeout = 60
clear_untrusted_proxy_headers = false
ipv6 = false
"""

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(name)s|%(message)s")
from paste.deploy import loadapp, loadserver
uri = "config:" + sys.argv[1]
app = loadapp(uri)
server = loadserver(uri)
server(app)
print("server-returned", flush=True)
"""


def test_serve_from_ini_file(tmp_path):
    """loadapp + loadserver from one ini file; the server runs in a child
    process, answers a request with every ini setting applied, and stops on
    SIGTERM."""
    (tmp_path / "pasteapp.py").write_text(APP_FACTORY)
    ini = tmp_path / "site.ini"
    ini.write_text(INI.format(target=TARGET))
    proc = ServerProcess([sys.executable, "-c", SCRIPT, str(ini)], cwd=tmp_path)
    try:
        [line] = proc.wait_for_lines("Serving on")
        prefix = f"{TARGET}|Serving on http://{HOST}:"
        assert line.startswith(prefix), line
        port = int(line[len(prefix) :])
        with RawConnection(port) as conn:
            resp = conn.request(get("/mount/page"))
        assert resp.status == 200
        assert resp.body == b"hello-from-ini|from-defaults|/mount|/page|https"
        assert resp.header("Server") == "paste-ident"
        code = proc.stop(signal.SIGTERM)
    finally:
        proc.kill()
    assert code in (0, -signal.SIGTERM), proc.stderr  # waitress: killed by it
    assert "Traceback" not in proc.stderr, proc.stderr


def test_entry_point():
    """The package declares its runner in the paste.server_runner group."""
    [ep] = [
        ep
        for ep in importlib.metadata.entry_points(group="paste.server_runner")
        if ep.name == "main" and ep.value.split(":")[0] == TARGET
    ]
    assert ep.value == f"{TARGET}:serve_paste"
    assert ep.load() is importlib.import_module(TARGET).serve_paste


def _write_ini(tmp_path, **settings) -> str:
    lines = [f"{key} = {value}" for key, value in settings.items()]
    ini = tmp_path / "server.ini"
    ini.write_text(
        f"[server:main]\nuse = egg:{TARGET}#main\n" + textwrap.dedent("\n".join(lines))
    )
    return f"config:{ini}"


def _run_quietly(uri: str, app, **hooks):
    """What loadserver(uri)(app) does, plus serve()'s test hooks (``_quiet``,
    ``_server``), which the wrapper of loadserver cannot pass."""
    context = loadcontext(SERVER, uri)
    assert context.object is importlib.import_module(TARGET).serve_paste
    assert all(isinstance(v, str) for v in context.local_conf.values())
    return context.object(app, context.global_conf, **context.local_conf, **hooks)


class RecordingServer:
    """A stand-in for create_server (serve()'s ``_server`` test hook): records the
    settings it is given and the Adjustments they make, serves nothing."""

    def __init__(self):
        self.kw = None
        self.adj = None

    def __call__(self, app, **kw):
        self.kw = kw
        self.adj = importlib.import_module(f"{TARGET}.adjustments").Adjustments(**kw)
        return self

    def print_listen(self, fmt):
        pass

    def run(self):
        pass

    def close(self):
        pass


def test_ini_strings_converted_by_the_settings_table(tmp_path):
    """Every value arrives as a string and is converted like a keyword of
    serve()."""
    uri = _write_ini(
        tmp_path,
        host="127.0.0.1",
        port="8099",
        threads="7",
        connection_limit="12",
        expose_tracebacks="yes",
        log_socket_errors="off",
        url_prefix="app/",
        trusted_proxy="10.0.0.1",
        trusted_proxy_headers="x-forwarded-for\n    x-forwarded-proto",
        unix_socket_perms="640",
    )
    assert callable(loadserver(uri))
    recorder = RecordingServer()
    assert _run_quietly(uri, hello_app, _server=recorder, _quiet=True) == 0
    assert recorder.kw["threads"] == "7"
    adj = recorder.adj
    assert (adj.threads, adj.connection_limit, adj.port) == (7, 12, 8099)
    assert (adj.expose_tracebacks, adj.log_socket_errors) == (True, False)
    assert adj.url_prefix == "/app"
    assert adj.trusted_proxy_headers == {"x-forwarded-for", "x-forwarded-proto"}
    assert adj.unix_socket_perms == 0o640


@pytest.mark.parametrize(
    "setting,value", [("threads", "many"), ("no_such_setting", "1")]
)
def test_bad_ini_value_fails_at_start(tmp_path, setting, value):
    """A bad value in the ini: ValueError before anything is served."""
    uri = _write_ini(tmp_path, listen=f"{HOST}:0", **{setting: value})
    with pytest.raises(ValueError, match=value if setting == "threads" else setting):
        _run_quietly(uri, hello_app, _quiet=True)


@maitre_only("waitress's int() error does not name the setting")
def test_bad_ini_value_names_the_setting(tmp_path):
    uri = _write_ini(tmp_path, listen=f"{HOST}:0", threads="many")
    with pytest.raises(ValueError, match="threads"):
        _run_quietly(uri, hello_app, _quiet=True)
