"""The master process and its workers, for real: ``python -m maitre --workers=N`` in
a subprocess, real signals (TERM, HUP, TTIN, TTOU, KILL to a worker), real sockets,
systemd's notification socket and socket activation done the way systemd does them.

Every loop is bounded in count and time; every process started is stopped by PID.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    HOST,
    Cluster,
    ConnectionClosed,
    RawConnection,
    ServerProcess,
    free_port,
    get,
    maitre_only,
    wait_for,
)

pytestmark = maitre_only("waitress has no worker processes")

APP = """
import os, signal, time

BODY = "v1"

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or 2))
    elif path == "/wedge":
        os.kill(os.getpid(), signal.SIGSTOP)
    body = f"{BODY} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "wapp.py").write_text(APP)
    (tmp_path / "broken.py").write_text("raise ImportError('import-failed-marker')\n")
    return tmp_path


@pytest.fixture
def cluster(appdir):
    started = []

    def start(*args, **kw):
        c = Cluster(appdir, *args, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def fetch(port: int, path: str = "/", timeout: float = 10.0):
    """One request on a fresh connection: the response."""
    with RawConnection(port, timeout=timeout) as conn:
        return conn.request(get(path, headers=b"Connection: close\r\n"))


def request_in_background(port: int, path: str) -> None:
    """One request in a daemon thread, its outcome ignored (a stop may cut it)."""

    def run():
        try:
            fetch(port, path, timeout=15)
        except Exception:
            pass

    threading.Thread(target=run, daemon=True).start()


class Load:
    """Clients requesting in a loop on fresh connections (bounded in time), counting
    answers, failures and refusals, and noting the bodies seen; ``keep_alive``
    clients more, each on one connection while the server keeps it open."""

    def __init__(
        self, port: int, clients: int = 2, seconds: float = 5.0, keep_alive: int = 0
    ):
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.ok = 0
        self.failed: list = []
        #: a request sent on a keep-alive connection the server closed while idle,
        #: before reading it: the client's to retry (RFC 9112 section 9.5)
        self.idle_races = 0
        self.bodies: list = []  # (monotonic time, body)
        self.halt = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        self.threads += [
            threading.Thread(target=self._run_kept) for _ in range(keep_alive)
        ]
        for t in self.threads:
            t.start()

    def _run_kept(self):
        conn = None
        while time.monotonic() < self.deadline and not self.halt:
            try:
                if conn is None:
                    conn = RawConnection(self.port, timeout=5)
                conn.send(get("/"))
            except Exception as exc:
                with self.lock:
                    self.failed.append(repr(exc))
                conn = None
                continue
            try:
                resp = conn.read_response("GET")
            except Exception as exc:
                with self.lock:
                    if isinstance(exc, ConnectionClosed) and not conn.buf:
                        self.idle_races += 1  # nothing of a response came
                    else:
                        self.failed.append(repr(exc))
                conn.close()
                conn = None
                continue
            with self.lock:
                self.ok += 1
                self.bodies.append((time.monotonic(), resp.text))
            if resp.header("Connection") == "close":
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _run(self):
        while time.monotonic() < self.deadline and not self.halt:
            try:
                resp = fetch(self.port, timeout=5)
                result = None if resp.status == 200 else f"status {resp.status}"
            except Exception as exc:  # refused, reset, closed early: all failures
                result, resp = repr(exc), None
            with self.lock:
                if result is None:
                    self.ok += 1
                    self.bodies.append((time.monotonic(), resp.text))
                else:
                    self.failed.append(result)

    def join(self):
        for t in self.threads:
            t.join(30)
        return self


def started(c: Cluster, workers: int = 2) -> Cluster:
    c.wait_log(f"Ready with {workers} worker(s)")
    return c


# ------------------------------------------------------------------ basics


def test_workers_share_the_load_and_stop_on_sigterm(cluster):
    c = started(cluster("--workers=2"))
    assert len(c.workers()) == 2
    # Connections open at the same time land on both workers (the workers share the
    # listening socket and balance what they take by their open connections; one at
    # a time, in turn, any worker may take each).
    conns = [RawConnection(c.port, timeout=10) for _ in range(20)]
    try:
        pids = {conn.request(get("/")).text.split()[1] for conn in conns}
    finally:
        for conn in conns:
            conn.close()
    assert {int(p) for p in pids} == c.workers()
    workers = c.workers()
    c.signal(signal.SIGTERM)
    assert c.wait_exit() == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, c.port), timeout=2)
    assert "Traceback" not in c.proc.stderr


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_sigterm_answers_requests_in_flight(cluster):
    """SIGTERM with 10 requests in flight (the app sleeps 2 s) and 20 idle
    keep-alive connections: every request gets its complete 200 with
    Connection: close, the idle ones are closed after keepalive_linger (2 s), new
    connections are refused, and the master exits 0 in under 3 s."""
    c = started(cluster("--workers=2", "--threads=10"))
    results: list = []

    def slow():
        try:
            with RawConnection(c.port) as conn:
                results.append(conn.request(get("/sleep", headers=b"")))
        except Exception as exc:
            results.append(exc)

    idle = []
    for _ in range(20):
        conn = RawConnection(c.port)
        assert conn.request(get("/")).status == 200
        idle.append(conn)
    threads = [threading.Thread(target=slow) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # all ten read and running
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    for conn in idle:  # closed after the linger
        conn.sock.settimeout(3.5)
        assert conn.sock.recv(1) == b""
        conn.close()
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, c.port), timeout=2)
    for t in threads:
        t.join(10)
    assert c.wait_exit(5) == 0
    elapsed = time.monotonic() - t0
    assert len(results) == 10
    for r in results:
        assert not isinstance(r, Exception), r
        assert r.status == 200 and r.text.startswith("v1") and not r.truncated
        assert r.header("Connection") == "close"
    assert elapsed < 3.5, (elapsed, c.proc.stderr)
    assert "Traceback" not in c.proc.stderr


