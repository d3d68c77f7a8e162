"""Limits: header and body size limits (431/413), connection_limit under a flood of
connects, big bodies with flat memory (inbuf_overflow, outbuf_overflow, 1 GB each
way), and outbuf_high_watermark pausing an application that outruns its client.
Idle and slow clients (channel_timeout) are in test_slow_clients.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
import zlib

import pytest
from apps import body_length_recorder, digest_app, hello_app
from helpers import (
    HOST,
    TARGET,
    RawConnection,
    RssSampler,
    assert_error_response,
    chunked,
    get,
    maitre_only,
    post,
    wait_for,
)
from subprocess_server import ChildServer

MIB = 1 << 20
GIB = 1 << 30


# ------------------------------------------------------------- head limit


def test_header_limit_answered_before_the_head_ends(serve_app):
    """A head growing past max_request_header_size gets its 431 at once: the
    server does not wait for the end of the head (which never comes here)."""
    app, calls = body_length_recorder()
    srv = serve_app(app, max_request_header_size=1024)
    with srv.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000)
        resp = conn.read_response()
        assert_error_response(resp, 431, "Request Header Fields Too Large")
        assert conn.is_closed()
    assert calls == []
    assert srv.request(get("/")).status == 200


# ------------------------------------------------------------- body limit


@maitre_only("waitress counts the encoded (chunked) bytes against the limit")
def test_chunked_body_limit_counts_decoded_bytes(serve_app):
    """max_request_body_size applies to the decoded body: 900 one-byte chunks
    with extensions (over 10 KB on the wire) pass a 1000-byte limit."""
    app, calls = body_length_recorder()
    srv = serve_app(app, max_request_body_size=1000)
    body = b"1;ext=padding-padding\r\nx\r\n" * 900 + b"0\r\n\r\n"
    assert len(body) > 10 * 1000
    with srv.connect() as conn:
        resp = conn.request(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        )
        assert (resp.status, resp.body) == (200, b"900")
    assert calls == [("/c", 900)]


@pytest.mark.parametrize(
    "first_part",
    [
        chunked(b"a" * 600, b"b" * 600)[:-5],  # two complete chunks, no last chunk
        b"%x\r\n" % MIB + b"c" * 1500,  # one 1 MiB chunk, barely started
    ],
    ids=["complete-chunks", "huge-chunk-started"],
)
def test_chunked_body_limit_answered_as_soon_as_crossed(serve_app, first_part):
    """A chunked body is refused with 413 as soon as its decoded size crosses
    max_request_body_size, while the client has not sent the rest (and the
    connection is still open on its side); the app never runs."""
    app, calls = body_length_recorder()
    srv = serve_app(app, max_request_body_size=1000)
    with srv.connect() as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + first_part
        )
        start = time.monotonic()
        resp = conn.read_response()
        assert time.monotonic() - start < 5
        assert_error_response(resp, 413, "Request Entity Too Large")
        assert conn.is_closed()
    assert calls == []


# ---------------------------------------------------------- connection_limit


def _accepted_sockets(port: int) -> int:
    """Sockets of this process accepted on ``port`` (the server's side)."""
    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] != "0A":  # not the listener
                inodes.add(fields[9])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m and m.group(1) in inodes:
            count += 1
    return count


def test_connection_limit_holds_under_a_flood(serve_app):
    """connection_limit=5 and 40 clients connecting at once: the server never
    has more than 5 connections accepted, nor more than 5 requests running;
    the others wait (not refused) and are all served as connections close."""
    limit, clients = 5, 40
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def app(environ, start_response):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            release.wait(20)
        finally:
            with lock:
                running[0] -= 1
        out = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    srv = serve_app(app, connection_limit=limit, threads=10)
    conns = []
    try:
        for i in range(clients):
            conn = RawConnection(srv.port)
            conns.append(conn)
            conn.send(
                f"GET /c{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
        peak_accepted = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak_accepted = max(peak_accepted, _accepted_sockets(srv.port))
            time.sleep(0.05)
        assert wait_for(lambda: running[0] >= 1, timeout=5)
        assert 1 <= peak_accepted <= limit, peak_accepted
        assert running[1] <= limit
        # let them all through: each response closes its connection, which lets
        # the server accept the next one
        release.set()
        served = 0
        for i, conn in enumerate(conns):
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, f"/c{i}".encode())
            served += 1
            conn.close()
            peak_accepted = max(peak_accepted, _accepted_sockets(srv.port))
        assert served == clients
        assert peak_accepted <= limit
        assert running[1] <= limit
    finally:
        release.set()
        for conn in conns:
            conn.close()


