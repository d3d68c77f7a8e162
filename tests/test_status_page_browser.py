"""The status page in a real headless browser, at a desktop's and a phone's width:
it renders, and it fits the width without sideways scrolling (the page measures
itself under ``?check`` and posts the result to the page framing it). Headless
Chromium makes no window narrower than 500 px, so the page is framed in an iframe of
the width under test, as a phone's viewport: its media queries and ``innerWidth`` are
the frame's. Skipped without a
Chromium on PATH (``.ci/run`` installs one). The screenshots go to the artefacts
directory, out of git, for a person to look at."""

from __future__ import annotations

import os
import re
import struct
import threading
from pathlib import Path

import pytest
from helpers import HOST, headless, maitre_only

pytestmark = maitre_only("waitress has no status page")

ARTEFACTS = Path(
    os.environ.get(
        "MAITRE_TEST_ARTEFACTS", Path(__file__).resolve().parent.parent / "artefacts"
    )
)

release = threading.Event()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/block":
        release.wait(30)
    status = (
        "500 Internal Server Error" if environ["PATH_INFO"] == "/boom" else "200 OK"
    )
    start_response(status, [("Content-Length", "2")])
    return [b"ok"]


FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="{src}" width="{width}" height="900"
 style="border:0;display:block"></iframe>
<pre id="result"></pre>
<script>addEventListener('message', function (e) {{
  document.getElementById('result').textContent = e.data }})</script>
</body></html>
"""


def get(port: int, path: str) -> None:
    import socket

    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        while sock.recv(65536):
            pass


@pytest.mark.timeout(300)
@pytest.mark.parametrize("width", [1280, 400])
def test_the_page_fits_desktop_and_phone_widths(serve_app, chromium, width, tmp_path):
    release.clear()
    served = serve_app(app, threads=2, metrics_listen=f"{HOST}:0")
    for _ in range(30):
        get(served.port, "/hello")
    get(served.port, "/boom")
    # One thread held, so that the page has a busy thread and a long row.
    blocker = threading.Thread(target=get, args=(served.port, "/block"))
    blocker.start()
    try:
        host, port = served.server.metrics_address
        url = f"http://{host}:{port}/"

        def framed(name, src):
            page = tmp_path / name
            page.write_text(FRAME.format(width=width, src=src))
            return page.as_uri()

        check = framed("check.html", url + "?check")
        # The frame's message may miss the virtual time budget on a loaded machine:
        # a few tries before calling it missing.
        for _ in range(3):
            dom = headless(
                chromium,
                f"--window-size={width},900",
                "--virtual-time-budget=10000",
                "--dump-dom",
                check,
            )
            assert dom.returncode == 0, dom.stderr[-2000:]
            m = re.search(
                r'id="result">scrollWidth=(\d+) innerWidth=(\d+) fits=(\w+)<',
                dom.stdout,
            )
            if m:
                break
        assert m, dom.stdout[-3000:]
        scroll, inner, fits = int(m[1]), int(m[2]), m[3]
        assert inner == width, (scroll, inner)
        assert fits == "true" and scroll <= inner, (scroll, inner)
        # And unframed, the page itself has what the test looks for.
        page = headless(
            chromium, f"--window-size={width},900", "--dump-dom", url, timeout=90
        )
        assert 'id="p99"' in page.stdout and "last minute" in page.stdout

        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTEFACTS / f"status-page-{width}.png"
        shot.unlink(missing_ok=True)
        result = headless(
            chromium,
            f"--screenshot={shot}",
            f"--window-size={width},900",
            "--virtual-time-budget=1000",
            framed("shot.html", url),
        )
        assert result.returncode == 0, result.stderr[-2000:]
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (width, 900)
    finally:
        release.set()
        blocker.join(10)
