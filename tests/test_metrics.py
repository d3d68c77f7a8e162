"""Counters, ``server.stats()``, the Prometheus ``/metrics`` listener and the status
page (``metrics_listen``): the counters equal what the test sent, the gauges move
while a slow application holds every thread and the listener still answers, the page
shows in a real headless browser the figures ``/metrics`` gives, and engines in
forked processes counting into one shared map are rendered together with a
``worker`` label. waitress has none of this."""

from __future__ import annotations

import mmap
import os
import re
import signal
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import HOST, TARGET, headless, maitre_only, wait_for

pytestmark = maitre_only("waitress has no stats or metrics")

if TARGET == "maitre":
    from prometheus_client.parser import text_string_to_metric_families

ARTEFACTS = Path(
    os.environ.get(
        "MAITRE_TEST_ARTEFACTS", Path(__file__).resolve().parent.parent / "artefacts"
    )
)

release = threading.Event()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/block":
        release.wait(30)
    if path == "/pid":
        out = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/missing":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    body = environ["wsgi.input"].read()
    out = b"got %d" % len(body) if body else b"hello"
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


def scrape(served, path="/metrics", timeout=3.0) -> str:
    host, port = served.server.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def samples(text: str) -> dict:
    """{(name, sorted label items): value} of every sample."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text_or_samples, name, **labels):
    s = (
        samples(text_or_samples)
        if isinstance(text_or_samples, str)
        else text_or_samples
    )
    return s.get((name, tuple(sorted(labels.items()))))


def exchange(port: int, request: bytes) -> int:
    """Sends one request on a new connection, reads to the close; bytes received."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(request)
        got = 0
        while chunk := sock.recv(65536):
            got += len(chunk)
    return got


@pytest.fixture
def metered(serve_app):
    def start(**settings):
        release.clear()
        settings.setdefault("metrics_listen", f"{HOST}:0")
        return serve_app(app, **settings)

    yield start
    release.set()