# ------------------------------------------------------------------ reload


def test_sighup_reloads_without_refusing_anything(cluster, appdir):
    c = started(cluster("--workers=2"))
    old = c.workers()
    load = Load(c.port, clients=2, seconds=5.0, keep_alive=2)
    time.sleep(1.0)
    (appdir / "wapp.py").write_text(APP.replace('"v1"', '"v2"'))
    hup_at = time.monotonic()
    c.signal(signal.SIGHUP)
    load.join()
    assert load.failed == [], load.failed[:5]
    assert load.ok > 50
    # Idle keep-alive connections are closed between requests only: a race with
    # a request in the same instant is rare (at most one per kept connection).
    assert load.idle_races <= 2, load.idle_races
    bodies = [b.split()[0] for _, b in load.bodies]
    assert bodies[0] == "v1" and bodies[-1] == "v2"
    switched = min(t for t, b in load.bodies if b.startswith("v2"))
    assert switched - hup_at < 3.0
    # Once the new ones answer, the old workers are gone.
    assert not any(b.startswith("v1") for t, b in load.bodies if t > switched + 1.0)
    c.wait_log("Reloaded")
    assert c.workers().isdisjoint(old)
    assert len(c.workers()) == 2


def test_sighups_during_a_rolling_reload_end_on_the_last_code(cluster, appdir):
    """SIGHUPs in quick succession, each after a new version is saved: nothing is
    refused or lost, and the server ends with exactly its workers, all of them
    running the last version (none of an earlier generation left serving)."""
    c = started(cluster("--workers=2"))
    load = Load(c.port, clients=2, seconds=4.0)
    for version in range(2, 7):
        (appdir / "wapp.py").write_text(APP.replace('"v1"', f'"v{version}"'))
        c.signal(signal.SIGHUP)
        time.sleep(0.15)
    load.join()
    assert load.failed == [], load.failed[:5]
    c.wait_log("Reloaded")

    def settled():
        return len(c.workers()) == 2 and all(
            fetch(c.port).text.startswith("v6") for _ in range(10)
        )

    assert wait_for(settled, 10), c.proc.stderr
    assert "Traceback" not in c.proc.stderr


