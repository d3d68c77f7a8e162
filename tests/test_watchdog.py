"""systemd's watchdog (``WatchdogSec=``): the master under a fake ``NOTIFY_SOCKET``
(a Unix datagram socket the test binds) with ``WATCHDOG_USEC`` set, its workers
stopped and continued with real signals (SIGSTOP, SIGCONT) to make their heartbeats
stale and fresh again. Every process started is stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from helpers import Cluster, maitre_only
from test_workers import appdir, cluster, fetch, started  # noqa: F401 (fixtures)

pytestmark = maitre_only("waitress has no systemd support")

#: the watchdog's interval in the tests: pings every half second; a heartbeat is
#: fresh for two seconds (``systemd.WATCHDOG_MIN_FRESH``)
USEC = 1_000_000


@pytest.fixture
def notify(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    with sock:
        yield sock, path


def pings(sock, seconds: float) -> int:
    """WATCHDOG=1 messages received in the next ``seconds``."""
    count = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        count += "WATCHDOG=1" in msg.split("\n")
    return count


def test_pings_while_a_worker_beats_and_not_while_none_does(cluster, notify):  # noqa: F811
    sock, path = notify
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(USEC))
    c = started(cluster("--workers=2", env=env))
    c.wait_log("systemd watchdog: WATCHDOG=1 every 0.5s while a worker beats")
    assert 3 <= pings(sock, 2.0) <= 6  # every half second
    workers = c.workers()
    assert len(workers) == 2
    one, other = sorted(workers)
    try:
        # One wedged worker: the other still beats, the pings go on.
        os.kill(one, signal.SIGSTOP)
        assert pings(sock, 3.0) >= 4
        # Both wedged: silence once their last heartbeats are two seconds old.
        os.kill(other, signal.SIGSTOP)
        stopped = time.monotonic()
        pings(sock, 2.5)
        assert pings(sock, 2.0) == 0
        assert time.monotonic() - stopped < 10  # well before worker_timeout (30 s)
        c.wait_log("No heartbeat in 2.0s: no WATCHDOG=1 to systemd")
    finally:
        for pid in (one, other):
            os.kill(pid, signal.SIGCONT)
    # Heartbeats again: the pings come back, and the workers were not replaced.
    assert pings(sock, 2.5) >= 2
    c.wait_log("Heartbeats again: WATCHDOG=1 to systemd")
    assert c.workers() == workers
    assert fetch(c.port).status == 200


def test_no_pings_for_another_process(cluster, notify):  # noqa: F811
    sock, path = notify
    env = dict(
        os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(USEC), WATCHDOG_PID="1"
    )
    c = started(cluster("--workers=2", env=env))
    assert pings(sock, 1.5) == 0
    c.signal(signal.SIGTERM)
    assert c.wait_exit() == 0


def test_when_the_watchdog_is_on(monkeypatch):
    from maitre.systemd import Watchdog

    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert Watchdog.from_environ() is None
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert Watchdog.from_environ() is None
    monkeypatch.setenv("WATCHDOG_USEC", "6000000")
    assert Watchdog.from_environ().interval == 6.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Watchdog.from_environ().fresh == 6.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Watchdog.from_environ() is None
    monkeypatch.delenv("NOTIFY_SOCKET")
    monkeypatch.delenv("WATCHDOG_PID")
    assert Watchdog.from_environ() is None


def test_single_process_pings_while_its_loop_beats(appdir, notify):  # noqa: F811
    """One process (no master): the pings follow the I/O loop's heartbeats, and stop
    while the process is stopped (SIGSTOP), to come back after SIGCONT."""
    sock, path = notify
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(2 * USEC))
    c = Cluster(appdir, env=env)
    try:
        c.wait_log("systemd watchdog: WATCHDOG=1 every 1.0s while the I/O loop beats")
        assert pings(sock, 3.5) >= 2  # a heartbeat a second, a ping at most a second
        os.kill(c.pid, signal.SIGSTOP)
        try:
            pings(sock, 0.5)  # one may already be on its way
            assert pings(sock, 2.0) == 0
        finally:
            os.kill(c.pid, signal.SIGCONT)
        assert pings(sock, 3.5) >= 2
        assert fetch(c.port).status == 200
    finally:
        c.stop()
