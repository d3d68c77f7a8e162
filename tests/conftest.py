"""Fixtures: serve a WSGI app on 127.0.0.1 with the server under test.

``MAITRE_TEST_TARGET=maitre`` (default) uses ``maitre.create_server``;
``MAITRE_TEST_TARGET=waitress`` uses ``waitress.server.create_server``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import (  # noqa: E402
    HOST,
    IDENT,
    TARGET,
    RawConnection,
    create_server,
    find_chromium,
    stop_server,
)


def pytest_report_header(config):
    return f"server under test: {TARGET} (set MAITRE_TEST_TARGET to change)"


@dataclass
class Served:
    """A running server: where to reach it and the server object itself."""

    server: object
    thread: threading.Thread
    host: str
    port: int
    ident: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> RawConnection:
        return RawConnection(self.port, self.host)

    def request(self, data: bytes, method=None):
        with self.connect() as conn:
            return conn.request(data, method)


class AccessRecords(list):
    """The records the ``maitre.access`` logger emitted during a test."""

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self]


@pytest.fixture
def access_records():
    """The records the ``maitre.access`` logger emits during the test, at INFO (an
    ``AccessRecords``: ``.messages()`` for their lines)."""
    records = AccessRecords()

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    access = logging.getLogger("maitre.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        yield records
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)


@pytest.fixture(scope="session")
def chromium():
    """A Chromium for the headless-browser tests: found on PATH, or installed with
    apt-get when root (.ci/run installs it beforehand); else the test is skipped."""
    found = find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is missing and cannot be installed (no apt-get or root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (
        ["install", "-y", "chromium"],
        ["update"],
        ["install", "-y", "chromium"],
    ):
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=900,
        )
        found = find_chromium()
        if found:
            return found
    pytest.skip("chromium could not be installed with apt-get")


@pytest.fixture
def target():
    """Name of the server under test: "maitre" or "waitress"."""
    return TARGET


@pytest.fixture
def ident():
    """Default ident (``Server:`` header, SERVER_SOFTWARE) of the server under test."""
    return IDENT


@pytest.fixture
def serve_app():
    """Factory: ``serve_app(app, **settings)`` starts a server and returns a Served.

    The server listens on 127.0.0.1 on an ephemeral port, ``run()`` runs in a
    daemon thread, and every server started is closed at teardown.
    """
    started = []

    def start(app, **settings):
        if "listen" not in settings:
            settings.setdefault("host", HOST)
            settings.setdefault("port", 0)
        settings.setdefault("threads", 4)
        server = create_server(app, **settings)
        thread = threading.Thread(
            target=server.run, name=f"{TARGET}-test-server", daemon=True
        )
        served = Served(
            server=server,
            thread=thread,
            host=HOST,
            port=int(server.effective_port),
            ident=settings.get("ident", IDENT),
        )
        started.append(served)
        thread.start()
        return served

    yield start
    errors = []
    for served in reversed(started):
        try:
            stop_server(served.server, served.thread)
        except Exception as exc:  # report every server that failed to stop
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for localhost/127.0.0.1 and client certificates
    (helpers.Pki), written to files in the test's own directory."""
    from helpers import Pki

    return Pki(tmp_path)