def test_sighup_with_a_broken_app_keeps_the_old_workers(cluster, appdir):
    c = started(cluster("--workers=2"))
    old = c.workers()
    (appdir / "wapp.py").write_text("raise ImportError('reload-broken-marker')\n")
    c.signal(signal.SIGHUP)
    c.wait_log("Reload failed")
    assert "reload-broken-marker" in c.proc.stderr
    for _ in range(10):
        assert fetch(c.port).text.startswith("v1")
    deadline = time.monotonic() + 3  # the other new one is stopped and reaped
    while c.workers() != old:
        assert time.monotonic() < deadline, (c.workers(), old)
        time.sleep(0.05)
    # Fixed and reloaded again: the new code serves.
    (appdir / "wapp.py").write_text(APP.replace('"v1"', '"v3"'))
    c.signal(signal.SIGHUP)
    c.wait_log("Reloaded")
    # The old workers stop accepting as soon as their loop sees the SIGTERM.
    deadline = time.monotonic() + 2
    while not fetch(c.port).text.startswith("v3"):
        assert time.monotonic() < deadline, c.proc.stderr
        time.sleep(0.05)


# ------------------------------------------------------------- supervision


def test_killed_worker_is_replaced_within_a_second(cluster):
    c = started(cluster("--workers=2"))
    before = c.workers()
    victim = min(before)
    load = Load(c.port, clients=2, seconds=3.0)
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    [line] = c.wait_log(" accepting", 3)[2:]  # two at start, then the replacement
    replaced = time.monotonic() - t0
    load.join()
    assert replaced < 1.0, replaced
    new = int(re.search(r"Worker (\d+) accepting", line).group(1))
    assert c.workers() == before - {victim} | {new}
    assert f"Worker {victim} killed by SIGKILL" in c.proc.stderr
    # Only what the victim held at the instant may fail (one per client at most).
    assert len(load.failed) <= 2, load.failed
    assert {int(b.split()[1]) for t, b in load.bodies if t > t0 + replaced} >= {new}


def test_wedged_worker_is_killed_after_worker_timeout(cluster):
    c = started(cluster("--workers=2", "--worker-timeout=2"))
    before = c.workers()

    def wedge():
        try:
            fetch(c.port, "/wedge", timeout=6)
        except Exception:
            pass

    threading.Thread(target=wedge, daemon=True).start()
    [line] = c.wait_log("silent for")
    wedged = int(re.search(r"Worker (\d+) silent", line).group(1))
    assert wedged in before
    c.wait_log(" accepting", 3)
    # The killed worker is reaped by the master's loop, maybe just after its
    # replacement says it accepts: give the reaping a moment.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        alive = c.workers()
        if len(alive) == 2 and wedged not in alive:
            break
        time.sleep(0.05)
    assert len(alive) == 2 and wedged not in alive, alive
    for _ in range(10):
        assert fetch(c.port).status == 200


def test_max_requests_recycles_without_failures(cluster):
    c = started(cluster("--workers=2", "--max-requests=50", "--max-requests-jitter=5"))
    first = c.workers()
    load = Load(c.port, clients=2, seconds=4.0)
    load.join()
    assert load.failed == [], load.failed[:5]
    assert load.ok > 200
    assert c.count("reached max_requests") >= 2
    seen = {int(b.split()[1]) for _, b in load.bodies}
    assert len(seen) > 2 and not first <= c.workers()


def test_app_that_fails_to_import_stops_the_master(cluster):
    c = cluster("--workers=3", app="broken:app")
    assert c.wait_exit(15) == 2  # a usage error, as with one process
    c.proc.wait()
    err = c.proc.stderr
    assert err.count("Traceback (most recent call last)") == 1, err
    assert c.count("Booting worker") == 3  # no respawn


