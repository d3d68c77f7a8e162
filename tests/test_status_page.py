"""The status page's figures over real sockets: ``/status.json`` beside ``/`` on
``metrics_listen``, the percentiles of the last minute (not of the worker's whole
life), the ``process_*`` series of ``/metrics`` as the Prometheus client libraries
name them, and both under a master with worker processes. waitress has none of this."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import HOST, TARGET, Cluster, free_port, maitre_only, wait_for

pytestmark = maitre_only("waitress has no metrics listener")

if TARGET == "maitre":
    from prometheus_client.parser import text_string_to_metric_families

release = threading.Event()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/block":
        release.wait(30)
    elif path.startswith("/sleep/"):
        time.sleep(float(path.rsplit("/", 1)[1]))
    elif path == "/boom":
        start_response("503 Service Unavailable", [("Content-Length", "4")])
        return [b"busy"]
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


def get(port: int, path: str) -> None:
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        while sock.recv(65536):
            pass


def fetch(address, path: str) -> str:
    host, port = address[:2]
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
        return r.read().decode()


def status(address) -> dict:
    return json.loads(fetch(address, "/status.json"))


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture
def metered(serve_app):
    def start(**settings):
        release.clear()
        settings.setdefault("metrics_listen", f"{HOST}:0")
        served = serve_app(app, **settings)
        return served, served.server.metrics_address

    yield start
    release.set()


def test_status_json_carries_the_page_figures(metered):
    served, address = metered(threads=3, connection_limit=50)
    for _ in range(7):
        get(served.port, "/hello")
    for _ in range(3):
        get(served.port, "/boom")
    assert wait_for(lambda: status(address)["recent"]["requests"] == 10, 5)
    time.sleep(1)  # rates are not given over less than half a second
    s = status(address)
    now = time.time()
    assert s["version"] and re.fullmatch(r"\d+\.\d+\.\d+\S*", s["version"])
    assert abs(s["now"] - now) < 5
    # The process serving the page (this one) started before the test did.
    assert s["start_time_seconds"] <= now and s["uptime_seconds"] >= 0
    assert (s["threads"], s["threads_busy"], s["connection_limit"]) == (3, 0, 50)
    assert s["queue_depth"] == 0 and s["all_threads_busy_seconds"] is None
    assert s["max_queued_requests"] is None
    recent = s["recent"]
    assert recent["requests_5xx"] == 3
    assert recent["error_rate"] == pytest.approx(0.3)
    assert 0 < recent["p50_seconds"] <= recent["p99_seconds"] < 5
    assert 0 < recent["seconds"] <= 60.5
    assert s["rate"]["sent_bytes_per_second"] > 0
    assert s["totals"]["since"] == "worker start"
    assert s["totals"]["requests"] == 10
    assert s["totals"]["by_status"] == {
        "1xx": 0,
        "2xx": 7,
        "3xx": 0,
        "4xx": 0,
        "5xx": 3,
    }
    (w,) = s["workers"]
    assert w["pid"] == os.getpid() and w["worker"] == 0 and w["restarts"] == 0
    proc = s["process"]
    assert proc == pytest.approx(w["process"], rel=0.5)
    assert proc["resident_memory_bytes"] > 1_000_000
    assert proc["open_fds"] > 0
    # The page shows the same, with the bad error share coloured.
    page = fetch(address, "/")
    assert re.search(r'id="connection-limit">50<', page)
    assert re.search(r'class="card bad"><div class="v" id="error-rate">30\.00<', page)
    assert "last minute" in page and "Since each worker started" in page
    assert '<meta http-equiv="refresh"' in page and "<script" not in page


def test_process_series_in_metrics(metered):
    served, address = metered()
    get(served.port, "/hello")
    f = families(fetch(address, "/metrics"))
    kinds = {
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_virtual_memory_bytes": "gauge",
        "process_start_time_seconds": "gauge",
        "process_open_fds": "gauge",
        "process_max_fds": "gauge",
    }
    for name, kind in kinds.items():
        assert name in f, sorted(f)
        assert f[name].type == kind, name
        (sample,) = f[name].samples
        assert sample.labels == {}, name

    def v(name):
        return f[name].samples[0].value

    with open("/proc/self/status") as fh:
        rss_kib = int(next(line for line in fh if line.startswith("VmRSS")).split()[1])
    assert v("process_resident_memory_bytes") == pytest.approx(rss_kib * 1024, rel=0.5)
    cpu = os.times()
    assert v("process_cpu_seconds") == pytest.approx(cpu.user + cpu.system, abs=2.0)
    assert time.time() - 86400 * 7 < v("process_start_time_seconds") <= time.time()
    assert 0 < v("process_open_fds") <= v("process_max_fds")
    import resource

    assert v("process_max_fds") == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_busy_threads_and_queue_show_and_colour(metered):
    served, address = metered(threads=2)
    blockers = [
        threading.Thread(target=get, args=(served.port, "/block")) for _ in range(3)
    ]
    for t in blockers:
        t.start()
    try:
        assert wait_for(lambda: status(address)["queue_depth"] == 1, 5)
        time.sleep(2.5)
        s = status(address)
        assert (s["threads"], s["threads_busy"]) == (2, 2)
        assert s["all_threads_busy_seconds"] >= 1.0
        assert s["in_flight"] == 3
        page = fetch(address, "/")
        assert re.search(
            r'class="card bad"><div class="v"><span id="threads-busy">2<', page
        )
        assert re.search(r'class="card warn"><div class="v" id="queue">1<', page)
        assert 'id="all-busy-for"' in page
    finally:
        release.set()
        for t in blockers:
            t.join(10)
    assert wait_for(lambda: status(address)["threads_busy"] == 0, 5)
    assert status(address)["all_threads_busy_seconds"] is None


@pytest.mark.timeout(180)
def test_percentiles_cover_the_last_minute(metered):
    """Slow requests, then fast ones: the window's p99 is the slow ones' while they
    are in it, and the fast ones' once they are older than a minute, although the
    whole-life histogram of /metrics still has them."""
    served, address = metered(threads=4)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: get(served.port, "/sleep/1.2"), range(4)))
    slow_done = time.monotonic()
    for _ in range(40):
        get(served.port, "/hello")
    assert wait_for(lambda: status(address)["recent"]["requests"] == 44, 5)
    recent = status(address)["recent"]
    assert recent["p99_seconds"] >= 1.0, recent
    assert recent["p50_seconds"] < 0.5, recent
    page = fetch(address, "/")
    p99_ms = float(re.search(r'id="p99">([\d.]+)<', page)[1])
    assert p99_ms >= 1000

    time.sleep(max(0.0, slow_done + 62 - time.monotonic()))
    for _ in range(40):
        get(served.port, "/hello")
    assert wait_for(lambda: status(address)["recent"]["requests"] == 40, 5)
    recent = status(address)["recent"]
    assert recent["p99_seconds"] < 0.25, recent
    assert 55 <= recent["seconds"] <= 61.5
    f = families(fetch(address, "/metrics"))
    count = {
        float(s.labels["le"]): s.value
        for s in f["maitre_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert count[float("inf")] - count[1.0] == 4


def test_under_a_master_every_worker_has_its_process_figures(tmp_path):
    from test_workers import APP, started

    (tmp_path / "wapp.py").write_text(APP)
    mport = free_port()
    c = started(Cluster(tmp_path, "--workers=2", f"--metrics-listen={HOST}:{mport}"))
    try:
        address = (HOST, mport)
        assert wait_for(lambda: len(status(address)["workers"]) == 2, 10)
        s = status(address)
        pids = {w["pid"] for w in s["workers"]}
        assert pids == c.workers()
        for w in s["workers"]:
            assert w["process"]["resident_memory_bytes"] > 0
            assert w["restarts"] == 0 and w["threads"] > 0
        assert s["process"]["resident_memory_bytes"] > 0  # the master's
        f = families(fetch(address, "/metrics"))
        rss = {
            s.labels["worker"]: s.value
            for s in f["process_resident_memory_bytes"].samples
        }
        assert set(rss) == {"0", "1"} and all(v > 0 for v in rss.values())
        starts = {s.labels["worker"] for s in f["process_start_time_seconds"].samples}
        assert starts == {"0", "1"}
    finally:
        c.stop()
