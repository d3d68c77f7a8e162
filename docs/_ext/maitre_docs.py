"""Generated parts of the documentation, filled in when Sphinx reads a page:

- ``<!-- generated: settings -->`` (settings.md): one row per entry of
  ``maitre.adjustments.SETTINGS`` (name, ``--flag``, default, meaning);
- ``<!-- generated: metrics -->`` (observability.md): every metric family that a
  running maitre serves on ``/metrics``.

The metrics are read from a running server, not from the Rust source: what is
documented is what a scrape returns (names, types, help texts, labels), parsed with
prometheus_client's own parser, however the code producing it is arranged. The
server is ``python -m maitre`` with two workers (so the per-worker series are there
too) on free loopback ports, stopped by its PID.

The functions are importable (tests/test_docs.py uses them) without Sphinx.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

MARKERS = {
    "settings": "<!-- generated: settings -->",
    "observability": "<!-- generated: metrics -->",
}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(setting) -> str:
    try:  # the same rendering as ``maitre-serve --help``
        from maitre.runner import _format_default

        return _format_default(setting)
    except Exception:  # pragma: no cover - a reshaped runner
        return repr(setting.default)


def _flags(setting) -> str:
    from maitre.adjustments import asbool

    flag = setting.name.replace("_", "-")
    if getattr(setting, "convert", None) is asbool:
        return f"`--{flag}`, `--no-{flag}`"
    return f"`--{flag}={setting.metavar or 'VALUE'}`"


def settings_markdown() -> str:
    """A Markdown table of every setting, in the order of the table."""
    from maitre.adjustments import SETTINGS

    rows = [
        "| setting | command line | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        rows.append(
            f"| `{s.name}` | {_flags(s)} | `{_cell(_default(s))}` | {_cell(s.help)} |"
        )
    return "\n".join(rows) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def scrape_metrics(timeout: float = 30.0) -> str:
    """The /metrics text of a maitre with two workers that has answered a request."""
    port, metrics_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maitre",
            "--workers=2",
            "--threads=1",
            f"--listen=127.0.0.1:{port}",
            f"--metrics-listen=127.0.0.1:{metrics_port}",
            "maitre.demo:app",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _get(f"http://127.0.0.1:{port}/")
                text = _get(f"http://127.0.0.1:{metrics_port}/metrics").decode()
                # the request is counted once answered: wait until it shows
                if "maitre_requests_total{" in text:
                    return text
                time.sleep(0.2)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "maitre did not serve the demo app and /metrics "
                        f"(exit status {proc.poll()})"
                    ) from None
                time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def metrics_families(text: str) -> list:
    """``(name, type, help, label names)`` of each family in a /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    families = []
    for family in text_string_to_metric_families(text):
        labels = set()
        for sample in family.samples:
            labels.update(sample.labels)
        labels.discard("le")  # a histogram's buckets, not a dimension
        name = family.name
        if family.type == "counter":
            name += "_total"  # the parser drops the suffix of counters
        families.append((name, family.type, family.documentation, sorted(labels)))
    return families


def metrics_markdown() -> str:
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for name, kind, doc, labels in metrics_families(scrape_metrics()):
        shown = ", ".join(f"`{label}`" for label in labels) or "-"
        rows.append(f"| `{name}` | {kind} | {shown} | {_cell(doc)} |")
    return "\n".join(rows) + "\n"


GENERATORS = {"settings": settings_markdown, "observability": metrics_markdown}


def _fill(app, docname, source):
    marker = MARKERS.get(docname)
    if marker is None:
        return
    if marker not in source[0]:
        raise RuntimeError(f"{docname}: the marker {marker} is missing")
    source[0] = source[0].replace(marker, GENERATORS[docname]())


def setup(app):
    app.connect("source-read", _fill)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