def test_ttin_and_ttou_add_and_remove_a_worker(cluster):
    c = started(cluster("--workers=2"))
    c.signal(signal.SIGTTIN)
    c.wait_log(" accepting", 3)
    deadline = time.monotonic() + 5
    while len(c.workers()) != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(c.workers()) == 3
    c.signal(signal.SIGTTOU)
    deadline = time.monotonic() + 10
    while len(c.workers()) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(c.workers()) == 2
    assert fetch(c.port).status == 200


# ---------------------------------------------------------------- systemd


def _notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(15)
    return sock, path


def _messages(sock, until: str) -> list:
    got = []
    while True:
        msg = sock.recv(4096).decode()
        got.append(msg)
        if until in msg:
            return got


def test_sd_notify_ready_reloading_stopping(cluster, tmp_path):
    sock, path = _notify_socket(tmp_path)
    with sock:
        c = cluster("--workers=2", env=dict(os.environ, NOTIFY_SOCKET=path))
        [ready] = _messages(sock, "READY=1")
        # Sent once every worker has said it accepts (logged before READY=1).
        # The log lines are written before the datagram, but the reader of the
        # master's stderr may not have taken them yet: wait for them.
        assert len(c.wait_log(" accepting", 2)) == 2
        c.wait_log("Ready with 2 worker(s)")
        assert c.count("Ready with 2 worker(s)") == 1
        assert "STATUS=serving with 2 worker(s)" in ready
        assert fetch(c.port).status == 200
        c.signal(signal.SIGHUP)
        reloading = _messages(sock, "RELOADING=1")[-1]
        usec = int(re.search(r"MONOTONIC_USEC=(\d+)", reloading).group(1))
        assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 5
        assert "READY=1" in _messages(sock, "READY=1")[-1]
        c.signal(signal.SIGTERM)
        assert "STOPPING=1" in _messages(sock, "STOPPING=1")[-1]
        assert c.wait_exit() == 0


def test_sd_notify_single_process(cluster, tmp_path):
    sock, path = _notify_socket(tmp_path)
    with sock:
        c = cluster(env=dict(os.environ, NOTIFY_SOCKET=path))
        assert "READY=1" in _messages(sock, "READY=1")[-1]
        assert fetch(c.port).status == 200
        c.signal(signal.SIGTERM)
        assert "STOPPING=1" in _messages(sock, "STOPPING=1")[-1]
        assert c.wait_exit() == 0


#: What systemd does before exec: the passed socket as descriptor 3, LISTEN_PID
#: naming the process that execs the server (the pid does not change across exec).
ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.executable, [sys.executable] + sys.argv[2:])
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_listen_fds_socket_activation(appdir, workers):
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    proc = ServerProcess(
        [sys.executable, "-c", ACTIVATE, str(listener.fileno())]
        + ["-m", "maitre", f"--workers={workers}", "wapp:app"],
        cwd=appdir,
        pass_fds=(listener.fileno(),),
        timeout=20,
    )
    listener.close()  # the server's copy is the only one now
    try:
        proc.wait_for_line(f"Serving on http://{HOST}:{port}")
        assert fetch(port).text.startswith("v1")
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()


# ---------------------------------------------------------------- pid file


def test_pid_file(cluster, tmp_path):
    pid_file = tmp_path / "maitre.pid"
    pid_file.write_text("999999999\n")  # stale: no such process
    c = started(cluster("--workers=2", f"--pid-file={pid_file}"))
    assert pid_file.read_text().strip() == str(c.pid)
    # A second server refuses to start over the live pid.
    other = cluster("--workers=2", f"--pid-file={pid_file}")
    assert other.wait_exit() == 2
    assert "pid_file" in other.proc.stderr
    assert pid_file.read_text().strip() == str(c.pid)
    c.signal(signal.SIGTERM)
    assert c.wait_exit() == 0
    assert not pid_file.exists()