# ------------------------------------------------- spilling to temporary files


def _temp_files() -> set:
    """Deleted regular files this process holds open (anonymous temp files)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("/") and link.endswith("(deleted)"):
            found.add((fd, link))
    return found


def _files_holding(data: bytes) -> int:
    """How many of this process's temporary files start with ``data``."""
    count = 0
    for fd, _ in _temp_files():
        try:
            head = os.pread(int(fd), len(data), 0)
        except OSError:
            continue
        count += head == data
    return count


@pytest.mark.parametrize("size, spills", [(10_000, False), (300_000, True)])
def test_request_body_spills_to_a_temp_file(serve_app, size, spills):
    """A request body above inbuf_overflow is held in a temporary file (the app
    runs while it is open), one below it in memory; the app reads it intact.
    The body is random, so only this request can have written a file holding it
    (maitre reuses the temporary files of earlier bodies)."""
    seen = []
    payload = os.urandom(size)

    def app(environ, start_response):
        holding = _files_holding(payload)
        body = environ["wsgi.input"].read()
        seen.append((holding, zlib.crc32(body), len(body)))
        return hello_app(environ, start_response)

    srv = serve_app(app, inbuf_overflow=100_000)
    resp = srv.request(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + payload
    )
    assert resp.status == 200
    [(holding, crc, length)] = seen
    assert (crc, length) == (zlib.crc32(payload), size)
    assert holding == (1 if spills else 0), holding


