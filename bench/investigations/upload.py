"""Uploads alone: server CPU and system calls per GiB of request body, and the
server's memory while many large bodies arrive at once (docs/performance.md,
"Uploads").

    python bench/investigations/upload.py [SERVER ...]      # default: maitre granian
    SIZE_MIB=100 CONCURRENCY=20 COUNT=20 python bench/investigations/upload.py maitre
    STRACE=1 python bench/investigations/upload.py maitre granian

For each server (bench/run_server.py with the ``upload`` app, pinned to CPU 0
like bench/run.sh), CONCURRENCY [8] client threads (pinned to CPU 1) send COUNT
[64] POSTs of SIZE_MIB [8] MiB between them, on keep-alive connections, each body
sent from one 1 MiB block (the client never builds it), and check every answer
(the app reads ``wsgi.input`` to CONTENT_LENGTH in 64 KiB reads and answers the
length). One upload warms the server up first. Printed per server: the server's
CPU time (utime + stime of its processes, /proc/PID/stat) per GiB of body, the
peak of its resident memory sampled every 20 ms during the uploads (VmRSS summed
over its processes) and its VmHWM; with STRACE=1 the uploads run a second time
under ``strace -c -f`` attached to the server's processes, and the system calls
per GiB are printed by name (strace slows the server: its CPU is not counted).
Every wait is bounded; the server is stopped by its PID.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

# bench/, where the harness this reuses lives
BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
HOST = "127.0.0.1"
SIZE = int(float(os.environ.get("SIZE_MIB", "8")) * (1 << 20))
COUNT = int(os.environ.get("COUNT", "64"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "8"))
STRACE = os.environ.get("STRACE") == "1"
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "1")
BLOCK = bytes(range(256)) * 4096  # 1 MiB
TIMEOUT = 120


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tree(pid):
    """The server's process and its children (granian forks a worker)."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def cpu_ms(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * 1000 / tick


def status_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def upload(conn):
    conn.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % SIZE
    )
    view = memoryview(BLOCK)
    left = SIZE
    while left:
        n = min(left, len(view))
        conn.sendall(view[:n])
        left -= n
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in data or not data.endswith(str(SIZE).encode()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no full answer: {data[:200]!r}")
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed: {data[:200]!r}")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(data[:200])


def client(port, n, errors):
    try:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    except OSError:
        pass
    try:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as conn:
            for _ in range(n):
                upload(conn)
    except Exception as exc:  # noqa: BLE001 - reported, then the run fails
        errors.append(repr(exc))


def uploads(port, count):
    errors = []
    share = [
        count // CONCURRENCY + (i < count % CONCURRENCY) for i in range(CONCURRENCY)
    ]
    threads = [
        threading.Thread(target=client, args=(port, n, errors)) for n in share if n
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * max(1, count))
    if errors:
        raise SystemExit(f"upload failed: {errors[0]}")


def start(server, port):
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            SERVER_CPU,
            PY,
            os.path.join(BENCH, "run_server.py"),
            server,
            str(port),
            "upload",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:]
                raise SystemExit(f"{server} exited: {err}") from None
            time.sleep(0.1)
    stop(proc)
    raise SystemExit(f"{server} did not listen on {port} within 30 s")


def stop(proc):
    pids = tree(proc.pid)
    for p in reversed(pids):
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(10)


def strace_counts(pids, port):
    out = f"/tmp/upload-strace-{os.getpid()}.txt"
    cmd = ["strace", "-c", "-f", "-o", out]
    for p in pids:
        cmd += ["-p", str(p)]
    tracer = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached
    try:
        uploads(port, COUNT)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    counts = {}
    with open(out) as f:
        for line in f:
            m = re.match(
                r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line
            )
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
    os.unlink(out)
    return counts


def run(server):
    port = free_port()
    proc = start(server, port)
    try:
        uploads(port, 1)
        pids = tree(proc.pid)
        base_rss = status_kib(pids, "VmRSS")
        peak = [base_rss]
        sampling = threading.Event()

        def sample():
            while not sampling.wait(0.02):
                peak[0] = max(peak[0], status_kib(pids, "VmRSS"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        before = cpu_ms(pids)
        t0 = time.monotonic()
        try:
            uploads(port, COUNT)
        finally:
            secs = time.monotonic() - t0
            after = cpu_ms(pids)
            sampling.set()
            sampler.join()
        gib = COUNT * SIZE / (1 << 30)
        print(
            f"{server:8} {COUNT} x {SIZE / (1 << 20):g} MiB, {CONCURRENCY} at once: "
            f"server CPU {(after - before) / gib:.0f} ms/GiB, "
            f"{gib / secs * 1024:.0f} MiB/s, "
            f"RSS {base_rss / 1024:.1f} MiB before, peak {peak[0] / 1024:.1f} MiB, "
            f"VmHWM {status_kib(pids, 'VmHWM') / 1024:.1f} MiB",
            flush=True,
        )
        if STRACE:
            counts = strace_counts(tree(proc.pid), port)
            total = sum(counts.values())
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
            print(
                f"{server:8} system calls per GiB: {total / gib:.0f} ("
                + ", ".join(f"{k} {v / gib:.0f}" for k, v in top)
                + ")",
                flush=True,
            )
    finally:
        stop(proc)


def main(argv):
    for server in argv or ["maitre", "granian"]:
        run(server)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