def test_pid_file_single_process(cluster, tmp_path):
    pid_file = tmp_path / "one.pid"
    c = cluster(f"--pid-file={pid_file}")
    c.wait_log("Serving on")
    assert pid_file.read_text().strip() == str(c.pid)
    c.signal(signal.SIGTERM)
    assert c.wait_exit() == 0
    assert not pid_file.exists()


#: answers with the names of the maitre modules its process has imported
MODULES_APP = """
import sys

def app(environ, start_response):
    body = " ".join(sorted(m for m in sys.modules if m.startswith("maitre"))).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def test_single_process_runs_without_the_master(cluster, appdir, tmp_path):
    """One process writes its pid file and tells systemd it is ready with the two
    small modules alone: the master, the workers' side and the watcher stay
    unimported."""
    (appdir / "modapp.py").write_text(MODULES_APP)
    pid_file = tmp_path / "one.pid"
    sock, path = _notify_socket(tmp_path)
    with sock:
        c = cluster(
            f"--pid-file={pid_file}",
            app="modapp:app",
            env=dict(os.environ, NOTIFY_SOCKET=path),
        )
        assert "READY=1" in _messages(sock, "READY=1")[-1]
        assert pid_file.read_text().strip() == str(c.pid)
        loaded = set(fetch(c.port).body.decode().split())
    assert {"maitre.pidfile", "maitre.systemd"} <= loaded
    assert not loaded & {"maitre.master", "maitre.worker_process", "maitre.reloader"}
    c.signal(signal.SIGTERM)
    assert c.wait_exit() == 0
    # The same probe sees them in a worker of a master.
    c = started(cluster("--workers=2", app="modapp:app"))
    loaded = set(fetch(c.port).body.decode().split())
    assert {"maitre.master", "maitre.worker_process"} <= loaded


# ---------------------------------------------------------------- --reload


def save_in_two_steps(path, text: str) -> None:
    """Saved as some editors do: truncated, then written. The watcher sees the two
    apart, so the first reload imports an empty module (and fails) and a second one
    follows it."""
    with open(path, "w") as f:
        f.flush()
        time.sleep(0.3)
        f.write(text)


def test_reload_on_change(cluster, appdir):
    pytest.importorskip("watchfiles")
    c = cluster("--reload")
    c.wait_log("Ready with 1 worker(s)")
    c.wait_log("Watching")
    assert fetch(c.port).text.startswith("v1")
    time.sleep(0.3)  # the watcher is set up

    def switched_to(prefix: str, seconds: float = 3.0) -> None:
        """Within ``seconds`` of the save, every answer is ``prefix``'s: the new
        worker answers and the old one (which may answer alongside it for the
        moment the master takes to retire it) no longer does."""
        deadline = time.monotonic() + seconds
        in_a_row = 0
        while in_a_row < 10:
            assert time.monotonic() < deadline, f"no {prefix!r}:\n{c.proc.stderr}"
            in_a_row = in_a_row + 1 if fetch(c.port).text.startswith(prefix) else 0
            time.sleep(0.02)

    save_in_two_steps(appdir / "wapp.py", APP.replace('"v1"', '"v2"'))
    switched_to("v2")
    # A syntax error: logged, the old code keeps serving, the next save recovers.
    failed = c.count("Reload failed")
    (appdir / "wapp.py").write_text("def app(:\n")
    c.wait_log("Reload failed", failed + 1)
    assert "SyntaxError" in c.proc.stderr
    for _ in range(10):
        assert fetch(c.port).text.startswith("v2")
    (appdir / "wapp.py").write_text(APP.replace('"v1"', '"v4"'))
    switched_to("v4")
    # No worker of an earlier generation is left: one worker and the file watcher.
    assert wait_for(lambda: len(c.workers()) == 2, 5), c.proc.stderr


FAIL_IN_ONE = """
import os, time

