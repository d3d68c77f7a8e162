#!/usr/bin/env python3
"""Soak test: millions of keep-alive requests plus connect/disconnect churn against a
server in a child process, watching the child's memory and open descriptors.

    python3 scripts/soak.py                          # maitre, 2 million requests
    python3 scripts/soak.py --requests 300000 --churn 5000
    python3 scripts/soak.py --target waitress        # the reference, same load

Load: wrk (keep-alive, --connections connections) in rounds of --round seconds until
--requests requests were answered or --max-seconds passed; if wrk is not installed, a
Python keep-alive client does the same (much slower). Meanwhile a churn thread opens
and drops connections in every way a client can: closed at once, reset (RST), left
after half a request, after a whole request without reading the answer, and served
normally -- --churn of them in all.

Reports VmRSS, VmHWM and open descriptors of the server at the start (after a warm-up),
after each round and at the end (after the churn has stopped and lingering closes have
finished), and says whether they stayed flat: RSS growth from the first round to the end
under --rss-slack MiB, descriptors back to their starting count. Exits 1 if not flat or
if any request failed. Every loop is bounded; the child is killed by PID on exit.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

MIB = 1 << 20


# --------------------------------------------------------------- child process


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def child_main(target: str, threads: int, connection_limit: int) -> None:
    if target == "waitress":
        from waitress.server import create_server
    else:
        from maitre import create_server
    server = create_server(
        _hello,
        host="127.0.0.1",
        port=0,
        threads=threads,
        connection_limit=connection_limit,
        channel_timeout=30,
        cleanup_interval=5,
    )
    print(f"PORT {server.effective_port}", flush=True)
    server.run()


# --------------------------------------------------------------- measurements


class Child:
    def __init__(self, target: str, threads: int, connection_limit: int):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                "--target",
                target,
                "--threads",
                str(threads),
                "--connection-limit",
                str(connection_limit),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        line = self.proc.stdout.readline()
        if not line.startswith(b"PORT "):
            self.kill()
            raise SystemExit(f"server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def status(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        return self.status("Threads") // 1024

    def sample(self) -> dict:
        return {
            "rss": self.status("VmRSS"),
            "hwm": self.status("VmHWM"),
            "fds": self.fds(),
            "threads": self.threads(),
        }


def fmt(sample: dict) -> str:
    return (
        f"RSS {sample['rss'] / MIB:7.1f} MiB  HWM {sample['hwm'] / MIB:7.1f} MiB  "
        f"fds {sample['fds']:4d}  threads {sample['threads']:3d}"
    )


# ---------------------------------------------------------------------- load

REQUEST = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"


def wrk_round(port: int, seconds: int, connections: int) -> tuple[int, int]:
    """One wrk run: (requests answered, errors)."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    done = int(m.group(1)) if m else 0
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if m:
        errors += sum(int(g) for g in m.groups())
    if not done:
        print(out, file=sys.stderr)
        errors += 1
    return done, errors


def python_round(port: int, seconds: int, connections: int) -> tuple[int, int]:
    """Fallback without wrk: keep-alive clients in threads, pipelining 16 deep."""
    deadline = time.monotonic() + seconds
    counts = [0] * connections
    errors = [0]
    batch = REQUEST * 16

    def client(i: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                buf = b""
                while time.monotonic() < deadline:
                    s.sendall(batch)
                    got = 0
                    while got < 16:
                        data = s.recv(65536)
                        if not data:
                            raise ConnectionError("closed")
                        buf += data
                        got += buf.count(b"Hello, world!")
                        buf = buf[buf.rfind(b"Hello, world!") + 13 :]
                    counts[i] += 16
        except OSError:
            errors[0] += 1

    pool = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 30)
    return sum(counts), errors[0]


