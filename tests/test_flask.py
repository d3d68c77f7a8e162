"""A Flask application served end to end through the real server."""

from __future__ import annotations

import hashlib

import pytest
import requests
from helpers import IDENT

flask = pytest.importorskip("flask")

TIMEOUT = 10


def make_app():
    app = flask.Flask("maitre_flask_test")

    @app.route("/")
    def index():
        return "Hello from Flask"

    @app.route("/json")
    def json_view():
        return flask.jsonify(
            method=flask.request.method,
            args=flask.request.args.to_dict(flat=False),
            path=flask.request.path,
            script_root=flask.request.script_root,
            remote_addr=flask.request.remote_addr,
        )

    @app.route("/items/<int:item_id>", methods=["GET", "PUT", "DELETE"])
    def item(item_id):
        if flask.request.method == "PUT":
            return flask.jsonify(id=item_id, data=flask.request.get_json()), 201
        if flask.request.method == "DELETE":
            return "", 204
        return flask.jsonify(id=item_id)

    @app.route("/form", methods=["POST"])
    def form():
        return flask.jsonify(form=flask.request.form.to_dict(flat=False))

    @app.route("/upload", methods=["POST"])
    def upload():
        f = flask.request.files["file"]
        data = f.read()
        return flask.jsonify(
            filename=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest()
        )

    @app.route("/caf\u00e9/<name>")
    def unicode_route(name):
        return f"unicode route {name}"

    @app.route("/stream")
    def stream():
        def generate():
            for i in range(100):
                yield f"line {i}\n"

        return flask.Response(generate(), mimetype="text/plain")

    @app.route("/redirect")
    def redirect():
        return flask.redirect(flask.url_for("json_view", **{"from": "redirect"}))

    @app.route("/cookie")
    def cookie():
        resp = flask.make_response("cookie set")
        resp.set_cookie("session", "abc123")
        return resp

    @app.route("/boom")
    def boom():
        raise RuntimeError("flask view failed")

    return app


@pytest.fixture
def flask_server(serve_app):
    return serve_app(make_app())


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def test_flask_index(flask_server, session):
    """A plain text route: 200, body, Server header."""
    resp = session.get(flask_server.url + "/", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.text == "Hello from Flask"
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Server"] == IDENT


def test_flask_json_and_query(flask_server, session):
    """JSON response and query-string parsing (repeated and UTF-8 args)."""
    resp = session.get(
        flask_server.url + "/json",
        params=[("a", "1"), ("a", "2"), ("name", "café")],
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {
        "method": "GET",
        "args": {"a": ["1", "2"], "name": ["café"]},
        "path": "/json",
        "script_root": "",
        "remote_addr": "127.0.0.1",
    }


def test_flask_unicode_path(flask_server, session):
    """A percent-encoded UTF-8 path reaches the router correctly (the latin-1
    tunnelling of PATH_INFO is undone by the framework)."""
    resp = session.get(flask_server.url + "/caf%C3%A9/z%C3%BC", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.text == "unicode route z\u00fc"
    resp = session.get(flask_server.url + "/items/42", timeout=TIMEOUT)
    assert resp.json() == {"id": 42}


def test_flask_form_post(flask_server, session):
    """A urlencoded form POST is parsed by Flask."""
    resp = session.post(
        flask_server.url + "/form",
        data={"name": "Zoë", "tags": ["x", "y"]},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200
    assert resp.json() == {"form": {"name": ["Zoë"], "tags": ["x", "y"]}}


def test_flask_multipart_upload(flask_server, session):
    """A multipart file upload of 2 MB arrives intact."""
    data = bytes(range(256)) * 8192
    resp = session.post(
        flask_server.url + "/upload",
        files={"file": ("data.bin", data, "application/octet-stream")},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "filename": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_flask_put_json_and_delete(flask_server, session):
    """PUT with a JSON body (201) and DELETE (204, empty body)."""
    resp = session.put(
        flask_server.url + "/items/7", json={"k": [1, 2]}, timeout=TIMEOUT
    )
    assert resp.status_code == 201
    assert resp.json() == {"id": 7, "data": {"k": [1, 2]}}
    resp = session.delete(flask_server.url + "/items/7", timeout=TIMEOUT)
    assert resp.status_code == 204
    assert resp.content == b""


def test_flask_404_and_405(flask_server, session):
    """Unknown route: 404; wrong method: 405 with Allow."""
    resp = session.get(flask_server.url + "/nope", timeout=TIMEOUT)
    assert resp.status_code == 404
    assert "Not Found" in resp.text
    resp = session.get(flask_server.url + "/form", timeout=TIMEOUT)
    assert resp.status_code == 405
    assert "POST" in resp.headers["Allow"]


def test_flask_streaming_response(flask_server, session):
    """A streamed (generator) Flask response arrives complete."""
    resp = session.get(flask_server.url + "/stream", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.text == "".join(f"line {i}\n" for i in range(100))


def test_flask_redirect_and_cookie(flask_server, session):
    """Redirects are followed; Set-Cookie reaches the client."""
    resp = session.get(flask_server.url + "/redirect", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.history[0].status_code == 302
    assert resp.json()["args"] == {"from": ["redirect"]}
    resp = session.get(flask_server.url + "/cookie", timeout=TIMEOUT)
    assert resp.text == "cookie set"
    assert session.cookies.get("session") == "abc123"


def test_flask_view_exception_is_500(flask_server, session):
    """An exception in a view is Flask's own 500 page; the server goes on."""
    resp = session.get(flask_server.url + "/boom", timeout=TIMEOUT)
    assert resp.status_code == 500
    assert "Internal Server Error" in resp.text
    assert session.get(flask_server.url + "/", timeout=TIMEOUT).status_code == 200


def test_flask_url_prefix(serve_app, session):
    """url_prefix mounts the Flask app below a path (SCRIPT_NAME)."""
    srv = serve_app(make_app(), url_prefix="/mount")
    resp = session.get(srv.url + "/mount/json", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.json()["script_root"] == "/mount"
    assert resp.json()["path"] == "/json"
    resp = session.get(srv.url + "/mount/redirect", timeout=TIMEOUT)
    assert resp.history[0].headers["Location"] == "/mount/json?from=redirect"


def test_flask_many_requests_on_one_session(flask_server, session):
    """200 sequential requests over keep-alive connections all succeed."""
    for i in range(200):
        resp = session.get(flask_server.url + f"/items/{i}", timeout=TIMEOUT)
        assert resp.json() == {"id": i}
