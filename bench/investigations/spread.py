"""How evenly worker processes that share one listening socket share its connections.

    python bench/investigations/spread.py [--procs 2] [--conns 100] [--rounds 5]
        [--wrk SECONDS] [--supervised] [--stop-one]

Binds one socket on 127.0.0.1, forks PROCS processes that each run a maitre server
on it (as a master's workers do), then per round opens CONNS keep-alive connections
at once (non-blocking connects, then one GET on each, all answered, all held open
until every one is answered), or with ``--wrk`` runs ``wrk -t2 -cCONNS`` for that
many seconds. Each process counts the distinct connections it served; they are
reported per round, with the largest distance from the mean in percent (the target
is 15 %). ``--supervised`` attaches each process to a supervisor pipe
(``attach_supervisor``), as under a master; ``--stop-one`` stops the first process
(SIGSTOP) during the load, to see how long the others make clients wait. Only
127.0.0.1 is used; every process started is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


def child(sock: socket.socket, out_fd: int, supervised: bool) -> None:
    from maitre import create_server

    seen: set = set()
    requests = [0]

    def app(environ, start_response):
        seen.add(environ["REMOTE_PORT"])
        requests[0] += 1
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = create_server(app, sockets=[sock], threads=2, connection_limit=1000)
    pipe_r = None
    if supervised:
        pipe_r, pipe_w = os.pipe()
        server.attach_supervisor(pipe_w)
        os.close(pipe_w)
    server.run()
    report = {"pid": os.getpid(), "connections": len(seen), "requests": requests[0]}
    os.write(out_fd, (json.dumps(report) + "\n").encode())
    os._exit(0)


def burst(port: int, count: int) -> int:
    """Opens ``count`` connections at once, one GET on each; returns the answers."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, port))
        socks.append(s)
    pending = {s: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" for s in socks}
    answers = {s: b"" for s in socks}
    deadline = time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(pending), [], 1)
        for s in writable:
            s.send(pending.pop(s))
    done = 0
    waiting = set(socks)
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(list(waiting), [], [], 1)
        for s in readable:
            data = s.recv(4096)
            answers[s] += data
            if not data or answers[s].endswith(b"ok"):
                waiting.discard(s)
                done += answers[s].endswith(b"ok")
    for s in socks:
        s.close()
    return done


def stopped(pid: int) -> None:
    """Waits until every thread of ``pid`` has stopped (a stop is not immediate)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(s == "T" for s in states):
            return
        time.sleep(0.01)
    raise RuntimeError(f"process {pid} did not stop")


def run_round(args, sock, port) -> list:
    out_r, out_w = os.pipe()
    pids = []
    for _ in range(args.procs):
        pid = os.fork()
        if pid == 0:
            os.close(out_r)
            try:
                child(sock, out_w, args.supervised)
            finally:
                os._exit(1)
        pids.append(pid)
    os.close(out_w)
    try:
        time.sleep(1.0)  # every process in its loop
        if args.stop_one:
            os.kill(pids[0], signal.SIGSTOP)
            stopped(pids[0])
        started = time.monotonic()
        if args.wrk:
            url = f"http://{HOST}:{port}/"
            subprocess.run(
                ["wrk", "-t2", f"-c{args.conns}", f"-d{args.wrk}s", url],
                check=True,
                capture_output=True,
                timeout=args.wrk + 30,
            )
        else:
            answered = burst(port, args.conns)
            assert answered == args.conns, f"{answered} of {args.conns} answered"
            print(f"  {answered} answered in {time.monotonic() - started:.2f} s")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
    reports = []
    with os.fdopen(out_r) as results:
        for line in results:
            reports.append(json.loads(line))
    for pid in pids:
        os.waitpid(pid, 0)
    return reports


def main() -> None:
    import maitre  # noqa: F401 - as a master would: imported before the fork

    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wrk", type=int, default=0)
    parser.add_argument("--supervised", action="store_true")
    parser.add_argument(
        "--stop-one",
        action="store_true",
        help="SIGSTOP the first process during the load (a wedged worker)",
    )
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    worst = 0.0
    for i in range(args.rounds):
        reports = run_round(args, sock, port)
        counts = [r["connections"] for r in reports]
        mean = sum(counts) / len(counts)
        off = max(abs(c - mean) / mean * 100 for c in counts) if mean else 0.0
        worst = max(worst, off)
        print(f"round {i + 1}: connections per process {sorted(counts)}", end="")
        print(f", off {off:.0f} %")
        sys.stdout.flush()
    print(f"worst: {worst:.0f} % from the mean (target: 15 %)")


if __name__ == "__main__":
    main()