def test_counters_equal_what_was_sent(metered):
    served = metered(threads=2)
    close = b"Connection: close\r\n"
    requests = (
        [b"GET /hello HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"] * 5
        + [
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + close
            + b"\r\n"
            + b"p" * 100
        ]
        * 3
        + [b"GET /missing HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"] * 2
        + [b"HEAD /hello HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"]
        + [b"PUT /boom HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + close + b"\r\n"]
    )
    received = sum(exchange(served.port, r) for r in requests)
    sent = sum(len(r) for r in requests)
    assert wait_for(lambda: value(scrape(served), "maitre_open_connections") == 0, 5), (
        scrape(served)
    )
    s = samples(scrape(served))
    by = {
        (labels[0][1], labels[1][1]): v
        for (name, labels), v in s.items()
        if name == "maitre_requests_total"
    }
    assert by == {
        ("GET", "2xx"): 5,
        ("POST", "2xx"): 3,
        ("GET", "4xx"): 2,
        ("HEAD", "2xx"): 1,
        ("PUT", "5xx"): 1,
    }
    assert value(s, "maitre_accepts_total") == len(requests)
    assert value(s, "maitre_received_bytes_total") == sent
    assert value(s, "maitre_sent_bytes_total") == received
    assert value(s, "maitre_request_duration_seconds_count") == len(requests)
    assert value(s, "maitre_request_duration_seconds_bucket", le="+Inf") == len(
        requests
    )
    assert value(s, "maitre_requests_in_flight") == 0
    assert value(s, "maitre_threads") == 2
    assert value(s, "maitre_body_spills_total") == 0
    assert value(s, "maitre_process_id") == os.getpid()

    stats = served.server.stats()
    assert stats["Requests"] == len(requests)
    assert stats["Accepts"] == len(requests)
    assert stats["Bytes Read"] == sent and stats["Bytes Written"] == received
    assert stats["Requests By Status"] == {
        "1xx": 0,
        "2xx": 9,
        "3xx": 0,
        "4xx": 2,
        "5xx": 1,
    }
    assert stats["Threads"] == 2 and stats["Threads Idle"] == 2
    assert stats["Queue"] == 0 and stats["Open Connections"] == 0
    assert stats["Run time"] > 0 and stats["Accepts/sec"] > 0
    assert stats["Latency Histogram"][-1] == (float("inf"), len(requests))
    per_thread = stats["Worker Threads"]
    assert sorted(per_thread) == ["maitre-0", "maitre-1"]
    assert sum(t["Requests"] for t in per_thread.values()) == len(requests)
    assert sum(t["Bytes Written"] for t in per_thread.values()) == received


def test_gauges_move_while_every_thread_is_busy(metered):
    """Two threads held by a slow app, two more requests queued: the metrics
    listener answers at once, and says so."""
    served = metered(threads=2)
    conns = [
        socket.create_connection((HOST, served.port), timeout=10) for _ in range(4)
    ]
    try:
        for c in conns:
            c.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")

        def all_held():
            s = samples(scrape(served, timeout=1.0))
            return (
                value(s, "maitre_threads_busy") == 2
                and value(s, "maitre_threads_idle") == 0
                and value(s, "maitre_requests_in_flight") == 4
                and value(s, "maitre_queue_depth") == 2
                and value(s, "maitre_open_connections") == 4
            )

        assert wait_for(all_held, 5), scrape(served)
        # While every thread is held: the listener answers quickly, page included.
        start = time.monotonic()
        assert "threads busy" in scrape(served, "/", timeout=1.0)
        assert time.monotonic() - start < 1.0
        stats = served.server.stats()
        assert stats["Threads Idle"] == 0 and stats["Queue"] == 2
        release.set()
        for c in conns:
            assert c.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        release.set()
        for c in conns:
            c.close()

    def drained():
        s = samples(scrape(served))
        return (
            value(s, "maitre_threads_busy") == 0
            and value(s, "maitre_requests_in_flight") == 0
            and value(s, "maitre_queue_depth") == 0
            and value(s, "maitre_requests_total", method="GET", status="2xx") == 4
        )

    assert wait_for(drained, 5), scrape(served)


def test_spills_and_other_paths(metered):
    served = metered(inbuf_overflow=1024)
    body = b"s" * 5000
    exchange(
        served.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + b"Content-Length: 5000\r\n\r\n"
        + body,
    )
    assert value(scrape(served), "maitre_body_spills_total") == 1
    assert served.server.stats()["Body Spills"] == 1
    host, port = served.server.metrics_address
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{host}:{port}/nothing", timeout=3)
    assert err.value.code == 404
    # /metrics on the application's port is the application's business.
    with urllib.request.urlopen(f"http://{HOST}:{served.port}/metrics") as r:
        assert r.read() == b"hello"


# ------------------------------------------------------------------ status page


def quantile(s: dict, q: float) -> float | None:
    """histogram_quantile over the scraped buckets, as the page computes it."""
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in s.items()
        if name == "maitre_request_duration_seconds_bucket"
    )
    total = buckets[-1][1]
    if total == 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0
    for le, count in buckets:
        if count >= rank and count > prev_count:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return None


