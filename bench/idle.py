"""Hold idle keep-alive connections open to 127.0.0.1:PORT while wrk measures.

    python bench/idle.py PORT COUNT HOLD_SECONDS [SAMPLE]

Opens COUNT connections one after another, sends one GET / on each and reads
its answer (so each is a used keep-alive connection, then idle), and prints
``READY opened=N answered=M seconds=S``.  It then holds them until it receives
SIGUSR1 (bench/run.sh sends it when wrk is done) or HOLD_SECONDS pass, sends a
GET / on SAMPLE of them spread evenly (default 100), reads the answers for at
most 15 s, prints ``CHECK served=K sample=SAMPLE closed=C`` (C: found closed by
the server), closes everything and exits.  Opening stops after 120 s.  Traffic
goes only to 127.0.0.1.
"""

import signal
import socket
import sys
import time

HOST = "127.0.0.1"
OPEN_DEADLINE = 120.0
TIMEOUT = 10.0
CHECK_SECONDS = 15.0
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_response(sock):
    """Read one response to GET / of the hello app; True if it is a 200."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
        if len(data) > 65536:
            return False
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return lines[0].split(b" ")[1:2] == [b"200"]


def exchange(sock):
    try:
        sock.sendall(REQUEST)
        return read_response(sock)
    except (OSError, ValueError):
        return False


def check_sample(picked):
    """GET / on every picked connection, answers read within 15 s in all.

    Returns (served, closed): answered with a 200, and found closed by the server.
    """
    sent, closed = [], 0
    for sock in picked:
        try:
            sock.sendall(REQUEST)
            sent.append(sock)
        except OSError:
            closed += 1
    deadline = time.monotonic() + CHECK_SECONDS
    served = 0
    for sock in sent:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            sock.settimeout(left)
            if read_response(sock):
                served += 1
            else:
                closed += 1
        except TimeoutError:
            pass
        except (OSError, ValueError):
            closed += 1
    return served, closed


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    port, count, hold = int(argv[0]), int(argv[1]), float(argv[2])
    sample = min(count, int(argv[3]) if len(argv) == 4 else 100)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    start = time.monotonic()
    conns, answered, error = [], 0, ""
    for _ in range(count):
        if time.monotonic() - start > OPEN_DEADLINE:
            error = f"opening stopped after {OPEN_DEADLINE:.0f} s"
            break
        try:
            sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        except OSError as exc:
            error = f"connect: {exc}"
            break
        conns.append(sock)
        if exchange(sock):
            answered += 1
    elapsed = time.monotonic() - start
    print(
        f"READY opened={len(conns)} answered={answered} seconds={elapsed:.1f}"
        + (f" error={error}" if error else ""),
        flush=True,
    )

    signal.sigtimedwait({signal.SIGUSR1}, hold)

    served = closed = 0
    if conns:
        step = max(1, len(conns) // sample)
        served, closed = check_sample(conns[::step][:sample])
    print(f"CHECK served={served} sample={sample} closed={closed}", flush=True)
    for sock in conns:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
