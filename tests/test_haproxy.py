"""Behind a real HAProxy: the configuration of docs/haproxy.cfg (health checks on
/readyz every 250 ms, ``retries 0``, PROXY protocol v2) in front of two maitre
instances, each stopped with SIGTERM and started again in turn while sixteen
keep-alive clients send requests through HAProxy: no request may fail, and the
application sees the clients' own address (127.0.0.2), not HAProxy's.

HAProxy is Debian's package (``.ci/run`` installs it); without the binary these tests
are skipped. Every process is started here and stopped by its PID. What
bench/rollout.py shares with these tests (the application, the configuration for this
run's ports, HAProxy, the clients) is in haproxy_fleet.py.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import haproxy_fleet
import pytest
from haproxy_fleet import (
    APP,
    CLIENT_ADDR,
    CONFIG,
    clients,
    failed_log_lines,
    find_haproxy,
    haproxy_config,
)
from helpers import HOST, Cluster, free_port, maitre_only, wait_for

pytestmark = [
    maitre_only("health endpoints, shutdown_delay and the PROXY protocol"),
    pytest.mark.timeout(240),
]

CLIENTS = 16
#: longer than HAProxy needs to see /readyz fail twice (fall 2, inter 250ms), with
#: room for a loaded machine
SHUTDOWN_DELAY = 2.0
START_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def haproxy_binary():
    found = find_haproxy()
    if not found:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's package)")
    return found


class HAProxy(haproxy_fleet.HAProxy):
    """HAProxy, and the changes of its servers' state it logged."""

    def state_changes(self, server: str) -> list:
        """``UP``/``DOWN`` for each change of ``server``'s state HAProxy logged."""
        return re.findall(rf"Server maitre/{server} is (UP|DOWN)", self.log())

    def wait_state(self, server: str, state: str, after: int, timeout: float):
        """Wait until ``server``'s state changes past the first ``after`` changes
        end in ``state``."""

        def reached():
            changes = self.state_changes(server)
            return len(changes) > after and changes[-1] == state

        if not wait_for(reached, timeout=timeout, interval=0.02):
            pytest.fail(f"{server} not {state} in {timeout}s:\n{self.log()[-4000:]}")


class Fleet:
    """Two maitre instances, each on its own serving and metrics port."""

    def __init__(self, appdir: Path, args: list, ready_line: str):
        self.appdir = appdir
        self.args = args
        self.ready_line = ready_line
        self.ports = [(free_port(), free_port()) for _ in range(2)]
        self.instances: list = [None, None]
        self.started: list = []

    def start(self, i: int) -> Cluster:
        port, mport = self.ports[i]
        args = [
            f"--metrics-listen={HOST}:{mport}",
            f"--shutdown-delay={SHUTDOWN_DELAY}",
            # HAProxy connects from 127.0.0.1
            "--proxy-protocol=v2",
            f"--proxy-protocol-from={HOST}",
            *self.args,
        ]
        c = Cluster(self.appdir, *args, app="happ:app", port=port)
        self.started.append(c)
        self.instances[i] = c
        c.wait_log(self.ready_line)
        assert wait_for(lambda: readyz(mport) == 200, timeout=START_TIMEOUT)
        return c

    def stop_all(self):
        for c in self.started:
            c.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- instance {n}:\n" + "\n".join(c.proc.stderr_lines[-40:])
            for n, c in enumerate(self.started)
        )


def readyz(port: int) -> int | None:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status
        finally:
            conn.close()
    except OSError:
        return None


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "happ.py").write_text(APP)
    return tmp_path


def rollout(haproxy_binary, appdir, args, ready_line, reload_first=False):
    fleet = Fleet(appdir, args, ready_line)
    workdir = Path(tempfile.mkdtemp(prefix="maitre-haproxy-"))
    haproxy = None
    try:
        for i in range(2):
            fleet.start(i)
        front = free_port()
        haproxy = HAProxy(
            haproxy_binary,
            workdir,
            haproxy_config(front, fleet.ports),
            front,
            START_TIMEOUT,
        )
        with clients(front, CLIENTS) as result:
            time.sleep(1)
            for i, name in enumerate(("app1", "app2")):
                c = fleet.instances[i]
                if reload_first:
                    before = c.count("Reloaded:")
                    c.signal(signal.SIGHUP)
                    c.wait_log("Reloaded:", before + 1)
                    time.sleep(1)
                changes = len(haproxy.state_changes(name))
                t0 = time.monotonic()
                c.signal(signal.SIGTERM)
                haproxy.wait_state(name, "DOWN", changes, timeout=SHUTDOWN_DELAY)
                assert time.monotonic() - t0 < SHUTDOWN_DELAY
                assert c.wait_exit(SHUTDOWN_DELAY + 15) == 0
                fleet.start(i)
                haproxy.wait_state(name, "UP", changes + 1, timeout=START_TIMEOUT)
                # the restarted instance takes its share before the next one stops
                time.sleep(1)
        log = haproxy.log()
        detail = (
            "\nHAProxy's failed requests:\n"
            + "\n".join(failed_log_lines(log)[:40])
            + "\n"
            + fleet.logs()
        )
        assert result["stuck"] == 0
        assert result["errors"] == [], detail
        assert result["ok"] > 200, result["ok"]
        assert failed_log_lines(log) == [], detail
        # both servers answered, before and after their restart
        for name in ("app1", "app2"):
            assert len(re.findall(rf" maitre/{name} ", log)) > 20, name
        # PROXY v2 end to end: the clients' address, not HAProxy's
        assert set(result["seen"]) == {CLIENT_ADDR}
    finally:
        if haproxy is not None:
            haproxy.stop()
        fleet.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def test_rollout_behind_haproxy_loses_no_request(haproxy_binary, appdir):
    rollout(haproxy_binary, appdir, ["--threads=4"], "Serving on")


def test_reload_and_rollout_under_a_master(haproxy_binary, appdir):
    rollout(
        haproxy_binary,
        appdir,
        ["--workers=2", "--threads=4"],
        "Ready with 2 worker(s)",
        reload_first=True,
    )


def test_haproxy_config_is_the_documented_one():
    """docs/deployment.md shows docs/haproxy.cfg, the file these tests run, as it is."""
    page = (CONFIG.parent / "deployment.md").read_text()
    blocks = re.findall(r"^```text\n(.*?)^```", page, re.M | re.S)
    assert CONFIG.read_text() in blocks
