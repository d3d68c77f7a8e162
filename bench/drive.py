"""A fixed number of keep-alive requests, for the instruments of bench/profile.py.

    python bench/drive.py PORT PATH REQUESTS [CONNECTIONS]

Opens CONNECTIONS [8] connections to 127.0.0.1:PORT and, until REQUESTS
requests are answered, sends one `GET PATH` on each connection and then reads
each answer (status 200 and a Content-Length body, or it stops with an error):
the server always has several connections ready at once, as under wrk, but the
count of requests is exact, which callgrind's and strace's per-request figures
need.  Prints ``DRIVE requests=N seconds=S``.
"""

import socket
import sys
import time

HOST = "127.0.0.1"
TIMEOUT = 300.0  # valgrind makes a server many times slower


def read_response(sock, buf):
    """Read one response from SOCK (BUF holds bytes already read); return the rest."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed before a response")
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if lines[0].split()[1] != b"200":
        raise SystemExit(f"status line {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise SystemExit("no Content-Length in the response")
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed inside a body")
        buf += data
    return buf[length:]


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    port, path, total = int(argv[0]), argv[1], int(argv[2])
    conns = int(argv[3]) if len(argv) == 4 else 8
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    socks = [
        socket.create_connection((HOST, port), timeout=TIMEOUT) for _ in range(conns)
    ]
    bufs = [b""] * conns
    done = 0
    start = time.monotonic()
    while done < total:
        batch = min(conns, total - done)
        for sock in socks[:batch]:
            sock.sendall(request)
        for i in range(batch):
            bufs[i] = read_response(socks[i], bufs[i])
        done += batch
    for sock in socks:
        sock.close()
    print(f"DRIVE requests={done} seconds={time.monotonic() - start:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
