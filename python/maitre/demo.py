"""A small demo WSGI application bundled with maitre.

Run it with::

    python3 -m maitre --listen=127.0.0.1:8080 maitre.demo:app

(or ``maitre-serve --listen=127.0.0.1:8080 maitre.demo:app``) and open
http://127.0.0.1:8080/ in a browser.  Every page shows the request the server
received: method, path, query, protocol, client address, the request headers,
the whole WSGI environ, and a form that POSTs back to the same page so the
request body is shown too.  ``/hello`` answers ``text/plain`` "Hello, world!".

It is a plain WSGI application that uses only the standard library, so it runs
the same under any WSGI server.
"""

from html import escape
from urllib.parse import parse_qsl

__all__ = ["app"]

#: How much of the request body the page shows (the length is always shown).
BODY_PREVIEW = 2048

_HELLO = b"Hello, world!"

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1d1d1f;
       background: #fafafa; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h1 small { font-weight: normal; color: #6e6e73; font-size: 1rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd;
     padding-bottom: .2rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; vertical-align: top; padding: .25rem .5rem;
         border-bottom: 1px solid #eee; }
th { width: 16rem; font-weight: 600; white-space: nowrap; }
td, code, pre, textarea, input { font-family: ui-monospace, SFMono-Regular,
         Menlo, Consolas, monospace; font-size: 13px; }
td { word-break: break-all; }
pre { background: #fff; border: 1px solid #ddd; padding: .6rem;
      white-space: pre-wrap; word-break: break-all; }
form { background: #fff; border: 1px solid #ddd; padding: .8rem; }
label { display: block; margin: .3rem 0; }
input[type=text], textarea { width: 100%; box-sizing: border-box; }
button { margin-top: .5rem; padding: .3rem 1rem; }
.muted { color: #6e6e73; }
"""


def _wsgi_str(value):
    """Decode a WSGI "bytes-as-latin-1" string (PATH_INFO...) for display."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def _read_body(environ):
    """Read the whole request body; return (length, first BODY_PREVIEW bytes)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return 0, b""
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    total = 0
    head = bytearray()
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)
        total += len(chunk)
        if len(head) < BODY_PREVIEW:
            head += chunk[: BODY_PREVIEW - len(head)]
    return total, bytes(head)


def _rows(pairs):
    """Render (name, value) pairs as HTML table rows, escaping both."""
    out = []
    for name, value in pairs:
        if not isinstance(value, str):
            value = repr(value)
        out.append(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>")
    if not out:
        out.append('<tr><td class="muted" colspan="2">(none)</td></tr>')
    return "\n".join(out)


def _request_headers(environ):
    """The request headers, as the server passed them in the environ."""
    headers = []
    for key in sorted(environ):
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and environ[key]:
            name = key
        else:
            continue
        headers.append((name.replace("_", "-").title(), environ[key]))
    return headers


def _page(environ):
    method = environ.get("REQUEST_METHOD", "")
    path = _wsgi_str(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    query = _wsgi_str(environ.get("QUERY_STRING", ""))
    client = environ.get("REMOTE_ADDR", "")
    if environ.get("REMOTE_PORT"):
        client = f"{client}:{environ['REMOTE_PORT']}"
    length, head = _read_body(environ)

    summary = [
        ("Method", method),
        ("Path", path),
        ("Query", query),
        ("Protocol", environ.get("SERVER_PROTOCOL", "")),
        ("Client", client),
        ("Server", environ.get("SERVER_SOFTWARE", "")),
    ]

    body_html = ""
    if length or method == "POST":
        text = head.decode("utf-8", "replace")
        note = f" (first {BODY_PREVIEW} bytes shown)" if length > len(head) else ""
        body_html = (
            "<h2>Request body</h2>\n"
            f"<p>{length} bytes{note}</p>\n"
            f"<pre>{escape(text)}</pre>"
        )
        ctype = environ.get("CONTENT_TYPE", "")
        if ctype.startswith("application/x-www-form-urlencoded") and not note:
            fields = parse_qsl(text, keep_blank_values=True)
            body_html += f"\n<h3>Form fields</h3>\n<table>\n{_rows(fields)}\n</table>"

    environ_rows = _rows((key, environ[key]) for key in sorted(environ))
    headers = _rows(_request_headers(environ))
    hello = escape(environ.get("SCRIPT_NAME", "") + "/hello")

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>maitre demo</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>maitre demo <small>{escape(method)} {escape(path)}</small></h1>
<p class="muted">This page shows the request your browser just sent.
Try <a href="{hello}">/hello</a> or
<a href="?name=value&amp;x=1">a query string</a>.</p>

<h2>Request</h2>
<table>
{_rows(summary)}
</table>

<h2>Headers</h2>
<table>
{headers}
</table>

<h2>Send a POST</h2>
<form method="post">
<label>Name <input type="text" name="name" value="maitre"></label>
<label>Message <textarea name="message" rows="3">Hello from a form!</textarea>
</label>
<button type="submit">POST it</button>
</form>
{body_html}

<h2>WSGI environ</h2>
<table>
{environ_rows}
</table>
</body>
</html>
"""


def app(environ, start_response):
    """The demo WSGI application."""
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        body = _HELLO
        status = "200 OK"
        ctype = "text/plain; charset=utf-8"
    elif path == "/favicon.ico":
        body = b"Not Found"
        status = "404 Not Found"
        ctype = "text/plain; charset=utf-8"
    else:
        body = _page(environ).encode("utf-8")
        status = "200 OK"
        ctype = "text/html; charset=utf-8"
    start_response(
        status,
        [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]
