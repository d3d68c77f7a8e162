"""Recycling workers by memory (``max_worker_memory``) and by age
(``max_worker_lifetime``), for real: a master with two workers in a subprocess, an
application that keeps memory, clients looping without retries while workers are
replaced. Every process started is stopped by PID (the ``cluster`` fixture)."""

from __future__ import annotations

import re

import pytest
from helpers import Cluster, maitre_only, wait_for
from test_workers import Load, fetch, started

pytestmark = maitre_only("waitress has no worker processes")

APP = """
import os

KEPT = []

def app(environ, start_response):
    if environ["PATH_INFO"] == "/keep":
        KEPT.append(b"x" * (40 * 1024 * 1024))  # written: resident at once
    body = f"ok {os.getpid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def cluster(tmp_path):
    (tmp_path / "keeper.py").write_text(APP)
    started_ = []

    def start(*args, **kw):
        c = Cluster(tmp_path, *args, app="keeper:app", **kw)
        started_.append(c)
        return c

    yield start
    for c in started_:
        c.stop()


def test_a_worker_over_max_worker_memory_is_replaced_and_nothing_fails(cluster):
    c = started(cluster("--workers=2", "--max-worker-memory=150"))
    first = c.workers()
    load = Load(c.port, clients=2, seconds=6.0)
    # Each call keeps 40 MiB more in the worker that serves it: a few calls take
    # one (or both) of the workers over 150 MiB.
    grown = set()
    for _ in range(8):
        grown.add(int(fetch(c.port, "/keep").text.split()[1]))
    load.join()
    assert load.failed == [], load.failed[:5]
    assert load.ok > 50
    [replaced] = c.wait_log("> max_worker_memory 150: replacing it")
    found = re.search(r"Worker (\d+) uses (\d+) MiB > max_worker_memory 150", replaced)
    pid, mib = map(int, found.groups())
    assert pid in grown and mib > 150
    assert wait_for(lambda: pid not in c.workers() and len(c.workers()) == 2, 15)
    assert first != c.workers()
    assert fetch(c.port).status == 200


def test_max_worker_lifetime_replaces_workers_over_time_without_failures(cluster):
    c = started(cluster("--workers=2", "--max-worker-lifetime=2"))
    first = c.workers()
    load = Load(c.port, clients=2, seconds=7.0, keep_alive=1)
    load.join()
    assert load.failed == [], load.failed[:5]
    assert load.ok > 50
    assert c.count("> max_worker_lifetime 2: replacing it") >= 4
    # Every worker of the start is gone, and the bodies came from more than two.
    assert not first & c.workers()
    assert len({int(b.split()[1]) for _, b in load.bodies}) > 2


def test_limits_are_checked_at_start(cluster):
    c = cluster("--workers=2", "--max-worker-memory=-1")
    assert c.wait_exit(15) != 0
    c.proc.wait()
    assert "max_worker_memory must not be negative" in c.proc.stderr
