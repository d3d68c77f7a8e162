"""Observability with worker processes, for real: ``python -m maitre --workers=2`` with
``--metrics-listen`` (one scrape of the master sees every worker; a killed worker's
restart is counted; a rolling reload keeps the listener answering) and with
``--access-log`` (whole lines from every worker in one file; SIGUSR1 to the master
reopens it in every worker).

Every loop is bounded in count and time; every process started is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import urllib.request

import pytest
from helpers import (
    HOST,
    TARGET,
    Cluster,
    RawConnection,
    ServerProcess,
    free_port,
    get,
    maitre_only,
    wait_for,
)
from test_workers import APP, PASTE_INI, PASTE_SCRIPT, fetch, started

pytestmark = maitre_only("waitress has no worker processes, metrics or access log")

if TARGET == "maitre":
    from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "wapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def cluster(appdir):
    started_ = []

    def start(*args, **kw):
        c = Cluster(appdir, *args, **kw)
        started_.append(c)
        return c

    yield start
    for c in started_:
        c.stop()


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as r:
        return r.read().decode()


def status(port: int) -> dict:
    return json.loads(scrape(port, "/status.json"))


def series(text: str, name: str) -> dict:
    """{labels (a sorted tuple of items): value} of the samples called ``name``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_worker(text: str, name: str) -> dict:
    """{worker label: value} of a series with no label but ``worker``."""
    return {dict(k)["worker"]: v for k, v in series(text, name).items()}


def pids_in(text: str) -> set:
    return {int(v) for v in by_worker(text, "maitre_process_id").values()}


def requests_sum(text: str) -> float:
    return sum(series(text, "maitre_requests_total").values())


def metered(cluster, *args):
    mport = free_port()
    c = started(cluster("--workers=2", f"--metrics-listen={HOST}:{mport}", *args))
    return c, mport


def test_one_scrape_of_the_master_sees_every_worker(cluster):
    c, mport = metered(cluster)
    sent = 300
    answered_by = {int(fetch(c.port).text.split()[1]) for _ in range(sent)}
    assert answered_by == c.workers()
    # Counted once the last byte is handed to the kernel: a moment after the client
    # has read it.
    assert wait_for(lambda: requests_sum(scrape(mport)) == sent, 5), scrape(mport)
    text = scrape(mport)
    assert pids_in(text) == c.workers()
    assert set(by_worker(text, "maitre_process_id")) == {"0", "1"}
    ok = series(text, "maitre_requests_total")
    assert {dict(k)["worker"] for k in ok} == {"0", "1"}
    assert all(dict(k)["method"] == "GET" and dict(k)["status"] == "2xx" for k in ok)
    assert sum(by_worker(text, "maitre_accepts_total").values()) == sent
    assert sum(by_worker(text, "maitre_request_duration_seconds_count").values()) == (
        sent
    )
    assert by_worker(text, "maitre_worker_restarts_total") == {"0": 0, "1": 0}
    assert sum(by_worker(text, "maitre_requests_in_flight").values()) == 0
    # The status page has a row per worker.
    page = scrape(mport, "/")
    rows = re.findall(r'<tr class="worker"><td>(\d+)</td><td>(\d+)</td>', page)
    assert {int(pid) for _, pid in rows} == c.workers()
    # One summary line from the master, one "Serving on" per listener; no worker
    # bound the metrics port (it would have failed to start).
    assert c.count("Serving on") == 1
    assert c.count("maitre ") == 1
    summary = c.wait_log(": 2 workers, ")[0]
    assert re.search(r"maitre \S+: 2 workers, 4 threads, access log off$", summary)
    assert c.count(f"Metrics on http://{HOST}:{mport}/metrics") == 1
    # The master closes it at stop.
    c.signal(signal.SIGTERM)
    assert c.wait_exit() == 0
    with pytest.raises(OSError):
        scrape(mport)


