"""Several applications by path: ``maitre.dispatch.PathDispatcher`` with CherryPy's
semantics (longest prefix, whole segments, the prefix moved from PATH_INFO to
SCRIPT_NAME, 404 when nothing matches), served for real, composed with
``url_prefix``, and from the command line with ``--mount``."""

from __future__ import annotations

import json
import signal
import sys

import pytest
from helpers import HOST, RawConnection, ServerProcess, free_port, maitre_only

pytestmark = maitre_only("waitress has no path dispatcher")


def named(name):
    def app(environ, start_response):
        out = json.dumps(
            {
                "app": name,
                "script_name": environ["SCRIPT_NAME"],
                "path_info": environ["PATH_INFO"],
                "query": environ["QUERY_STRING"],
            }
        ).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(out)))],
        )
        return [out]

    return app


def ask(served, path):
    resp = served.request(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    if resp.status != 200:
        return resp.status
    d = json.loads(resp.body)
    return d["app"], d["script_name"], d["path_info"]


@pytest.fixture
def mounted(serve_app):
    from maitre.dispatch import PathDispatcher

    def start(apps, **settings):
        return serve_app(PathDispatcher(apps), **settings)

    return start


def test_longest_prefix_on_segment_boundaries(mounted):
    served = mounted(
        {"/": named("site"), "/api": named("api"), "/api/v2/": named("v2")}
    )
    assert ask(served, "/") == ("site", "", "/")
    assert ask(served, "/about") == ("site", "", "/about")
    assert ask(served, "/api") == ("api", "/api", "")
    assert ask(served, "/api/") == ("api", "/api", "/")
    assert ask(served, "/api/users/1?x=1") == ("api", "/api", "/users/1")
    assert ask(served, "/api/v2") == ("v2", "/api/v2", "")
    assert ask(served, "/api/v2/x") == ("v2", "/api/v2", "/x")
    assert ask(served, "/api/v20") == ("api", "/api", "/v20")
    # /apiary is not under /api: the site gets it, whole.
    assert ask(served, "/apiary") == ("site", "", "/apiary")


def test_no_match_is_404(mounted):
    served = mounted({"/api": named("api"), "/static": named("static")})
    assert ask(served, "/apiary") == 404
    assert ask(served, "/") == 404
    resp = served.request(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 404 and resp.body == b"Not Found\n"
    assert ask(served, "/static/a.css") == ("static", "/static", "/a.css")


def test_composes_with_url_prefix(mounted):
    served = mounted({"/": named("site"), "/api": named("api")}, url_prefix="/app")
    assert ask(served, "/app/api/x") == ("api", "/app/api", "/x")
    assert ask(served, "/app/page") == ("site", "/app", "/page")
    # An empty PATH_INFO is taken as "/" (CherryPy's rule).
    assert ask(served, "/app") == ("site", "/app", "/")


def test_percent_decoded_path_and_query_kept(mounted):
    served = mounted({"/a b": named("spaced")})
    resp = served.request(b"GET /a%20b/c?q=%20 HTTP/1.1\r\nHost: x\r\n\r\n")
    d = json.loads(resp.body)
    assert (d["app"], d["script_name"], d["path_info"], d["query"]) == (
        "spaced",
        "/a b",
        "/c",
        "q=%20",
    )


def test_bad_mounts_are_refused():
    from maitre.dispatch import PathDispatcher

    with pytest.raises(ValueError, match="start with '/'"):
        PathDispatcher({"api": named("api")})
    with pytest.raises(ValueError, match="not callable"):
        PathDispatcher({"/api": "nope"})
    with pytest.raises(ValueError, match="two applications"):
        PathDispatcher([("/api", named("a")), ("/api/", named("b"))])


def test_cli_mounts(tmp_path):
    (tmp_path / "mounts.py").write_text(
        "import json\n"
        "def make(name):\n"
        "    def app(environ, start_response):\n"
        "        out = json.dumps([name, environ['SCRIPT_NAME'],"
        " environ['PATH_INFO']]).encode()\n"
        "        start_response('200 OK', [('Content-Length', str(len(out)))])\n"
        "        return [out]\n"
        "    return app\n"
        "site, api, admin = make('site'), make('api'), make('admin')\n"
    )
    port = free_port()
    proc = ServerProcess(
        [
            sys.executable,
            "-m",
            "maitre",
            f"--listen={HOST}:{port}",
            "--mount=/api=mounts:api",
            "--mount=/admin/=mounts:admin",
            "mounts:site",
        ],
        cwd=str(tmp_path),
    )
    try:
        proc.wait_for_line("Serving on")
        with RawConnection(port) as conn:
            for path, expected in [
                ("/api/x", ["api", "/api", "/x"]),
                ("/admin", ["admin", "/admin", ""]),
                ("/apiary", ["site", "", "/apiary"]),
            ]:
                conn.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert json.loads(conn.read_response().body) == expected
    finally:
        proc.stop(signal.SIGTERM)
        proc.kill()


@pytest.mark.parametrize(
    "mount, message",
    [("api=mounts:api", "PREFIX=MODULE:OBJECT"), ("/api=nomodule:app", "nomodule")],
)
def test_cli_bad_mount(tmp_path, mount, message):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "maitre", f"--mount={mount}"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