class Churn(threading.Thread):
    """Opens and drops connections in every way, ``total`` of them, until stopped."""

    def __init__(self, port: int, total: int):
        super().__init__(daemon=True)
        self.port = port
        self.total = total
        self.done = 0
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while self.done < self.total and not self.stop.is_set():
            kind = self.done % 5
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(10)
                if kind == 1:
                    s.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                s.connect(("127.0.0.1", self.port))
                if kind == 2:
                    s.sendall(b"GET / HTTP/1.1\r\nHo")
                elif kind == 3:
                    s.sendall(REQUEST)
                elif kind == 4:
                    s.sendall(REQUEST)
                    data = b""
                    while b"Hello, world!" not in data:
                        more = s.recv(4096)
                        if not more:
                            raise ConnectionError("closed before the answer")
                        data += more
                s.close()
            except OSError:
                self.failures += 1
            self.done += 1


# ---------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=["maitre", "waitress"], default="maitre")
    p.add_argument("--requests", type=int, default=2_000_000)
    p.add_argument("--churn", type=int, default=20_000)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--connection-limit", type=int, default=1000)
    p.add_argument("--round", type=int, default=10, help="seconds per load round")
    p.add_argument("--max-seconds", type=int, default=600)
    p.add_argument("--rss-slack", type=float, default=16.0, help="MiB")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args.target, args.threads, args.connection_limit)
        return 0

    use_wrk = shutil.which("wrk") is not None
    load = wrk_round if use_wrk else python_round
    child = Child(args.target, args.threads, args.connection_limit)
    churn = Churn(child.port, args.churn)
    try:
        print(
            f"soak: {args.target} pid {child.pid} port {child.port}; load by "
            f"{'wrk' if use_wrk else 'python client'} with {args.connections} "
            f"keep-alive connections, {args.requests} requests, {args.churn} churned "
            f"connections, at most {args.max_seconds}s"
        )
        load(child.port, 1, args.connections)  # warm-up
        time.sleep(1)
        start = child.sample()
        print(f"start          {fmt(start)}")
        churn.start()
        total = errors = 0
        rounds = []
        t0 = time.monotonic()
        while total < args.requests and time.monotonic() - t0 < args.max_seconds:
            during = []
            timer = threading.Timer(
                args.round / 2, lambda into=during: into.append(child.sample())
            )
            timer.start()
            done, errs = load(child.port, args.round, args.connections)
            timer.cancel()
            total += done
            errors += errs
            if during:
                print(f"during         {fmt(during[0])}  (under load)")
            sample = child.sample()
            rounds.append(sample)
            print(
                f"after {total:>9d}  {fmt(sample)}  "
                f"({done / args.round:,.0f} req/s, churned {churn.done})"
            )
        churn.stop.set()
        churn.join(60)
        elapsed = time.monotonic() - t0
        time.sleep(3)  # lingering closes end within 2 s
        end = child.sample()
        print(f"end            {fmt(end)}")

        first = rounds[0] if rounds else start
        rss_growth = (end["rss"] - first["rss"]) / MIB
        rss_flat = rss_growth < args.rss_slack
        fds_flat = end["fds"] <= start["fds"]
        threads_flat = end["threads"] <= max(r["threads"] for r in [start, *rounds])
        print(
            f"{total} requests ({errors} errors) and {churn.done} churned connections "
            f"({churn.failures} failed) in {elapsed:.0f}s"
        )
        print(
            f"RSS: {start['rss'] / MIB:.1f} MiB at start, {first['rss'] / MIB:.1f} "
            f"after the first round, {end['rss'] / MIB:.1f} at the end "
            f"({rss_growth:+.1f} MiB): {'flat' if rss_flat else 'GROWING'}"
        )
        print(
            f"descriptors: {start['fds']} at start, {end['fds']} at the end: "
            f"{'flat' if fds_flat else 'LEAKING'}"
        )
        ok = rss_flat and fds_flat and threads_flat and errors == 0
        ok = ok and churn.failures == 0 and child.proc.poll() is None
        print("verdict:", "FLAT" if ok else "NOT FLAT (see above)")
        return 0 if ok else 1
    finally:
        churn.stop.set()
        child.kill()


if __name__ == "__main__":
    sys.exit(main())