# The first worker to import this module after the test creates the marker takes it
# and fails, slowly; every other worker loads it.
marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail-one")
try:
    os.unlink(marker)
except FileNotFoundError:
    pass
else:
    time.sleep(1.5)
    raise ImportError("fail-one-marker")
"""


def test_reload_failing_in_one_new_worker_loses_nothing_the_others_took(
    cluster, appdir
):
    """With 2 new workers, one loads the new code and accepts while the other
    fails: the reload is given up, and the one that accepted finishes what it took
    (stopped gracefully, not killed)."""
    (appdir / "wapp.py").write_text(APP + FAIL_IN_ONE)
    c = started(cluster("--workers=2"))
    (appdir / "fail-one").write_text("")
    c.signal(signal.SIGHUP)
    c.wait_log(" accepting", 3)  # the new worker that loaded
    results = []

    def slow_request():
        try:
            results.append(fetch(c.port, "/sleep", timeout=15).status)
        except Exception as exc:  # reset, or closed before a whole response
            results.append(repr(exc))

    # Connections open at the same time: the balance gives the new worker its share.
    threads = [threading.Thread(target=slow_request) for _ in range(9)]
    for t in threads:
        t.start()
    c.wait_log("Reload failed")
    assert "fail-one-marker" in c.proc.stderr
    for t in threads:
        t.join(20)
    assert results == [200] * 9, results
    assert wait_for(lambda: len(c.workers()) == 2, 5), c.proc.stderr
    assert "killed by" not in c.proc.stderr, c.proc.stderr


# ------------------------------------------------------- settings, serve()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers=0"], "workers must be at least 1"),
        (["--workers=x"], "Invalid value for workers"),
        (["--reload", "--preload-app"], "reload may not be set together"),
        (["--worker-timeout=-1"], "worker_timeout must not be negative"),
    ],
)
def test_bad_settings_fail_at_start(appdir, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "maitre", *args, "wapp:app"],
        cwd=appdir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_workers_auto():
    from maitre.adjustments import Adjustments

    assert Adjustments(workers="auto").workers == len(os.sched_getaffinity(0))


SERVE_SCRIPT = """
import os, sys
from maitre import serve

def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