def _listening_inode(port: int) -> str:
    """The socket inode listening on 127.0.0.1:``port`` (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local == f"0100007F:{port:04X}":
                return inode
    raise AssertionError(f"nothing listens on port {port}")


def _socket_inodes(pid: int) -> set:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def test_only_the_master_holds_the_metrics_socket(cluster):
    c, mport = metered(cluster)
    inode = _listening_inode(mport)
    assert inode in _socket_inodes(c.pid)
    for pid in c.workers():
        assert inode not in _socket_inodes(pid), pid
    # The master serves the metrics while its workers drain (a draining request
    # shows), and its port closes when it exits.
    with RawConnection(c.port, timeout=10) as conn:
        conn.send(get("/sleep?1.5", headers=b"Connection: close\r\n"))
        assert wait_for(
            lambda: (
                sum(by_worker(scrape(mport), "maitre_requests_in_flight").values()) == 1
            ),
            5,
        )
        c.signal(signal.SIGTERM)
        c.wait_log("stopping")
        in_flight = by_worker(scrape(mport), "maitre_requests_in_flight")
        assert sum(in_flight.values()) == 1
        assert conn.read_response("GET").status == 200
    assert c.wait_exit() == 0
    with pytest.raises(OSError):
        scrape(mport)


def test_killed_worker_counts_a_restart_and_its_successor_appears(cluster):
    c, mport = metered(cluster)
    for _ in range(40):
        fetch(c.port)
    before = c.workers()
    victim = min(before)
    assert pids_in(scrape(mport)) == before
    os.kill(victim, signal.SIGKILL)
    [line] = c.wait_log(" accepting", 3)[2:]  # two at start, then the replacement
    new = int(re.search(r"Worker (\d+) accepting", line).group(1))
    text = scrape(mport)
    # The dead worker's slot is not shown with its last gauges: its successor's is.
    assert pids_in(text) == before - {victim} | {new}
    restarts = by_worker(text, "maitre_worker_restarts_total")
    assert sorted(restarts.values()) == [0, 1]
    slot_of = {int(v): w for w, v in by_worker(text, "maitre_process_id").items()}
    assert restarts[slot_of[new]] == 1
    reasons = {w["worker"]: w["last_restart_reason"] for w in status(mport)["workers"]}
    assert reasons[int(slot_of[new])] == "exited", reasons
    assert set(reasons.values()) == {"exited", None}
    # The successor serves and is counted.
    assert wait_for(lambda: new in {int(fetch(c.port).text.split()[1])}, 5)
    text = scrape(mport)
    assert by_worker(text, "maitre_accepts_total")[slot_of[new]] >= 1
    # Killed again: the count follows the line of successors.
    os.kill(new, signal.SIGKILL)
    [line] = c.wait_log(" accepting", 4)[3:]
    newer = int(re.search(r"Worker (\d+) accepting", line).group(1))
    text = scrape(mport)
    slot_of = {int(v): w for w, v in by_worker(text, "maitre_process_id").items()}
    assert set(slot_of) == c.workers() and newer in slot_of
    assert by_worker(text, "maitre_worker_restarts_total")[slot_of[newer]] == 2


def test_metrics_listener_answers_through_a_rolling_reload(cluster):
    c, mport = metered(cluster)
    old = c.workers()
    scrapes, failures = [], []
    stop = threading.Event()

    def scraper():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                scrapes.append(pids_in(scrape(mport)))
            except Exception as exc:
                failures.append(repr(exc))
            time.sleep(0.02)

    t = threading.Thread(target=scraper)
    t.start()
    try:
        time.sleep(0.3)
        c.signal(signal.SIGHUP)
        c.wait_log("Reloaded")
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(25)
    assert failures == [], failures[:3]
    assert len(scrapes) > 10
    new = c.workers()
    assert new.isdisjoint(old) and len(new) == 2
    # Old and new side by side during the reload (never more), then the new ones
    # alone: the reaped workers' slots are not rendered.
    assert all(2 <= len(s) <= 4 and s <= old | new for s in scrapes), scrapes
    assert wait_for(lambda: pids_in(scrape(mport)) == new, 5)
    for _ in range(20):
        fetch(c.port)
    assert wait_for(lambda: requests_sum(scrape(mport)) == 20, 5), scrape(mport)


def _log_lines(path) -> list:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    assert not data or data.endswith(b"\n"), data[-200:]
    return data.decode().splitlines()


LINE = re.compile(r"^<(\d+)> GET /n/(\d+) 200 (\d+)$")


def _pipelined(port: int, first: int, count: int, batch: int = 50):
    """``count`` requests for /n/<i> on one keep-alive connection, ``batch`` at a
    time in one write; every response read."""
    with RawConnection(port, timeout=20) as conn:
        for start in range(first, first + count, batch):
            n = min(batch, first + count - start)
            conn.send(b"".join(get(f"/n/{i}") for i in range(start, start + n)))
            for _ in range(n):
                assert conn.read_response("GET").status == 200


def test_two_workers_write_whole_lines_to_one_file(cluster, tmp_path):
    log = tmp_path / "access.log"
    c = started(
        cluster(
            "--workers=2",
            f"--access-log={log}",
            "--access-log-format=%(p)s %(m)s %(U)s %(s)s %(B)s",
        )
    )
    total, clients = 10_000, 8
    each = total // clients
    errors = []

    def client(k):
        try:
            _pipelined(c.port, k * each, each)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert wait_for(lambda: len(_log_lines(log)) >= total, 10)
    time.sleep(0.3)  # nothing more comes
    lines = _log_lines(log)
    assert len(lines) == total
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:3]
    assert sorted(int(m.group(2)) for m in parsed) == list(range(total))
    pids = {int(m.group(1)) for m in parsed}
    assert pids == c.workers()  # both wrote, into the same file


def test_sigusr1_to_the_master_reopens_the_log_in_every_worker(cluster, tmp_path):
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    c = started(
        cluster("--workers=2", f"--access-log={log}", "--access-log-format=%(p)s %(U)s")
    )
    sent = 0
    for _ in range(40):
        fetch(c.port, f"/n/{sent}")
        sent += 1
    assert wait_for(lambda: len(_log_lines(log)) == sent, 5)
    os.rename(log, rotated)
    c.signal(signal.SIGUSR1)
    # Until both workers have written to the new file (bounded).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fetch(c.port, f"/n/{sent}")
        sent += 1
        pids = {line.split()[0].strip("<>") for line in _log_lines(log)}
        if len(pids) == 2:
            break
        time.sleep(0.02)
    assert {int(p) for p in pids} == c.workers()
    assert wait_for(lambda: len(_log_lines(rotated)) + len(_log_lines(log)) == sent, 5)
    kept = len(_log_lines(rotated))
    assert kept >= 40
    # From now on everything goes to the new file.
    for _ in range(100):
        fetch(c.port, f"/n/{sent}")
        sent += 1
    assert wait_for(lambda: len(_log_lines(log)) == sent - kept, 5)
    assert len(_log_lines(rotated)) == kept
    assert c.workers() and c.proc.proc.poll() is None
    assert "Traceback" not in c.proc.stderr


def test_max_requests_recycles_are_counted_and_leave_no_stale_slot(cluster):
    c, mport = metered(cluster, "--max-requests=20")
    first = c.workers()
    # Each worker replaced at least once, new one first. Requests one after another
    # go to whichever worker wakes first (the balance evens out connections open at
    # the same time, not these), and a worker past max_requests serves on until its
    # successor accepts: so request until none of the first ones is left. (Not until
    # a moment with exactly two: the requests keep a successor booting most of the
    # time; `settled` below waits for two once they stop.)
    deadline = time.monotonic() + 20
    while not c.workers().isdisjoint(first):
        assert time.monotonic() < deadline, c.proc.stderr
        fetch(c.port)

    # With the requests stopped, the workers settle (a recycle the master had not
    # yet heard of when the loop ended finishes): then one scrape shows the two
    # workers alive and no slot of a retired one, each counted as a restart.
    def settled():
        text = scrape(mport)
        restarts = by_worker(text, "maitre_worker_restarts_total")
        return (
            pids_in(text) == c.workers()
            and len(restarts) == 2
            and all(v >= 1 for v in restarts.values())
            and sum(by_worker(text, "maitre_open_connections").values()) == 0
        )

    assert wait_for(settled, 10), scrape(mport)
    assert "Traceback" not in c.proc.stderr


def test_a_replacement_retried_after_failing_to_load_counts_every_attempt(
    cluster, appdir
):
    """A worker dies while the code on disk does not import: each failed attempt at
    its replacement is a restart, and the one that finally serves carries them all."""
    c, mport = metered(cluster)
    (appdir / "wapp.py").write_text("raise ImportError('broken-on-disk-marker')\n")
    victim = min(c.workers())
    os.kill(victim, signal.SIGKILL)
    c.wait_log("next attempt in 2s")  # two attempts have failed
    (appdir / "wapp.py").write_text(APP)
    c.wait_log(" accepting", 3)
    attempts = c.count("Booting worker") - 2
    assert attempts >= 3, c.proc.stderr

    def counted():
        restarts = by_worker(scrape(mport), "maitre_worker_restarts_total")
        return sorted(restarts.values()) == [0, attempts]

    assert wait_for(counted, 5), scrape(mport)
    # The one that serves follows a replacement that could not load the code.
    reasons = sorted(
        (w["restarts"], w["last_restart_reason"]) for w in status(mport)["workers"]
    )
    assert reasons == [(0, None), (attempts, "boot_error")], reasons


def test_the_status_page_says_why_a_worker_was_last_replaced(cluster):
    """Recycled at max_requests: /status.json and the page's worker table say so
    beside the restart count."""
    c, mport = metered(cluster, "--max-requests=5")
    first = c.workers()
    # Until neither first worker is left (at max_requests=5 the workers turn over
    # fast: wait for two rather than request until a moment with two).
    deadline = time.monotonic() + 20
    while c.workers() & first:
        assert time.monotonic() < deadline, c.proc.stderr
        fetch(c.port)

    def recycled():
        workers = status(mport)["workers"]
        return len(workers) == 2 and all(
            w["restarts"] >= 1 and w["last_restart_reason"] == "max_requests"
            for w in workers
        )

    assert wait_for(recycled, 10), scrape(mport, "/status.json")
    page = scrape(mport, "/")
    assert "<th>last restart</th>" in page
    assert "<td>max_requests</td></tr>" in page, page


def test_sighup_keeps_metrics_listen_and_says_so(appdir):
    """metrics_listen is served by the master: a value the re-read settings change
    is not taken (each new worker would try to bind it) but named in a warning."""
    pytest.importorskip("paste.deploy")
    with open(appdir / "wapp.py", "a") as f:
        f.write("\ndef make_app(global_conf, **local_conf):\n    return app\n")
    port, mport = free_port(), free_port()
    ini = appdir / "site.ini"
    settings = PASTE_INI.format(port=port, workers=2)
    ini.write_text(settings)
    proc = ServerProcess([sys.executable, "-c", PASTE_SCRIPT, str(ini)], cwd=appdir)
    try:
        proc.wait_for_line("Ready with 2 worker(s)")
        ini.write_text(settings + f"metrics_listen = {HOST}:{mport}\n")
        os.kill(proc.proc.pid, signal.SIGHUP)
        proc.wait_for_line("metrics_listen cannot change without a restart (stays off)")
        proc.wait_for_line("Reloaded: 2 new worker(s)")
        assert fetch(port).status == 200
        with pytest.raises(OSError):
            scrape(mport)
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()
