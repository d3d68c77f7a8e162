"""HTTP/2 (``http2``): negotiation beside HTTP/1.1 (prior knowledge on cleartext, ALPN
on TLS), the WSGI mapping of a stream, bodies both ways, streams in parallel on the
thread pool, conformance to RFC 9113 (frames built by hand where the ``h2`` package
refuses to send bad input), flow control, the known floods (rapid reset, CONTINUATION,
HPACK bomb, SETTINGS, PING, empty DATA, a stalled preface), graceful stop, and real
clients (curl, nghttp, h2load).

The clients are in ``tests/h2client.py``: :class:`h2client.H2Client` (the ``h2``
package, client side) and :class:`h2client.RawH2` (frames with ``struct``). The app is
``h2client.app``, one behaviour per path, served in process (``serve_app``) or by
``python -m maitre`` in a subprocess when the server process itself is measured.

waitress has no HTTP/2: the whole module is maitre-only.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    HOST,
    IDENT,
    Cluster,
    RawConnection,
    RssSampler,
    ServerProcess,
    free_port,
    get,
    maitre_only,
    wait_for,
)

pytest.importorskip("h2")
pytest.importorskip("trustme")

import h2client  # noqa: E402
from h2client import (  # noqa: E402
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    NO_ERROR,
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RST_STREAM,
    H2Client,
    RawH2,
    client_tls_context,
    connect,
    error_name,
    frame,
    hpack_int,
    literal,
    parse_frames,
    pattern,
    ping_frame,
    request_fields,
    rss_kib,
    rst_stream,
    settings_frame,
    window_update,
)

pytestmark = [maitre_only("waitress has no HTTP/2"), pytest.mark.timeout(120)]

MiB = 1 << 20
TESTS = Path(__file__).resolve().parent
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
}


# -- fixtures and helpers ---------------------------------------------------------


@pytest.fixture
def h2served(serve_app):
    """Factory: ``h2served(**settings)`` serves ``h2client.app`` in process with
    ``http2=True`` (and the settings) and returns the Served."""

    def start(**settings):
        settings.setdefault("http2", True)
        return serve_app(h2client.app, **settings)

    return start


@pytest.fixture
def gate():
    """``h2client.GATE`` cleared for the test and set at its end, so no app thread
    stays waiting on it."""
    h2client.GATE.clear()
    yield h2client.GATE
    h2client.GATE.set()


@pytest.fixture
def h2proc():
    """Factory: ``h2proc(*flags)`` runs ``python -m maitre --http2 --threads=4 *flags
    h2client:app`` (one process: its pid is the server's) and waits until it serves;
    stopped (TERM, then KILL) at teardown."""
    started = []

    def start(*flags):
        c = Cluster(TESTS, "--http2", "--threads=4", *flags, app="h2client:app")
        started.append(c)
        c.wait_log("Serving on")
        with H2Client(c.port) as warm:  # the thread pool and buffers exist now
            assert warm.get("/").status == 200
        return c

    yield start
    for c in started:
        c.stop()


def tool(name: str) -> str:
    """Path of a command-line client; the test is skipped when it is missing here
    (CI installs it: .ci/run)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed here (.ci/run installs it in CI)")
    return path


def read_http1(sock) -> tuple[str, dict, bytes]:
    """One HTTP/1.x response with a Content-Length from ``sock``: status line,
    headers (lowercase names), body."""
    f = sock.makefile("rb")
    status = f.readline().decode("latin-1").rstrip("\r\n")
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body


def expect_connection_error(conn: RawH2, code: int, timeout: float = 5.0):
    """The server ends the connection with a GOAWAY carrying ``code`` (RFC 9113
    §5.4.1: a connection error is announced before the close)."""
    how, got, _ = conn.ending(timeout)
    assert how == "goaway", (
        f"expected GOAWAY {error_name(code)}, the connection was {how}; "
        f"frames: {conn.frames[-10:]}"
    )
    assert got == code, f"GOAWAY {error_name(got)}, expected {error_name(code)}"


def expect_stream_error(conn: RawH2, stream_id: int, code: int = PROTOCOL_ERROR):
    """RST_STREAM ``code`` on ``stream_id``, not a response and not a GOAWAY."""
    out = conn.stream_outcome(stream_id, timeout=5)
    assert out["goaway"] is None and not out["closed"], (
        f"a stream error was expected, the connection ended: GOAWAY "
        f"{error_name(out['goaway'])}, closed={out['closed']}"
    )
    assert out["status"] is None, f"got a {out['status']} response instead of a reset"
    assert out["reset"] == code, (
        f"RST_STREAM {error_name(out['reset'])}, expected {error_name(code)}"
    )


def hello_on(conn: RawH2, stream_id: int):
    """A request on the raw connection gets the app's hello: the connection goes on."""
    conn.request(stream_id, "/")
    out = conn.stream_outcome(stream_id, timeout=5)
    assert (out["status"], bytes(out["data"])) == (200, b"Hello, world!\n"), out


def encoded_fields_of_size(conn: RawH2, fields, size: int) -> bytes:
    """``fields`` HPACK-encoded (with ``conn``'s encoder) plus an ``x-pad`` literal,
    exactly ``size`` bytes."""
    head = conn.encode(fields)
    value_len = size - len(head) - 7
    while True:
        pad = literal(b"x-pad", b"p" * value_len)
        if len(head) + len(pad) == size:
            return head + pad
        value_len -= len(head) + len(pad) - size


# -- negotiation ------------------------------------------------------------------


def test_prior_knowledge_and_http11_share_the_cleartext_port(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        st = c.get("/environ")
    assert st.status == 200, st
    assert json.loads(st.body)["SERVER_PROTOCOL"] == "HTTP/2.0"
    resp = served.request(get("/"))
    assert (resp.version, resp.status, resp.body) == (
        "HTTP/1.1",
        200,
        b"Hello, world!\n",
    )


def test_server_settings_and_ack_of_the_clients(h2served):
    """The server's SETTINGS (read with the h2 package) advertise 100 concurrent
    streams, and it acknowledges the client's SETTINGS."""
    served = h2served()
    with H2Client(served.port, settings={INITIAL_WINDOW_SIZE: 100_000}) as c:
        remote = c.handshake()
        c.wait(lambda: c.settings_acked >= 1, what="the ACK of our SETTINGS")
    assert remote[MAX_CONCURRENT_STREAMS] == 100, remote


def test_tls_alpn_prefers_h2_and_still_speaks_http11(h2served, pki):
    served = h2served(**pki.settings())
    # the server's preference decides: h2 even when the client lists it second
    for offer in (["h2", "http/1.1"], ["http/1.1", "h2"]):
        with H2Client(served.port, tls=client_tls_context(pki.ca_file, offer)) as c:
            assert c.sock.selected_alpn_protocol() == "h2", offer
            st = c.get("/environ", scheme="https")
        env = json.loads(st.body)
        assert (env["SERVER_PROTOCOL"], env["wsgi.url_scheme"]) == ("HTTP/2.0", "https")
    # a client offering only http/1.1, or no ALPN at all, speaks HTTP/1.1
    for offer in (["http/1.1"], None):
        ctx = ssl.create_default_context(cafile=pki.ca_file)
        if offer:
            ctx.set_alpn_protocols(offer)
        with connect(served.port, tls=ctx) as s:
            assert s.selected_alpn_protocol() in (offer[0] if offer else None, None)
            s.sendall(b"GET /environ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body = read_http1(s)
        assert status == "HTTP/1.1 200 OK", status
        assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_http2_is_off_by_default_and_the_preface_gets_400_or_a_close(serve_app):
    served = serve_app(h2client.app)
    with RawConnection(served.port) as conn:
        conn.send(PREFACE + settings_frame())
        data = conn.read_until_close()
    assert data == b"" or re.match(rb"HTTP/1\.[01] 400 ", data), data[:200]


def test_http2_off_tls_does_not_offer_h2(serve_app, pki):
    served = serve_app(h2client.app, **pki.settings())
    with connect(served.port, tls=client_tls_context(pki.ca_file)) as s:
        assert s.selected_alpn_protocol() in ("http/1.1", None)
    try:  # only h2 offered: a no_application_protocol alert, or no ALPN at all
        with connect(served.port, tls=client_tls_context(pki.ca_file, ["h2"])) as s:
            assert s.selected_alpn_protocol() is None
    except ssl.SSLError as exc:
        assert "NO APPLICATION PROTOCOL" in str(exc).upper().replace("_", " "), exc


def test_cli_flag_http2():
    from maitre.adjustments import Adjustments

    for argv, expected in ((["--http2", "app:app"], True), (["app:app"], False)):
        kw, _ = Adjustments.parse_args(argv)
        adj = Adjustments(**{k: v for k, v in kw.items() if k not in ("help", "call")})
        assert adj.http2 is expected, argv


@pytest.mark.parametrize("flag", [True, False], ids=["--http2", "default"])
def test_maitre_serve_http2_flag(flag):
    """``maitre-serve --http2`` answers the preface on its cleartext port; without
    the flag the same bytes get no HTTP/2 frames."""
    script = Path(sys.executable).with_name("maitre-serve")
    if not script.exists():
        pytest.skip(f"no console script at {script}")
    port = free_port()
    argv = [str(script), f"--listen={HOST}:{port}", "h2client:app"]
    if flag:
        argv.insert(1, "--http2")
    proc = ServerProcess(argv, cwd=TESTS, timeout=20)
    try:
        proc.wait_for_line("Serving on")
        if flag:
            with H2Client(port) as c:
                env = json.loads(c.get("/environ").body)
            assert env["SERVER_PROTOCOL"] == "HTTP/2.0"
        else:
            with RawConnection(port) as conn:
                conn.send(PREFACE + settings_frame())
                data = conn.read_until_close()
            assert data == b"" or re.match(rb"HTTP/1\.[01] 400 ", data), data[:100]
        with RawConnection(port) as conn:
            assert conn.request(get("/")).body == b"Hello, world!\n"
        assert proc.stop() == 0
    finally:
        proc.kill()


# -- the WSGI mapping -------------------------------------------------------------


def test_environ_from_pseudo_headers_and_fields(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        st = c.get(
            "/environ/caf%C3%A9%20x?a=1&b=%20",
            authority=f"example.test:{served.port}",
            headers=[
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("x-custom", "v"),
                ("te", "trailers"),  # the one TE value allowed in HTTP/2
            ],
        )
    assert st.status == 200, st
    env = json.loads(st.body)
    assert env["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9 x"  # WSGI: bytes as latin-1
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["HTTP_HOST"] == f"example.test:{served.port}"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["wsgi.url_scheme"] == "http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SCRIPT_NAME"] == ""


def test_host_field_beside_authority_is_dropped_and_request_uri_is_the_path(h2served):
    """RFC 9113 §8.3.1: :authority wins over a host field; REQUEST_URI is :path as
    sent. (Raw frames: the h2 package refuses to send the two disagreeing.)"""
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        fields = request_fields("/environ/a%2Fb?q=%41", authority="a.test")
        conn.send(conn.headers(1, fields + [("host", "b.test")]))
        out = conn.stream_outcome(1, timeout=5)
    assert out["status"] == 200, out
    env = json.loads(bytes(out["data"]))
    assert env["HTTP_HOST"] == "a.test"
    assert env["REQUEST_URI"] == "/environ/a%2Fb?q=%41"
    assert env["QUERY_STRING"] == "q=%41"


def test_content_length_is_the_length_received_without_the_field(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        st = c.get("/environ", method="POST", body=b"12345")
    assert json.loads(st.body)["CONTENT_LENGTH"] == "5"


def test_environ_of_a_post_with_a_body(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        st = c.get(
            "/environ",
            method="POST",
            headers=[("content-type", "text/plain"), ("content-length", "3")],
            body=b"abc",
        )
    env = json.loads(st.body)
    assert (env["REQUEST_METHOD"], env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == (
        "POST",
        "text/plain",
        "3",
    )


def test_environ_over_tls_has_https_scheme(h2served, pki):
    served = h2served(**pki.settings())
    with H2Client(served.port, tls=client_tls_context(pki.ca_file)) as c:
        env = json.loads(c.get("/environ", scheme="https").body)
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SERVER_PROTOCOL"] == "HTTP/2.0"


def test_connection_specific_response_headers_are_dropped(h2served):
    """Proxy-Connection, which start_response lets through, is dropped (RFC 9113
    §8.2.2), and so is whatever the server itself would say about the connection
    on HTTP/1 (Connection, Keep-Alive, Transfer-Encoding)."""
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, "/hop")
        out = conn.stream_outcome(1)
        conn.request(3, "/stream?n=2&ms=0")  # no Content-Length: chunked on HTTP/1
        streamed = conn.stream_outcome(3)
    assert out["status"] == 200, out
    names = {k for k, _ in out["fields"]} | {k for k, _ in streamed["fields"]}
    assert not HOP_BY_HOP & names, (out["fields"], streamed["fields"])
    assert ("x-kept", "yes") in out["fields"]
    assert bytes(out["data"]) == b"hop"
    assert bytes(streamed["data"]) == b"chunk 0\nchunk 1\n"


@pytest.mark.parametrize(
    "name", ["Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"]
)
def test_hop_by_hop_header_from_the_app_gets_500_as_on_http11(h2served, name):
    """PEP 3333 forbids the app these headers: start_response refuses them, so the
    client gets the server's 500, as on HTTP/1.1, and that 500 carries no
    connection-specific field either (its HTTP/1 form says Connection: close)."""
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, f"/hop?h={name}")
        out = conn.stream_outcome(1)
        hello_on(conn, 3)
    assert out["status"] == 500, out
    assert not HOP_BY_HOP & {k for k, _ in out["fields"]}, out["fields"]
    assert served.request(get(f"/hop?h={name}")).status == 500


def test_response_header_names_are_lowercase_with_date_and_server(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, "/mixed")
        out = conn.stream_outcome(1)
    fields = out["fields"]
    assert all(k == k.lower() for k, _ in fields), fields
    assert fields[0] == (":status", "200"), fields  # pseudo-header first
    values = dict(fields)
    assert values["x-mixed-case"] == "Value-Kept"
    assert values["etag"] == '"1"'
    assert values["server"] == IDENT
    assert email.utils.parsedate_to_datetime(values["date"]).tzinfo is not None
    assert bytes(out["data"]) == b"mixed"


# -- bodies -----------------------------------------------------------------------


def test_20_mib_download_arrives_whole(h2served):
    served = h2served()
    size = 20 * MiB
    with H2Client(served.port, timeout=30) as c:
        st = c.get(f"/big?n={size}", timeout=60)
    assert (st.status, st.reset) == (200, None)
    assert len(st.body) == size
    assert hashlib.sha256(st.body).digest() == hashlib.sha256(pattern(size)).digest()


@pytest.mark.parametrize("with_length", [True, False], ids=["length", "no-length"])
def test_8_mib_upload_is_read_whole(h2served, with_length):
    served = h2served()
    body = os.urandom(8 * MiB)
    headers = [("content-length", str(len(body)))] if with_length else []
    with H2Client(served.port, timeout=30) as c:
        st = c.get("/upload", method="POST", headers=headers, body=body, timeout=60)
    assert st.status == 200, st
    assert st.body.decode() == f"{len(body)} {hashlib.sha256(body).hexdigest()}"


def test_bodies_both_ways_over_tls(h2served, pki):
    served = h2served(**pki.settings())
    size = 8 * MiB
    body = os.urandom(size)
    with H2Client(served.port, tls=client_tls_context(pki.ca_file), timeout=30) as c:
        down = c.get(f"/big?n={size}", scheme="https", timeout=60)
        up = c.get("/upload", method="POST", body=body, scheme="https", timeout=60)
    assert down.status == 200 and down.body == pattern(size)
    assert up.body.decode() == f"{size} {hashlib.sha256(body).hexdigest()}"


def test_streaming_response_is_sent_as_it_is_produced(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        sent = time.monotonic()
        st = c.get("/stream?n=5&ms=300")
    assert st.body == b"".join(b"chunk %d\n" % i for i in range(5))
    # the last chunk is produced 1.2 s after the first: the first came long before
    assert st.first_data_at - sent < 0.8, st.first_data_at - sent
    assert st.ended_at - st.first_data_at > 0.8, st.ended_at - st.first_data_at


def test_file_wrapper_of_a_real_file(h2served, tmp_path):
    served = h2served()
    data = os.urandom(3 * MiB + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    with H2Client(served.port) as c:
        st = c.get(f"/file?path={path}", timeout=30)
    assert st.status == 200, st
    assert st.body == data


def test_write_callable(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        st = c.get("/write")
    assert (st.status, st.body) == (200, b"written by write() and returned")


def test_app_error_after_start_response_resets_only_its_stream(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        broken = c.request("/raise-after")
        other = c.request("/sleep?ms=300")
        b = c.response(broken)
        o = c.response(other)
        assert b.reset is not None and not b.ended, (
            f"the broken stream should be reset, got status {b.status}, "
            f"{len(b.body)} bytes, ended={b.ended}"
        )
        assert (o.status, o.body) == (200, b"/sleep?ms=300")
        after = c.get("/")
        assert (after.status, after.body) == (200, b"Hello, world!\n")
        assert c.goaway is None


def test_app_error_before_start_response_gets_500(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        st = c.get("/raise-before")
        assert st.status == 500, st
        assert st.body.startswith(b"Internal Server Error"), st.body
        assert c.get("/").status == 200  # the connection goes on


# -- streams in parallel ----------------------------------------------------------


def test_four_streams_on_one_connection_run_in_parallel(h2served):
    """Four 0.5 s requests on one connection with four threads: together in well
    under the 2 s they would take one after the other."""
    served = h2served(threads=4)
    with H2Client(served.port) as c:
        c.handshake()
        start = time.monotonic()
        ids = [c.request(f"/sleep?ms=500&i={i}") for i in range(4)]
        streams = [c.response(sid) for sid in ids]
        elapsed = time.monotonic() - start
    assert [s.body for s in streams] == [b"/sleep?ms=500&i=%d" % i for i in range(4)]
    assert elapsed < 1.5, f"4 x 0.5 s took {elapsed:.2f} s: not in parallel"


def test_max_concurrent_streams_is_100_and_the_101st_is_refused(h2served, gate):
    served = h2served(threads=4)
    with RawH2(served.port) as conn:
        settings = conn.handshake()
        assert settings.get(MAX_CONCURRENT_STREAMS) == 100, settings
        # 100 streams held open by the app (waiting on the gate), then one more
        burst = b"".join(
            conn.headers(2 * i + 1, request_fields("/gate")) for i in range(100)
        )
        conn.send(burst + conn.headers(201, request_fields("/")))
        f = conn.read_until(
            lambda f: f.type in (RST_STREAM, GOAWAY) or f.stream_id == 201,
            what="the refusal of stream 201",
        )
        assert (f.type, f.stream_id, f.error_code) == (
            RST_STREAM,
            201,
            REFUSED_STREAM,
        ), f
        gate.set()
        done = set()
        while len(done) < 100:
            f = conn.read_until(lambda f: f.type in (DATA, RST_STREAM, GOAWAY))
            assert f.type == DATA, f"a held stream was ended: {f}"
            if f.flags & END_STREAM:
                done.add(f.stream_id)
        assert done == {2 * i + 1 for i in range(100)}


# -- the server's own answers on a stream -----------------------------------------


def shed_total(served, reason: str) -> float:
    """maitre_requests_shed_total{reason=...} from the metrics listener."""
    from prometheus_client.parser import text_string_to_metric_families

    host, port = served.server.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=3) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "maitre_requests_shed_total" and sample.labels == {
                "reason": reason
            }:
                return sample.value
    raise AssertionError(f"no maitre_requests_shed_total{{reason={reason!r}}}")


def ended_streams(conn, want: set) -> dict:
    """Reads until every stream of ``want`` has ended; its status (or ``reset``)."""
    got: dict = {}
    while set(got) != want:
        f = conn.read_until(lambda f: f.type in (HEADERS, DATA, RST_STREAM, GOAWAY))
        assert f.type != GOAWAY, f
        if f.type == RST_STREAM:
            got[f.stream_id] = "reset"
        elif f.type == HEADERS and f.fields is not None:
            got.setdefault(f.stream_id, int(dict(f.fields)[":status"]))
        if f.flags & END_STREAM and f.stream_id in want:
            got.setdefault(f.stream_id, None)
    return got


def test_request_timeout_answers_504_on_the_stream_and_the_connection_goes_on(
    h2served,
):
    served = h2served(request_timeout=1)
    with RawH2(served.port) as conn:
        conn.handshake()
        start = time.monotonic()
        conn.request(1, "/sleep?ms=3000")
        out = conn.stream_outcome(1, timeout=5)
        assert out["status"] == 504, out
        assert b"request_timeout" in bytes(out["data"])
        assert time.monotonic() - start < 2.5
        assert out["goaway"] is None and not out["closed"], out
        conn.request(3, "/")
        assert conn.stream_outcome(3, timeout=5)["status"] == 200
    assert served.server.stats()["HTTP/2 Connections"] == 1


def test_a_full_queue_answers_503_on_the_stream(h2served, gate):
    """One thread held, one request waiting (max_queued_requests=1): the next stream
    gets the engine's 503 with Retry-After, and the two others their 200s."""
    served = h2served(threads=1, max_queued_requests=1, metrics_listen=f"{HOST}:0")
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, "/gate")
        assert wait_for(lambda: served.server.stats()["Threads Idle"] == 0, 5)
        conn.request(3, "/gate")
        assert wait_for(lambda: served.server.stats()["Queue"] == 1, 5)
        conn.request(5, "/")
        out = conn.stream_outcome(5, timeout=5)
        assert out["status"] == 503, out
        assert dict(out["fields"]).get("retry-after") == "1", out["fields"]
        gate.set()
        assert ended_streams(conn, {1, 3}) == {1: 200, 3: 200}
    assert shed_total(served, "queue_full") == 1


def test_a_stream_reset_while_its_request_waits_is_not_run(h2served, gate):
    """Its client reset it: the request is taken back from the queue, never run, and
    counted as a departed client's; the connection and its other stream go on."""
    served = h2served(threads=1, metrics_listen=f"{HOST}:0")
    h2client.RECORDED.clear()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, "/gate")
        assert wait_for(lambda: served.server.stats()["Threads Idle"] == 0, 5)
        conn.request(3, "/record")
        assert wait_for(lambda: served.server.stats()["Queue"] == 1, 5)
        conn.send(rst_stream(3, CANCEL))
        assert wait_for(lambda: served.server.stats()["Queue"] == 0, 5)
        gate.set()
        assert ended_streams(conn, {1}) == {1: 200}
        conn.request(5, "/")
        assert conn.stream_outcome(5, timeout=5)["status"] == 200
    assert h2client.RECORDED == [], "the reset stream's request ran"
    assert shed_total(served, "client_gone") == 1


# -- conformance (RFC 9113) -------------------------------------------------------


def test_bad_preface_over_tls_h2_ends_the_connection(h2served, pki):
    served = h2served(**pki.settings())
    with RawH2(
        served.port, preface=False, tls=client_tls_context(pki.ca_file, ["h2"])
    ) as conn:
        assert conn.sock.selected_alpn_protocol() == "h2"
        conn.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame())
        how, code, _ = conn.ending(5)
    assert how in ("goaway", "closed"), "the connection stayed open after a bad preface"
    if how == "goaway":
        assert code == PROTOCOL_ERROR, error_name(code)


def test_bad_preface_on_cleartext_ends_the_connection(h2served):
    """Not the preface: not HTTP/2 either. An HTTP/1 400 (it is read as HTTP/1
    there), a GOAWAY PROTOCOL_ERROR or a bare close; the connection ends."""
    served = h2served()
    with RawConnection(served.port) as conn:
        conn.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame())
        data = conn.read_until_close()
    if data and not re.match(rb"HTTP/1\.[01] 400 ", data):
        # frames: the server's SETTINGS may come first, then a GOAWAY (or a close)
        frames = parse_frames(data)
        assert frames, data[:200]
        codes = [f.error_code for f in frames if f.type == GOAWAY]
        assert codes in ([], [PROTOCOL_ERROR]), [error_name(c) for c in codes]
        assert not [f for f in frames if f.type in (HEADERS, DATA)], frames


def test_first_frame_other_than_settings_is_a_protocol_error(h2served):
    served = h2served()
    with RawH2(served.port, preface=False) as conn:
        conn.send(PREFACE + ping_frame())
        how, code, _ = conn.ending(5)
    assert how in ("goaway", "closed"), "a preface without SETTINGS was accepted"
    if how == "goaway":
        assert code == PROTOCOL_ERROR, error_name(code)


def test_frame_larger_than_max_frame_size_is_frame_size_error(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        limit = conn.handshake().get(MAX_FRAME_SIZE, 16384)
        block = encoded_fields_of_size(conn, request_fields("/"), limit + 1)
        conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
        expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_data_on_stream_zero_is_a_protocol_error(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.send(frame(DATA, 0, 0, b"x"))
        expect_connection_error(conn, PROTOCOL_ERROR)


def test_data_on_an_idle_stream_is_a_protocol_error(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.send(frame(DATA, END_STREAM, 1, b"x"))
        expect_connection_error(conn, PROTOCOL_ERROR)


MALFORMED = {
    "uppercase-name": request_fields("/") + [("X-Upper", "v")],
    "no-path": [(":method", "GET"), (":scheme", "http"), (":authority", "localhost")],
    "empty-path": request_fields(""),
    "no-method": [(":path", "/"), (":scheme", "http"), (":authority", "localhost")],
    "no-scheme": [(":method", "GET"), (":path", "/"), (":authority", "localhost")],
    "pseudo-after-regular": [
        (":method", "GET"),
        (":scheme", "http"),
        ("x-a", "1"),
        (":path", "/"),
    ],
    "unknown-pseudo": request_fields("/") + [(":foo", "bar")],
    "twice-path": request_fields("/") + [(":path", "/again")],
    "connection": request_fields("/") + [("connection", "keep-alive")],
    "keep-alive": request_fields("/") + [("keep-alive", "300")],
    "proxy-connection": request_fields("/") + [("proxy-connection", "keep-alive")],
    "transfer-encoding": request_fields("/") + [("transfer-encoding", "chunked")],
    "upgrade": request_fields("/") + [("upgrade", "h2c")],
    "te-gzip": request_fields("/") + [("te", "gzip")],
}


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_a_stream_error_and_the_connection_goes_on(
    h2served, fields
):
    """RFC 9113 §8.1.1: a malformed request is a stream error PROTOCOL_ERROR; the
    connection (and its HPACK context) goes on, so the next request is answered."""
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, fields))
        expect_stream_error(conn, 1, PROTOCOL_ERROR)
        hello_on(conn, 3)


@pytest.mark.parametrize(
    "declared, sent", [(10, 5), (5, 10), (0, 3)], ids=["short", "long", "zero"]
)
def test_content_length_disagreeing_with_data(h2served, declared, sent):
    """A reset (PROTOCOL_ERROR) or a 400, never a 200; and the app never sees a
    body of another length than the declared one."""
    served = h2served()
    h2client.RECORDED.clear()
    with RawH2(served.port) as conn:
        conn.handshake()
        fields = request_fields("/record", "POST") + [("content-length", str(declared))]
        conn.send(conn.headers(1, fields, end_stream=False))
        conn.send(frame(DATA, END_STREAM, 1, b"b" * sent))
        out = conn.stream_outcome(1, timeout=5)
        assert out["goaway"] is None, f"GOAWAY {error_name(out['goaway'])}"
        assert out["reset"] == PROTOCOL_ERROR or out["status"] == 400, out
    time.sleep(0.3)  # an app call still reading would record now
    for want, got, error in h2client.RECORDED:
        assert got is None or got == int(want), (want, got, error)


def test_body_past_max_request_body_size_gets_413_on_its_stream(h2served):
    served = h2served(max_request_body_size=1000)
    with H2Client(served.port) as c:
        for headers in ([("content-length", "5000")], []):
            st = c.get("/upload", method="POST", headers=headers, body=b"u" * 5000)
            assert st.status == 413, (headers, st)
        ok = c.get("/upload", method="POST", body=b"u" * 1000)
        assert ok.body.decode() == f"1000 {hashlib.sha256(b'u' * 1000).hexdigest()}"


def test_too_many_header_fields_get_431_on_its_stream(h2served):
    served = h2served(max_request_headers=5)
    with H2Client(served.port) as c:
        many = [(f"x-h{i}", "v") for i in range(10)]
        assert c.get("/", headers=many).status == 431
        assert c.get("/").status == 200


def test_decoded_fields_past_max_request_header_size_get_431(h2served):
    """A small block can name a big field of the dynamic table twice: the decoded
    fields pass max_request_header_size though the block does not. As on HTTP/1.1
    (and as docs/http2.md says): 431 on that stream, the connection goes on."""
    served = h2served(max_request_header_size=4000)
    with RawH2(served.port) as conn:
        conn.handshake()
        plain = b"".join(literal(k.encode(), v.encode()) for k, v in request_fields())
        big = literal(b"x-big", b"b" * 2500, indexing=True)  # enters the table
        conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, plain + big))
        first = conn.stream_outcome(1, timeout=5)
        assert first["status"] == 200, first
        twice = hpack_int(62, 7, 0x80) * 2  # the x-big field, twice
        conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, plain + twice))
        out = conn.stream_outcome(3, timeout=5)
        assert out["goaway"] is None and not out["closed"], (
            f"the connection ended (GOAWAY {error_name(out['goaway'])}) instead of "
            f"a 431 on the stream"
        )
        assert out["status"] == 431, out
        hello_on(conn, 5)


def test_connect_gets_501(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        fields = [(":method", "CONNECT"), (":authority", "example.test:443")]
        conn.send(conn.headers(1, fields))
        out = conn.stream_outcome(1, timeout=5)
        assert out["status"] == 501, out
        hello_on(conn, 3)


def test_window_update_overflowing_the_connection_window(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.send(window_update(0, 2**31 - 1))
        expect_connection_error(conn, FLOW_CONTROL_ERROR)


def test_window_update_overflowing_a_stream_window(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, "/sleep?ms=1000")
        conn.send(window_update(1, 2**31 - 1))
        out = conn.stream_outcome(1, timeout=5)
    assert out["reset"] == FLOW_CONTROL_ERROR or out["goaway"] == FLOW_CONTROL_ERROR, (
        f"reset {error_name(out['reset'])}, GOAWAY {error_name(out['goaway'])}"
    )


def test_window_update_of_zero_is_a_protocol_error(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.send(window_update(0, 0))
        expect_connection_error(conn, PROTOCOL_ERROR)


def test_ping_is_answered_with_ack_and_the_same_payload(h2served):
    served = h2served()
    payload = bytes(range(1, 9))
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.send(ping_frame(payload))
        f = conn.read_until(lambda f: f.type == PING, what="the PING ACK")
    assert (f.flags & ACK, f.stream_id, f.payload) == (ACK, 0, payload)


def test_ping_with_the_h2_package(h2served):
    served = h2served()
    with H2Client(served.port) as c:
        c.ping(b"maitre!!")
        c.wait(lambda: c.ping_acks, what="the PING ACK")
    assert c.ping_acks == [b"maitre!!"]


def test_rst_stream_from_the_client_cancels_only_that_stream(h2served):
    served = h2served()
    with RawH2(served.port) as conn:
        conn.handshake()
        conn.request(1, "/sleep?ms=300")
        conn.send(rst_stream(1, CANCEL))
        hello_on(conn, 3)
        how, _, _ = conn.ending(0.8)
    assert how == "open", "the connection ended after a client RST_STREAM"


# -- flow control -----------------------------------------------------------------


def stalled_download(port, size, path="big"):
    """A raw client with a 1024-byte initial window that has asked for ``size``
    bytes; returns (connection, DATA bytes received within 1 s)."""
    conn = RawH2(port, settings=[(INITIAL_WINDOW_SIZE, 1024)])
    conn.handshake()
    conn.request(1, f"/{path}?n={size}")
    got = bytearray()
    deadline = time.monotonic() + 1.0
    while True:
        try:
            f = conn.read_frame(max(deadline - time.monotonic(), 0.001))
        except socket.timeout:
            break
        assert f is not None, "closed while stalled"
        if f.type == DATA and f.stream_id == 1:
            got += f.payload
        assert f.type not in (RST_STREAM, GOAWAY), f
    return conn, got


def finish_download(conn, got, size):
    conn.send(window_update(1, 2 * size) + window_update(0, 2 * size))
    out = conn.stream_outcome(1, timeout=10)
    assert out["reset"] is None and out["goaway"] is None, out
    body = bytes(got + out["data"])
    assert len(body) == size
    assert body == pattern(size)


def test_tiny_initial_window_holds_data_until_window_update(h2served):
    served = h2served()
    size = 100_000
    conn, got = stalled_download(served.port, size)
    with conn:
        assert len(got) <= 1024, f"{len(got)} bytes past a 1024-byte window"
        # meanwhile, another connection is answered at once
        start = time.monotonic()
        with H2Client(served.port) as c:
            assert c.get("/").status == 200
        assert time.monotonic() - start < 1.0
        finish_download(conn, got, size)


@pytest.mark.parametrize(
    "path, size", [("one", 256 * 1024), ("big", 3 * MiB)], ids=["one-item", "generator"]
)
def test_stalled_stream_holds_no_thread(h2served, path, size):
    """One thread: while a stream waits at a zero window, requests on other
    connections (HTTP/2 and HTTP/1.1) are answered: the response waits queued, not
    in the thread (one 256 KiB item, or a generator of three 1 MiB items)."""
    served = h2served(threads=1)
    conn, got = stalled_download(served.port, size, path)
    with conn:
        assert len(got) <= 1024
        start = time.monotonic()
        with H2Client(served.port) as c:
            assert c.get("/", timeout=5).status == 200
        assert served.request(get("/")).status == 200
        elapsed = time.monotonic() - start
        assert elapsed < 1.0, f"other requests took {elapsed:.2f} s: thread held"
        finish_download(conn, got, size)


# -- floods -----------------------------------------------------------------------


class GoodClient:
    """A well-behaved client in a thread: a new HTTP/2 connection and one GET every
    0.2 s while a flood runs; latencies and errors recorded."""

    def __init__(self, port):
        self.port = port
        self.latencies: list = []
        self.errors: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                with H2Client(self.port, timeout=5) as c:
                    st = c.get("/", timeout=5)
                assert st.status == 200, st
                self.latencies.append(time.monotonic() - start)
            except Exception as exc:  # recorded, asserted by check()
                self.errors.append(repr(exc))
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def check(self):
        assert not self.errors, (
            f"the good client failed during the flood: {self.errors}"
        )
        assert len(self.latencies) >= 2, self.latencies
        worst = max(self.latencies)
        assert worst < 1.0, f"a good request took {worst:.2f} s during the flood"


def flooded(srv, flood):
    """Runs ``flood()`` (returns its outcome) with a good client beside it and the
    server's RSS sampled; checks the good client, memory, and that the server is
    still up. Returns the flood's outcome."""
    with RssSampler(lambda: rss_kib(srv.pid)) as rss, GoodClient(srv.port) as good:
        time.sleep(0.3)
        outcome = flood()
        time.sleep(0.3)
    good.check()
    growth_mib = (rss.peak - rss.base) / 1024
    assert growth_mib < 50, f"RSS grew by {growth_mib:.1f} MiB"
    assert srv.proc.proc.poll() is None, "the server died"
    with H2Client(srv.port) as c:
        assert c.get("/").status == 200
    return outcome


def assert_calmed(outcome, what):
    how, code, detail = outcome
    assert how == "closed" or (how == "goaway" and code == ENHANCE_YOUR_CALM), (
        f"{what}: the flooding connection was not ended with GOAWAY "
        f"ENHANCE_YOUR_CALM or a close: {how} {error_name(code)} ({detail})"
    )


def flood_loop(conn, make_batch, total, seconds=10.0, read=True, outbuf=1 << 18):
    """Queues ``make_batch(i)`` (i = batch number) until ``total`` frames or
    ``seconds`` pass or the connection ends; reads the server's frames between
    batches when ``read``. Then reads the rest (5 s at most): (how, code, detail)."""
    deadline = time.monotonic() + seconds
    frames = 0
    i = 0
    while frames < total and time.monotonic() < deadline:
        if len(conn.outbuf) < outbuf:
            batch, count = make_batch(i)
            conn.queue(batch)
            frames += count
            i += 1
        if not conn.pump_out(0.01):
            break
        if read and conn.poll_end() is not None:
            break
    while conn.outbuf and time.monotonic() < deadline and conn.pump_out(0.05):
        if read and conn.poll_end() is not None:
            break
    detail = f"{frames} frames queued, {conn.sent} bytes sent"
    end = conn.poll_end()
    if end is None:
        end = conn.ending(5)[:2]
    return (*end, detail)


def test_rapid_reset_flood(h2proc):
    srv = h2proc()

    def flood():
        with RawH2(srv.port) as conn:
            conn.handshake()
            first = conn.encode(request_fields("/"))  # :authority enters the table
            block = conn.encode(request_fields("/"))  # from now on: indexed only

            def batch(i):
                out = bytearray()
                for sid in range(200 * i + 1, 200 * i + 200, 2):
                    out += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
                    out += rst_stream(sid, CANCEL)
                return bytes(out), 200

            conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, first))
            return flood_loop(conn, lambda i: batch(i + 1), total=40_000)

    assert_calmed(flooded(srv, flood), "rapid reset")


def test_continuation_flood_stops_at_max_request_header_size(h2proc):
    """HEADERS without END_HEADERS, then CONTINUATION frames without end: the
    server ends the connection once the block passes max_request_header_size,
    not after we could send much more than that."""
    cap = 65536
    srv = h2proc(f"--max-request-header-size={cap}")

    def flood():
        with RawH2(srv.port, sndbuf=16384) as conn:
            conn.handshake()
            # whole literal fields in each frame, so the block stays valid HPACK
            field = literal(b"x-flood", b"f" * 100)
            piece = field * (16384 // len(field))
            conn.send(frame(HEADERS, END_STREAM, 1, conn.encode(request_fields("/"))))
            block = 0
            deadline = time.monotonic() + 10
            end = None
            while time.monotonic() < deadline and block < 64 * MiB:
                if not conn.try_send(frame(CONTINUATION, 0, 1, piece)):
                    break
                block += len(piece)
                # past the cap, give the server time to act before sending more
                end = conn.poll_end(0.05 if block > cap else 0.0)
                if end is not None:
                    break
            if end is None:
                end = conn.ending(5)[:2]
            return (*end, block)

    how, code, block = flooded(srv, flood)
    assert_calmed((how, code, f"{block} bytes of block sent"), "CONTINUATION flood")
    # the cap, plus what was in flight while the server read it
    assert block <= cap + 16 * 16384, (
        f"{block} bytes of field block were taken before the connection ended "
        f"(cap {cap})"
    )


def test_hpack_bomb(h2proc):
    """One small field block that enters a 4 KiB field in the dynamic table and
    then names it 20,000 times (80 MB decoded): the server stops decoding at its
    limit. RFC 9113 §10.5.1 lets it answer 431, reset the stream, or end the
    connection (COMPRESSION_ERROR or ENHANCE_YOUR_CALM); never the app's 200."""
    srv = h2proc("--max-request-header-size=65536")

    def flood():
        with RawH2(srv.port) as conn:
            table = conn.handshake().get(0x1, 4096)  # SETTINGS_HEADER_TABLE_SIZE
            value = b"a" * (min(table, 4096) - 32 - len(b"x-bomb"))
            block = b"".join(
                literal(k.encode(), v.encode()) for k, v in request_fields("/")
            )
            block += literal(b"x-bomb", value, indexing=True)
            block += hpack_int(62, 7, 0x80) * 20_000
            limit = conn.server_settings.get(MAX_FRAME_SIZE, 16384)
            pieces = [block[i : i + limit] for i in range(0, len(block), limit)]
            out = frame(
                HEADERS,
                END_STREAM | (END_HEADERS if len(pieces) == 1 else 0),
                1,
                pieces[0],
            )
            for n, piece in enumerate(pieces[1:], 2):
                out += frame(
                    CONTINUATION, END_HEADERS if n == len(pieces) else 0, 1, piece
                )
            conn.send(out)
            return conn.stream_outcome(1, timeout=5)

    out = flooded(srv, flood)
    assert out["status"] != 200, "the bomb reached the app"
    assert (
        out["status"] == 431
        or out["reset"] is not None
        or out["goaway"] in (ENHANCE_YOUR_CALM, COMPRESSION_ERROR)
        or (out["closed"] and out["goaway"] is None)
    ), out


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_settings_and_ping_floods_without_reading(h2proc, kind):
    """Thousands of frames that each call for an answer, none of the answers read."""
    srv = h2proc()

    def flood():
        with RawH2(srv.port) as conn:
            conn.handshake()
            one = settings_frame() if kind == "settings" else ping_frame(b"floodfld")
            return flood_loop(conn, lambda i: (one * 1000, 1000), 200_000, read=False)

    assert_calmed(flooded(srv, flood), f"{kind} flood")


def test_empty_data_frame_flood(h2proc):
    srv = h2proc()

    def flood():
        with RawH2(srv.port) as conn:
            conn.handshake()
            fields = request_fields("/upload", "POST")
            conn.send(conn.headers(1, fields, end_stream=False))
            empty = frame(DATA, 0, 1, b"")
            return flood_loop(conn, lambda i: (empty * 1000, 1000), 200_000)

    assert_calmed(flooded(srv, flood), "empty DATA flood")


def test_stalled_prefaces_are_closed_after_channel_timeout(h2proc):
    """Fifty connections that send half the preface and then nothing: each is
    closed once channel_timeout (2 s) has passed; others are served meanwhile."""
    srv = h2proc("--channel-timeout=2")

    def flood():
        conns = []
        try:
            for _ in range(50):
                c = RawH2(srv.port, preface=False)
                c.send(PREFACE[:12])
                conns.append(c)
            start = time.monotonic()
            for c in conns:
                how, _, _ = c.ending(max(start + 6 - time.monotonic(), 0.01))
                assert how == "closed", f"a stalled preface was {how} after 6 s"
            return time.monotonic() - start
        finally:
            for c in conns:
                c.close()

    elapsed = flooded(srv, flood)
    assert elapsed < 6


# -- graceful stop ----------------------------------------------------------------


def test_sigterm_sends_goaway_and_finishes_the_stream_in_flight(h2proc):
    """Raw frames: the h2 package stops reading frames once it has a GOAWAY, but
    streams up to the GOAWAY's last stream id go on (RFC 9113 §6.8)."""
    srv = h2proc()
    with RawH2(srv.port) as conn:
        conn.handshake()
        conn.request(1, "/sleep?ms=1000")
        time.sleep(0.3)  # the app is sleeping now
        os.kill(srv.pid, signal.SIGTERM)
        out = conn.stream_outcome(1, timeout=10)
        goaways = [f for f in conn.frames if f.type == GOAWAY]
        if not goaways:
            conn.ending(5)
            goaways = [f for f in conn.frames if f.type == GOAWAY]
    assert (out["status"], out["reset"], bytes(out["data"])) == (
        200,
        None,
        b"/sleep?ms=1000",
    ), out
    assert goaways, f"no GOAWAY before the connection closed: {conn.frames}"
    assert goaways[0].error_code == NO_ERROR, goaways
    assert goaways[-1].last_stream_id >= 1, goaways
    assert srv.wait_exit(15) == 0, srv.proc.stderr


def test_graceful_stop_tells_idle_connections_and_takes_no_new_stream(h2proc):
    """An idle HTTP/2 connection gets a GOAWAY too; a stream opened after it (past
    its last stream id) is not run."""
    srv = h2proc()
    with RawH2(srv.port) as idle, RawH2(srv.port) as busy:
        idle.handshake()
        busy.handshake()
        hello_on(idle, 1)
        busy.request(1, "/sleep?ms=1500")
        time.sleep(0.3)
        os.kill(srv.pid, signal.SIGTERM)
        goaway = idle.read_until(lambda f: f.type == GOAWAY, what="a GOAWAY")
        assert (goaway.error_code, goaway.last_stream_id) == (NO_ERROR, 1), goaway
        f = busy.read_until(lambda f: f.type == GOAWAY, what="a GOAWAY")
        assert f.last_stream_id == 1, f
        busy.request(3, "/")  # after the GOAWAY: not taken
        out = busy.stream_outcome(1, timeout=10)
        assert (out["status"], bytes(out["data"])) == (200, b"/sleep?ms=1500"), out
        late = busy.stream_outcome(3, timeout=5)
        assert late["status"] is None, f"a stream after the GOAWAY was run: {late}"
    assert srv.wait_exit(15) == 0, srv.proc.stderr


# -- real clients -----------------------------------------------------------------


def test_curl_prior_knowledge(h2served):
    served = h2served()
    out = subprocess.run(
        [
            tool("curl"),
            "--http2-prior-knowledge",
            "-sv",
            f"http://{HOST}:{served.port}/",
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert b"< HTTP/2 200" in out.stderr, out.stderr
    assert out.stdout == b"Hello, world!\n"


def test_curl_over_tls_with_alpn(h2served, pki, tmp_path):
    served = h2served(**pki.settings())
    upload = tmp_path / "up.bin"
    data = os.urandom(MiB + 3)
    upload.write_bytes(data)
    curl = [tool("curl"), "--http2", "-sS", "--cacert", pki.ca_file]
    url = f"https://localhost:{served.port}"
    out = subprocess.run(
        [*curl, "-v", f"{url}/environ"], capture_output=True, timeout=20
    )
    assert out.returncode == 0, out.stderr
    assert b"< HTTP/2 200" in out.stderr, out.stderr
    env = json.loads(out.stdout)
    assert (env["SERVER_PROTOCOL"], env["wsgi.url_scheme"]) == ("HTTP/2.0", "https")
    out = subprocess.run(
        [*curl, "--data-binary", f"@{upload}", f"{url}/upload"],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
    # curl asking for HTTP/1.1 only gets it
    out = subprocess.run(
        [
            tool("curl"),
            "--http1.1",
            "-sS",
            "--cacert",
            pki.ca_file,
            "-w",
            "%{http_version}",
            "-o",
            "/dev/null",
            f"{url}/",
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.stdout == b"1.1", out


def test_nghttp_sees_settings_and_a_200(h2served):
    served = h2served()
    out = subprocess.run(
        [tool("nghttp"), "-nv", f"http://{HOST}:{served.port}/"],
        capture_output=True,
        timeout=20,
    )
    text = out.stdout.decode("latin-1")
    assert out.returncode == 0, text + out.stderr.decode("latin-1")
    assert "recv SETTINGS frame" in text, text
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in text, text
    assert ":status: 200" in text, text


def test_h2load_many_streams_without_errors(h2served):
    served = h2served()
    out = subprocess.run(
        [
            tool("h2load"),
            "-n",
            "2000",
            "-c",
            "4",
            "-m",
            "20",
            f"http://{HOST}:{served.port}/",
        ],
        capture_output=True,
        timeout=60,
    )
    text = out.stdout.decode("latin-1")
    assert out.returncode == 0, text
    assert "2000 succeeded, 0 failed, 0 errored" in text, text
    assert "status codes: 2000 2xx" in text, text


# -- access log -------------------------------------------------------------------


def test_access_log_records_http2(h2served, access_records):
    served = h2served(access_log="logging", access_log_format="%(r)s %(s)s %(H)s")
    with H2Client(served.port) as c:
        assert c.get("/environ?x=1").status == 200
    assert wait_for(lambda: access_records, 5)
    assert access_records.messages() == ["GET /environ?x=1 HTTP/2.0 200 HTTP/2.0"]