def test_spilled_bodies_never_show_an_earlier_body(serve_app):
    """Bodies above inbuf_overflow, each shorter than the one before: whether
    read whole, by line or by iteration, the app gets exactly its own body and
    nothing of an earlier, longer one (maitre reuses their temporary files)."""

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        how = environ["PATH_INFO"]
        if how == "/read":
            body = stream.read()
        elif how == "/readlines":
            body = b"".join(stream.readlines())
        else:
            body = b"".join(iter(stream.readline, b""))
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    srv = serve_app(app, inbuf_overflow=10_000)
    for size in (400_000, 300_000, 200_000, 100_000, 20_000):
        for how in ("/read", "/readlines", "/readline"):
            lines = b"".join(b"%d-%d\n" % (size, i) for i in range(size // 12))
            payload = lines[:size]
            resp = srv.request(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % (how.encode(), len(payload))
                + payload
            )
            assert resp.status == 200
            assert resp.body == payload, (size, how, len(resp.body))


#: inbuf_overflow for the tests of large bodies below: small, so that a few MiB
#: cross it many times over
OVERFLOW = 65536


def _digest(payload: bytes) -> dict:
    """What ``digest_app`` answers for a Content-Length body ``payload``."""
    return {
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "content_length": str(len(payload)),
    }


@pytest.mark.parametrize(
    "size", [OVERFLOW - 1, OVERFLOW, OVERFLOW + 1, 3 * MIB + 7], ids=str
)
def test_large_body_is_read_exactly_and_ends_at_its_length(serve_app, size):
    """Bodies just below, at and just above inbuf_overflow, and one of several
    MiB, each sent in one piece with its head and a pipelined request behind
    it: the app reads exactly the body (length and SHA-256), and the request
    behind it is answered (the body ends at its Content-Length, however the
    server moves the bytes to its file)."""
    srv = serve_app(digest_app, inbuf_overflow=OVERFLOW)
    payload = os.urandom(size)
    with srv.connect() as conn:
        conn.send(post("/", payload) + get("/after"))
        first = conn.read_response()
        second = conn.read_response()
    assert first.status == 200
    assert json.loads(first.body) == _digest(payload)
    assert second.status == 200
    assert json.loads(second.body)["length"] == 0


def test_request_behind_a_body_that_ends_in_its_last_send_is_answered_at_once(
    serve_app,
):
    """The end of a large body and a pipelined request arrive in one send, after
    the rest of the body has been taken: the server stops at the body's end, and
    the request behind it is read as soon as the first is answered, not when the
    loop's once-a-second timers next run (it waited 0.77 s before the fix). Three
    tries, so that a timer tick falling just right cannot hide a wait."""
    srv = serve_app(digest_app, inbuf_overflow=OVERFLOW)
    payload = os.urandom(3 * MIB + 7)
    request = post("/", payload)
    waits = []
    for _ in range(3):
        with srv.connect() as conn:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.send(request[:-10])
            time.sleep(0.2)  # the server has taken all of that
            conn.send(request[-10:] + get("/after"))
            first = conn.read_response()
            t0 = time.monotonic()
            second = conn.read_response()
            waits.append(time.monotonic() - t0)
        assert json.loads(first.body) == _digest(payload)
        assert second.status == 200
    assert max(waits) < 0.3, waits


def test_large_body_in_many_small_sends(serve_app):
    """A body sent in 1,000-byte pieces (its first bytes with the head), then
    a second one on the same connection in 1 MiB pieces: the app reads each
    exactly."""
    srv = serve_app(digest_app, inbuf_overflow=OVERFLOW)
    small, large = os.urandom(MIB + 1), os.urandom(4 * MIB + 3)
    with srv.connect() as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = post("/", small)
        head_end = request.index(b"\r\n\r\n") + 4
        conn.send(request[: head_end + 10])
        for i in range(head_end + 10, len(request), 1000):
            conn.send(request[i : i + 1000])
        first = conn.read_response()
        request = post("/", large)
        for i in range(0, len(request), MIB):
            conn.send(request[i : i + MIB])
        second = conn.read_response()
    assert json.loads(first.body) == _digest(small)
    assert json.loads(second.body) == _digest(large)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_clients_gone_mid_body_leave_nothing_in_the_next_body(serve_app, reset):
    """Clients that send part of a large body and vanish (FIN or RST), each
    followed by a client that sends its whole body: every whole body reaches
    the app exactly, nothing of the abandoned ones mixed in."""
    srv = serve_app(digest_app, inbuf_overflow=OVERFLOW)
    for _ in range(5):
        sock = socket.create_connection((HOST, srv.port), timeout=10)
        sock.sendall(post("/", b"g" * (4 * MIB))[: 3 * MIB // 2])
        if reset:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2
            )
        sock.close()
        payload = os.urandom(2 * MIB)
        with srv.connect() as conn:
            resp = conn.request(post("/", payload))
        assert resp.status == 200
        assert json.loads(resp.body) == _digest(payload)


def test_response_spills_to_a_temp_file(serve_app):
    """Output the client does not take yet, beyond outbuf_overflow, is held in a
    temporary file, not in memory; the client gets every byte in order."""
    block = bytes(range(256)) * 256  # 64 KiB
    blocks = 384  # 24 MiB: more than the kernel's socket buffers hold
    done = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(block) * blocks))])
        for _ in range(blocks):
            yield block
        done.set()

    srv = serve_app(app, outbuf_overflow=256 * 1024, outbuf_high_watermark=64 * MIB)
    before = _temp_files()
    sock = socket.create_connection((HOST, srv.port), timeout=10)
    try:
        sock.sendall(get("/"))
        # the app finishes while the client reads nothing: the rest is queued
        assert done.wait(20)
        time.sleep(0.2)
        spilled = _temp_files() - before
        assert spilled, "24 MiB of pending output and no temporary file"
        received = bytearray()
        sock.settimeout(10)
        expected = len(block) * blocks
        while True:
            head_end = received.find(b"\r\n\r\n")
            if head_end >= 0 and len(received) - head_end - 4 >= expected:
                break
            data = sock.recv(MIB)
            if not data:
                break
            received += data
        body = bytes(received[received.find(b"\r\n\r\n") + 4 :])
        assert body == block * blocks
    finally:
        sock.close()
    assert wait_for(lambda: not (_temp_files() - before), timeout=5)