serve(app, listen="127.0.0.1:" + sys.argv[1], workers=2)
"""


def test_serve_with_workers_from_python(tmp_path):
    port = free_port()
    script = Path(tmp_path / "serve_it.py")
    script.write_text(SERVE_SCRIPT)
    proc = ServerProcess([sys.executable, str(script), str(port)], timeout=20)
    try:
        proc.wait_for_line("Ready with 2 worker(s)")
        children = f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children"
        with open(children) as f:
            workers = set(f.read().split())
        assert len(workers) == 2
        # Served by the workers (forked with the app in memory), not the master.
        assert {fetch(port).text for _ in range(20)} <= workers
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()


def test_keep_alive_connections_spread_evenly(cluster):
    """400 keep-alive connections over 2 workers: each serves within 15 % of the
    mean (sharing the socket without the engine's balancing gave 496/304)."""
    c = started(cluster("--workers=2", "--connection-limit=1000", "--backlog=1024"))
    conns = [RawConnection(c.port) for _ in range(400)]
    try:
        counts: dict = {}
        for _ in range(2):  # every connection twice: kept alive, same worker
            for conn in conns:
                pid = conn.request(get("/")).text.split()[1]
                counts[pid] = counts.get(pid, 0) + 1
    finally:
        for conn in conns:
            conn.close()
    assert len(counts) == 2
    for n in counts.values():
        assert abs(n - 400) <= 60, counts


PASTE_INI = """
[app:main]
use = call:wapp:make_app

[server:main]
use = egg:maitre#main
listen = 127.0.0.1:{port}
workers = {workers}
"""

PASTE_SCRIPT = """
import sys
from paste.deploy import loadapp, loadserver
uri = "config:" + sys.argv[1]
loadserver(uri)(loadapp(uri))
"""


def test_paste_workers_and_sighup_rereads_the_ini(appdir):
    pytest.importorskip("paste.deploy")
    with open(appdir / "wapp.py", "a") as f:
        f.write("\ndef make_app(global_conf, **local_conf):\n    return app\n")
    port = free_port()
    ini = appdir / "site.ini"
    ini.write_text(PASTE_INI.format(port=port, workers=2))
    proc = ServerProcess([sys.executable, "-c", PASTE_SCRIPT, str(ini)], cwd=appdir)
    try:
        proc.wait_for_line("Ready with 2 worker(s)")
        assert fetch(port).text.startswith("v1")
        ini.write_text(PASTE_INI.format(port=port, workers=3))
        os.kill(proc.proc.pid, signal.SIGHUP)
        proc.wait_for_line("Reloaded: 3 new worker(s)")
        assert fetch(port).status == 200
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()


def test_unix_socket_shared_by_the_workers(cluster, tmp_path, appdir):
    path = str(tmp_path / "m.sock")
    proc = ServerProcess(
        [sys.executable, "-m", "maitre", "--workers=2", f"--unix-socket={path}"]
        + ["wapp:app"],
        cwd=appdir,
        timeout=20,
    )
    try:
        proc.wait_for_line("Ready with 2 worker(s)")
        for _ in range(5):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(path)
                s.sendall(get("/", headers=b"Connection: close\r\n"))
                assert b"v1" in b"".join(iter(lambda: s.recv(4096), b""))
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait() == 0
        assert not os.path.exists(path)
    finally:
        proc.kill()


def test_sigusr1_reaches_every_worker_and_stops_none(cluster):
    """USR1 (reopen the log files) is forwarded: each worker handles it (the
    default action would kill it) and keeps serving."""
    c = started(cluster("--workers=2"))
    before = c.workers()
    c.signal(signal.SIGUSR1)
    time.sleep(0.5)
    assert c.workers() == before
    assert "killed by" not in c.proc.stderr
    assert fetch(c.port).status == 200


def test_second_signal_stops_at_once(cluster):
    """TERM, then INT while a request sleeps 10 s: the workers are told to quit
    at once (SIGQUIT) and the master exits 0 in a second or two, no traceback."""
    c = started(cluster("--workers=2"))

    request_in_background(c.port, "/sleep")
    time.sleep(0.5)
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    time.sleep(0.3)
    c.signal(signal.SIGINT)
    assert c.wait_exit(8) == 0
    assert time.monotonic() - t0 < 3.0
    assert "SIGINT again: stopping at once" in c.proc.stderr
    assert "Traceback" not in c.proc.stderr


def test_shutdown_timeout_bounds_the_stop(cluster):
    c = started(cluster("--workers=2", "--shutdown-timeout=1"))

    request_in_background(c.port, "/sleep?10")
    time.sleep(0.5)
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait_exit(8) == 0
    assert time.monotonic() - t0 < 2.5
    assert "Traceback" not in c.proc.stderr


def test_replacement_that_cannot_import_is_retried_not_looped(cluster, appdir):
    """A worker dies while the code on disk no longer imports: the other keeps
    serving, its replacement is retried after a growing delay (no fork loop), and
    once the code is fixed the replacement serves."""
    c = started(cluster("--workers=2"))
    (appdir / "wapp.py").write_text("raise ImportError('broken-on-disk-marker')\n")
    victim = min(c.workers())
    os.kill(victim, signal.SIGKILL)
    c.wait_log("next attempt in 1s")
    for _ in range(10):
        assert fetch(c.port, timeout=5).status == 200
    time.sleep(1.5)
    assert c.count("Booting worker") <= 4  # 2 at start, then 1 s, 2 s apart
    (appdir / "wapp.py").write_text(APP.replace('"v1"', '"v5"'))
    c.wait_log(" accepting", 3)
    assert len(c.workers()) == 2