@pytest.mark.timeout(300)
def test_status_page_in_a_headless_browser(metered, chromium):
    served = metered(threads=3)
    for _ in range(20):
        exchange(
            served.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    exchange(
        served.port, b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert wait_for(lambda: value(scrape(served), "maitre_open_connections") == 0, 5)
    host, port = served.server.metrics_address
    url = f"http://{host}:{port}/"
    dom = headless(chromium, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    s = samples(scrape(served))

    def shown(ident):
        m = re.search(rf'id="{ident}"[^>]*>([^<]*)<', dom.stdout)
        assert m, f"no #{ident} in the page:\n{dom.stdout[:3000]}"
        return m[1]

    total = sum(v for (n, _), v in s.items() if n == "maitre_requests_total")
    assert int(shown("requests")) == total == 21
    assert int(shown("threads")) == value(s, "maitre_threads") == 3
    assert int(shown("threads-busy")) == value(s, "maitre_threads_busy") == 0
    assert int(shown("queue")) == value(s, "maitre_queue_depth")
    assert int(shown("connections")) == value(s, "maitre_open_connections")
    assert int(shown("in-flight")) == value(s, "maitre_requests_in_flight")
    assert int(shown("c2xx")) == 20 and int(shown("c4xx")) == 1
    for ident, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert abs(float(shown(ident)) - quantile(s, q) * 1000) <= 0.051, ident
    assert len(re.findall(r'<tr class="worker">', dom.stdout)) == 1
    assert '<meta http-equiv="refresh"' in dom.stdout
    assert 'name="viewport"' in dom.stdout
    assert "<script" not in dom.stdout and "http://" not in dom.stdout.replace(
        url, ""
    ).replace("http-equiv", "")

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "status-page-phone.png"
    shot.unlink(missing_ok=True)
    result = headless(chromium, f"--screenshot={shot}", "--window-size=412,915", url)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (412, 915)


# --------------------------------------------------------- workers, shared map


def _fork_worker(server, mm, slot):
    """A worker process as a master makes it: forked after the server was created,
    it takes its slot of the shared map and serves; never returns."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            server.use_stats_slot(mm, slot)
            server.run()
            code = 0
        finally:
            os._exit(code)
    return pid


def _stopped(pid) -> bool:
    """Whether every thread of ``pid`` is stopped (state T)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


def _stop(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _pids(port, count):
    """``count`` requests on new connections; the PID that answered each."""
    pids = []
    for _ in range(count):
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        pids.append(int(data.rsplit(b"\r\n\r\n", 1)[1]))
    return pids


@pytest.mark.timeout(60)
def test_forked_engines_share_one_map():
    """Two worker processes forked from one server count into their slots of one
    anonymous shared map; the master's listener renders both, with a worker label
    and the restarts it counted."""
    from maitre import _maitre, create_server

    size = _maitre.STATS_BLOCK_SIZE
    mm = mmap.mmap(-1, 2 * size)
    server = create_server(
        app, host=HOST, port=0, threads=2, metrics_listen=f"{HOST}:0"
    )
    workers = {}
    metrics = None
    try:
        workers[0] = _fork_worker(server, mm, 0)
        workers[1] = _fork_worker(server, mm, 1)
        port = server.effective_port

        def only(worker, count):
            """``count`` requests answered by ``worker`` alone (the other stopped)."""
            other = workers[1 - worker]
            os.kill(other, signal.SIGSTOP)
            # A thread running on the other core stops a moment later: wait, or it
            # may still accept the first connection.
            assert wait_for(lambda: _stopped(other), 5)
            try:
                return _pids(port, count)
            finally:
                os.kill(other, signal.SIGCONT)

        assert only(0, 7) == [workers[0]] * 7
        assert only(1, 4) == [workers[1]] * 4
        # The master replaces worker 1: counts the restart in its slot, forks again.
        _stop(workers[1])
        assert _maitre.count_restart(mm, 1) == 1
        # The word at offset 32 of a slot, as the layout documents.
        assert struct.unpack_from("Q", mm, size + 4 * 8) == (1,)
        workers[1] = _fork_worker(server, mm, 1)
        assert only(1, 5) == [workers[1]] * 5

        metrics = _maitre.MetricsServer(server.metrics_socket.fileno(), mm, 2)
        mhost, mport = server.metrics_address

        def get(path):
            url = f"http://{mhost}:{mport}{path}"
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()

        # The new worker 1 counts only what it answered since it started: its
        # predecessor's 4 went with its engine.
        expected = {"0": 7, "1": 5}

        def counted():
            s = samples(get("/metrics"))
            got = {}
            for w in ("0", "1"):
                labels = {"worker": w, "method": "GET", "status": "2xx"}
                got[w] = value(s, "maitre_requests_total", **labels)
            return got == expected

        assert wait_for(counted, 5), (expected, get("/metrics"))
        s = samples(get("/metrics"))
        assert value(s, "maitre_worker_restarts_total", worker="0") == 0
        assert value(s, "maitre_worker_restarts_total", worker="1") == 1
        assert value(s, "maitre_process_id", worker="0") == workers[0]
        assert value(s, "maitre_process_id", worker="1") == workers[1]
        assert value(s, "maitre_threads", worker="1") == 2
        assert (
            value(s, "maitre_request_duration_seconds_count", worker="1")
            == expected["1"]
        )
        page = get("/")
        assert len(re.findall(r'<tr class="worker">', page)) == 2
        total = expected["0"] + expected["1"]
        assert re.search(rf'id="requests">{total}<', page), page
        assert _maitre.render_metrics(mm, 2) == get("/metrics")
    finally:
        if metrics is not None:
            metrics.close()
        for pid in workers.values():
            _stop(pid)
        server.close()