# ------------------------------------------------------- 1 GB, flat memory

#: how much the server process may grow while moving 1 GiB
GROWTH_LIMIT = 64 * MIB


def _assert_flat(child, sampler, base, base_hwm):
    """Growth of the child's resident memory over ``base``: sampled, and the
    kernel's own peak (VmHWM, which no sampling gap can miss) if it rose."""
    hwm = child.hwm()
    hwm_growth = hwm - base if hwm > base_hwm else 0
    growth = max(sampler.peak - base, hwm_growth)
    assert growth < GROWTH_LIMIT, (
        f"RSS {base / MIB:.0f} MiB, sampled peak {sampler.peak / MIB:.0f} MiB, "
        f"VmHWM {base_hwm / MIB:.0f} -> {hwm / MIB:.0f} MiB"
    )
    print(
        f"server RSS {base / MIB:.1f} MiB, sampled peak {sampler.peak / MIB:.1f} MiB, "
        f"VmHWM {base_hwm / MIB:.1f} -> {hwm / MIB:.1f} MiB"
    )


def _upload(conn, block: bytes, total: int):
    """POSTs a body of ``total`` bytes made of ``block`` repeated; the response."""
    conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
    view = memoryview(block)
    for _ in range(total // len(block)):
        conn.sock.sendall(view)
    return conn.read_response()


def _pattern_block() -> bytes:
    return bytes(range(256)) * 4096  # 1 MiB


def test_1gb_upload_flat_memory():
    """A 1 GiB request body (streamed by the client from one 1 MiB block, never
    built in memory) spills to a temporary file: the server process's resident
    memory (sampled VmRSS and the VmHWM peak) grows by less than 64 MiB, and the
    app reads all of it intact (length and CRC-32)."""
    block = _pattern_block()
    total = GIB
    expected_crc = 0
    for _ in range(total // len(block)):
        expected_crc = zlib.crc32(block, expected_crc)
    # waitress refuses a body of max_request_body_size (1 GiB) itself: raise it
    with ChildServer(TARGET, "crc", max_request_body_size=2 * GIB) as child:
        with RawConnection(child.port) as conn:
            assert (
                conn.request(
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
                ).status
                == 200
            )
        base, base_hwm = child.rss(), child.hwm()
        with (
            RssSampler(child.rss) as sampler,
            RawConnection(child.port, timeout=60) as conn,
        ):
            resp = _upload(conn, block, total)
        assert resp.status == 200
        assert resp.body == f"{total} {expected_crc}".encode()
        _assert_flat(child, sampler, base, base_hwm)


def test_20_concurrent_uploads_flat_memory():
    """20 clients upload 48 MiB each at the same time (960 MiB, each body from
    one 1 MiB block): the bodies wait in temporary files, not in memory, so the
    server process's resident memory grows by less than 64 MiB, and the app
    reads every body intact (length and CRC-32)."""
    block = _pattern_block()
    size = 48 * MIB
    expected_crc = 0
    for _ in range(size // len(block)):
        expected_crc = zlib.crc32(block, expected_crc)
    answers = []

    def upload(port):
        with RawConnection(port, timeout=120) as conn:
            resp = _upload(conn, block, size)
            answers.append((resp.status, resp.body))

    with ChildServer(TARGET, "crc") as child:
        with RawConnection(child.port) as conn:
            resp = conn.request(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
            )
            assert resp.status == 200
        base, base_hwm = child.rss(), child.hwm()
        with RssSampler(child.rss) as sampler:
            clients = [
                threading.Thread(target=upload, args=(child.port,)) for _ in range(20)
            ]
            for t in clients:
                t.start()
            for t in clients:
                t.join(300)
        assert answers == [(200, f"{size} {expected_crc}".encode())] * 20
        _assert_flat(child, sampler, base, base_hwm)


def test_1gb_streamed_response_flat_memory():
    """A 1 GiB response streamed by the app in 1 MiB items and read by the
    client as fast as it can: the server process's resident memory grows by
    less than 64 MiB, and every byte arrives (length and CRC-32)."""
    block = _pattern_block()
    total = GIB
    expected_crc = 0
    for _ in range(total // len(block)):
        expected_crc = zlib.crc32(block, expected_crc)
    with ChildServer(TARGET, "stream") as child:
        with RawConnection(child.port) as conn:
            assert conn.request(get("/?n=10")).status == 200
        base, base_hwm = child.rss(), child.hwm()
        buf = bytearray(4 * MIB)
        view = memoryview(buf)
        with RssSampler(child.rss) as sampler:
            sock = socket.create_connection((HOST, child.port), timeout=60)
            try:
                sock.sendall(b"GET /?n=%d HTTP/1.0\r\n\r\n" % total)
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(4096)
                    assert data, head
                    head += data
                head, _, first = head.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.0 200 "), head
                received = len(first)
                crc = zlib.crc32(first)
                while True:
                    n = sock.recv_into(view)
                    if not n:
                        break
                    received += n
                    crc = zlib.crc32(view[:n], crc)
            finally:
                sock.close()
        assert received == total
        assert crc == expected_crc
        _assert_flat(child, sampler, base, base_hwm)


# ------------------------------------------------------ outbuf_high_watermark


def test_high_watermark_pauses_a_fast_writer(serve_app):
    """An app writing faster than its client reads is paused once more than
    outbuf_high_watermark is queued (its write() blocks), and resumes when the
    client reads: nothing is lost."""
    block = b"w" * 65536
    blocks = 640  # 40 MiB
    progress = []  # bytes handed to write(), with a timestamp

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", str(len(block) * blocks))])
        sent = 0
        for _ in range(blocks):
            write(block)
            sent += len(block)
            progress.append((time.monotonic(), sent))
        return []

    watermark = 1 * MIB
    srv = serve_app(app, outbuf_high_watermark=watermark, outbuf_overflow=256 * 1024)
    sock = socket.create_connection((HOST, srv.port), timeout=20)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(get("/"))
        time.sleep(1.5)
        stalled_at = progress[-1][1] if progress else 0
        time.sleep(1.0)
        # paused: no progress for a second, well short of the whole body
        assert (progress[-1][1] if progress else 0) == stalled_at
        # what is queued is bounded by the watermark (+ socket buffers, + one write)
        assert stalled_at < watermark + 8 * MIB, stalled_at
        assert stalled_at < len(block) * blocks
        received = 0
        while received < len(block) * blocks:
            data = sock.recv(MIB)
            if not data:
                break
            received += len(data)
    finally:
        sock.close()
    head_len = len(b"HTTP/1.1 200 OK\r\n")  # at least
    assert received >= len(block) * blocks + head_len
    assert wait_for(lambda: progress and progress[-1][1] == len(block) * blocks)


@maitre_only("waitress counts its own sockets against connection_limit")
def test_slot_freed_mid_round_is_not_reused_by_the_waiting_client(serve_app):
    """Regression: with accepting paused at connection_limit, closing one connection
    used to accept the next client on the spot, in the middle of the loop's work on the
    old one, so the new client inherited the old one's parser state (a panic here).
    Now the waiting client is accepted at the end of the round and served cleanly."""
    srv = serve_app(hello_app, connection_limit=1)
    a = socket.create_connection((srv.host, srv.port), timeout=10)
    b = None
    try:
        a.sendall(b"GET / HTTP/1.1\r\n")  # a partial head, held by the server
        time.sleep(0.2)
        b = socket.create_connection((srv.host, srv.port), timeout=10)  # waits
        b.sendall(b"GET /hello HTT")
        time.sleep(0.3)
        a.sendall(b"Bad\x00Header: x\r\n\r\n")  # 400, and the server closes a
        a.shutdown(socket.SHUT_WR)
        # (maitre answers in the request's version, waitress in HTTP/1.0)
        assert re.match(rb"HTTP/1\.[01] 400 ", a.recv(4096))
        time.sleep(0.3)
        b.sendall(b"P/1.1\r\n")
        time.sleep(0.3)
        b.sendall(b"Host: x\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = b.recv(4096)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply
    finally:
        a.close()
        if b is not None:
            b.close()
