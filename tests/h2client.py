"""HTTP/2 clients for the tests, over real sockets to 127.0.0.1.

- :class:`H2Client`: a well-behaved client driven by the ``h2`` package (client side),
  with flow control acknowledged as data arrives; streams collected as :class:`Stream`.
- :class:`RawH2`: frames built by hand with ``struct`` (HPACK from the ``hpack``
  package, which comes with ``h2``), for what ``h2`` refuses to send: bad frames,
  floods, a client that reads nothing. Frames from the server are parsed as they come;
  the server's SETTINGS are acknowledged unless told otherwise.
- :func:`app`: the WSGI app the HTTP/2 tests serve, one behaviour per path, usable in
  process (``serve_app(app, http2=True)``) and as ``h2client:app`` in a subprocess.

Nothing here imports pytest, so a server subprocess can import the app.
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

HOST = "127.0.0.1"
TIMEOUT = 10.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MiB = 1 << 20

# frame types (RFC 9113 §6)
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# settings
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

# error codes (RFC 9113 §7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

ERROR_NAMES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}

FRAME_NAMES = {
    0x0: "DATA",
    0x1: "HEADERS",
    0x2: "PRIORITY",
    0x3: "RST_STREAM",
    0x4: "SETTINGS",
    0x5: "PUSH_PROMISE",
    0x6: "PING",
    0x7: "GOAWAY",
    0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION",
}


def error_name(code) -> str:
    if code is None:
        return "none"
    return ERROR_NAMES.get(code, hex(code))


def pattern(size: int) -> bytes:
    """``size`` bytes of a fixed, non-repeating-at-1-MiB pattern (what ``/big``
    sends), so a reordered or duplicated block changes the sha256."""
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d" % block).digest() * 2048  # 64 KiB
        block += 1
    return bytes(out[:size])


# ----------------------------------------------------------------------- the app


def _qs(environ, name, default=""):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


#: what ``/record`` saw, per request: (declared CONTENT_LENGTH, bytes read, error)
RECORDED: list = []
#: ``/gate`` waits for this (in-process tests set it)
GATE = threading.Event()


def app(environ, start_response):
    """One behaviour per path:

    ``/``: "Hello, world!"; ``/environ...``: the environ's str values as JSON;
    ``/big?n=``: n bytes of :func:`pattern` in 1 MiB items (Content-Length);
    ``/one?n=``: n bytes as a single item; ``/upload``: sha256 and length of the body;
    ``/record``: reads the body, notes what it got in RECORDED; ``/stream?n=&ms=``: n
    chunks "chunk i\\n", ms between them, no Content-Length; ``/file?path=``:
    wsgi.file_wrapper of that file; ``/write``: the body through write();
    ``/raise-after``: a chunk, then an exception; ``/raise-before``: an exception
    before start_response; ``/sleep?ms=``: sleeps, answers the path and query;
    ``/gate``: waits for GATE (at most 10 s); ``/hop``: Proxy-Connection beside
    X-Kept (``?h=NAME``: and the header NAME); ``/mixed``: header names in mixed
    case."""
    path = environ["PATH_INFO"]
    if path.startswith("/environ"):
        body = json.dumps(
            {k: v for k, v in environ.items() if isinstance(v, str)}, sort_keys=True
        ).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/big":
        size = int(_qs(environ, "n", "0"))
        data = pattern(size)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(size)),
            ],
        )
        return (data[i : i + MiB] for i in range(0, size, MiB))
    if path == "/one":
        size = int(_qs(environ, "n", "0"))
        start_response("200 OK", [("Content-Length", str(size))])
        return [pattern(size)]
    if path == "/upload":
        digest = hashlib.sha256()
        total = 0
        stream = environ["wsgi.input"]
        while True:
            block = stream.read(256 * 1024)
            if not block:
                break
            total += len(block)
            digest.update(block)
        body = f"{total} {digest.hexdigest()}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/record":
        declared = environ.get("CONTENT_LENGTH", "")
        try:
            got = len(environ["wsgi.input"].read())
            RECORDED.append((declared, got, None))
        except Exception as exc:  # a refused body may surface as an error: fine
            RECORDED.append((declared, None, repr(exc)))
            raise
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    if path == "/stream":
        count = int(_qs(environ, "n", "5"))
        pause = int(_qs(environ, "ms", "300")) / 1000

        def chunks():
            for i in range(count):
                if i:
                    time.sleep(pause)
                yield b"chunk %d\n" % i

        start_response("200 OK", [("Content-Type", "text/plain")])
        return chunks()
    if path == "/file":
        f = open(_qs(environ, "path"), "rb")  # noqa: SIM115 (closed by the server)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"by write()")
        return [b" and returned"]
    if path == "/raise-after":

        def broken():
            yield b"x" * 1000
            time.sleep(0.1)
            raise RuntimeError("the app broke after start_response")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return broken()
    if path == "/raise-before":
        raise RuntimeError("the app broke before start_response")
    if path == "/sleep":
        time.sleep(int(_qs(environ, "ms", "0")) / 1000)
        body = f"{path}?{environ.get('QUERY_STRING', '')}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/gate":
        GATE.wait(10)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"gate"]
    if path == "/hop":
        headers = [
            ("Content-Length", "3"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Kept", "yes"),
        ]
        also = _qs(environ, "h")
        if also:  # a hop-by-hop header PEP 3333 forbids: start_response refuses it
            headers.append((also, "x"))
        start_response("200 OK", headers)
        return [b"hop"]
    if path == "/mixed":
        start_response(
            "200 OK",
            [("Content-Length", "5"), ("X-Mixed-Case", "Value-Kept"), ("ETag", '"1"')],
        )
        return [b"mixed"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    return [b"Hello, world!\n"]


# ----------------------------------------------------------- the h2 package client


@dataclass
class Stream:
    """What one stream got: status, headers (bytes pairs), data, how it ended."""

    stream_id: int
    status: int | None = None
    headers: list = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    #: RST_STREAM error code from the server, if the stream was reset
    reset: int | None = None
    first_data_at: float | None = None
    ended_at: float | None = None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: str) -> str | None:
        values = [
            v.decode("latin-1") for k, v in self.headers if k == name.encode("latin-1")
        ]
        return ", ".join(values) if values else None

    @property
    def body(self) -> bytes:
        return bytes(self.data)


def client_tls_context(ca_file: str, alpn=("h2", "http/1.1")) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def connect(port, host=HOST, tls=None, server_hostname="localhost", sndbuf=None):
    """A socket to ``host:port`` (TLS with the context ``tls``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(TIMEOUT)
    sock.connect((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=server_hostname)
    return sock


class H2Client:
    """One HTTP/2 connection driven by the ``h2`` package.

    Every read is bounded by ``timeout``: a server that does not answer fails the
    test instead of hanging it.
    """

    def __init__(
        self,
        port,
        host=HOST,
        tls=None,
        settings=None,
        timeout=TIMEOUT,
        server_hostname="localhost",
    ):
        import h2.config
        import h2.connection

        self.sock = connect(port, host, tls, server_hostname)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.streams: dict[int, Stream] = {}
        self.remote_settings: dict = {}
        self.settings_received = False
        self.settings_acked = 0
        self.goaway = None  # the ConnectionTerminated event
        self.ping_acks: list = []
        self.closed = False
        self.events: list = []
        self.flush()

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    # -- receiving
    def pump(self, timeout=None) -> bool:
        """Read once (up to ``timeout``) and handle the events; False at EOF."""
        import h2.events

        if self.closed:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.closed = True
            return False
        now = time.monotonic()
        for event in self.conn.receive_data(data):
            self.events.append(event)
            sid = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.ResponseReceived):
                st = self.streams.setdefault(sid, Stream(sid))
                st.headers = list(event.headers)
                st.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                st = self.streams.setdefault(sid, Stream(sid))
                if st.first_data_at is None and event.data:
                    st.first_data_at = now
                st.data += event.data
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, sid
                    )
            elif isinstance(event, h2.events.StreamEnded):
                st = self.streams.setdefault(sid, Stream(sid))
                st.ended = True
                st.ended_at = now
            elif isinstance(event, h2.events.StreamReset):
                st = self.streams.setdefault(sid, Stream(sid))
                st.reset = int(event.error_code)
                st.ended_at = now
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self.settings_received = True
                for code, change in event.changed_settings.items():
                    self.remote_settings[int(code)] = change.new_value
            elif isinstance(event, h2.events.SettingsAcknowledged):
                self.settings_acked += 1
            elif isinstance(event, h2.events.PingAckReceived):
                self.ping_acks.append(event.ping_data)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
        self.flush()
        return True

    def wait(self, predicate, timeout=None, what="the condition"):
        """Pump until ``predicate()``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            if not self.pump(min(left, 0.5)) and not predicate():
                raise AssertionError(f"connection closed while waiting for {what}")
        return True

    def handshake(self):
        """Wait for the server's SETTINGS."""
        self.wait(lambda: self.settings_received, what="the server's SETTINGS")
        return self.remote_settings

    # -- sending
    def request(
        self,
        path="/",
        method="GET",
        headers=(),
        body=None,
        authority="localhost",
        scheme="http",
        end_stream=True,
    ) -> int:
        """Open a stream with a request; returns its id. ``body`` (bytes) is sent
        with flow control; ``end_stream=False`` leaves the stream open (no body)."""
        sid = self.conn.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":path", path.encode("latin-1")),
            (b":scheme", scheme.encode()),
            (b":authority", authority.encode()),
        ]
        fields += [
            (
                k.encode("latin-1") if isinstance(k, str) else k,
                v.encode("latin-1") if isinstance(v, str) else v,
            )
            for k, v in headers
        ]
        self.streams[sid] = Stream(sid)
        self.conn.send_headers(sid, fields, end_stream=end_stream and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def send_body(self, sid, body: bytes, end_stream=True):
        view = memoryview(body)
        deadline = time.monotonic() + 60
        while view:
            window = min(
                self.conn.local_flow_control_window(sid),
                self.conn.max_outbound_frame_size,
            )
            if window <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError("the server never opened its window")
                if not self.pump(0.5):
                    raise AssertionError("connection closed during the upload")
                st = self.streams.get(sid)
                if st is not None and st.reset is not None:
                    return
                continue
            piece, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(piece))
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    def response(self, sid, timeout=None) -> Stream:
        """The stream once it ended or was reset."""
        self.wait(
            lambda: self.streams[sid].done, timeout, what=f"the end of stream {sid}"
        )
        return self.streams[sid]

    def get(self, path="/", timeout=None, **kw) -> Stream:
        return self.response(self.request(path, **kw), timeout)

    def ping(self, payload: bytes):
        self.conn.ping(payload)
        self.flush()


# --------------------------------------------------------------- raw frames


@dataclass
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes
    #: decoded header fields, for a complete HEADERS (+CONTINUATION) block
    fields: list | None = None

    def __repr__(self):
        name = FRAME_NAMES.get(self.type, hex(self.type))
        extra = ""
        if self.type in (RST_STREAM, GOAWAY):
            extra = f" {error_name(self.error_code)}"
        return (
            f"<{name} stream={self.stream_id} flags={self.flags:#x} "
            f"len={len(self.payload)}{extra}>"
        )

    @property
    def error_code(self) -> int:
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        raise ValueError("not an RST_STREAM or GOAWAY")

    @property
    def last_stream_id(self) -> int:
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF

    def settings(self) -> dict:
        return {
            struct.unpack(">H", self.payload[i : i + 2])[0]: struct.unpack(
                ">I", self.payload[i + 2 : i + 6]
            )[0]
            for i in range(0, len(self.payload), 6)
        }


def parse_frames(data: bytes) -> list:
    """The whole frames in ``data`` (bytes a server sent), in order."""
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        sid = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        frames.append(Frame(data[3], data[4], sid, bytes(data[9 : 9 + length])))
        data = data[9 + length :]
    return frames


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame's bytes: a 9-byte header (24-bit length, type, flags, stream id)."""
    length = len(payload)
    return (
        struct.pack(">BHBBI", length >> 16, length & 0xFFFF, ftype, flags, stream_id)
        + payload
    )


def settings_frame(pairs=(), ack=False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def ping_frame(payload: bytes = b"12345678", ack=False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, payload)


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with ``first`` in the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes, indexing=False) -> bytes:
    """A literal field with a literal name, no Huffman (RFC 7541 §6.2): with
    incremental indexing (it enters the dynamic table) or without indexing."""
    first = 0x40 if indexing else 0x00
    prefix = 6 if indexing else 4
    return (
        hpack_int(0, prefix, first)
        + hpack_int(len(name), 7)
        + name
        + hpack_int(len(value), 7)
        + value
    )


def request_fields(path="/", method="GET", authority="localhost", scheme="http"):
    return [
        (":method", method),
        (":path", path),
        (":scheme", scheme),
        (":authority", authority),
    ]


class RawH2:
    """A client socket that writes frames built by hand and parses the server's.

    ``preface=False`` sends nothing at connect; else the preface and a SETTINGS
    frame with ``settings``. The server's SETTINGS are recorded in
    ``server_settings`` and acknowledged (unless ``ack_settings=False``).
    """

    def __init__(
        self,
        port,
        host=HOST,
        settings=(),
        preface=True,
        tls=None,
        ack_settings=True,
        sndbuf=None,
        timeout=TIMEOUT,
    ):
        import hpack

        self.sock = connect(port, host, tls, sndbuf=sndbuf)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        # the server's blocks may be large (a table of its own size): decode them all
        self.decoder.max_allowed_table_size = 1 << 16
        self.decoder.max_header_list_size = 1 << 24
        self.buf = bytearray()
        self.eof = False
        self.reset_by_peer = False
        self.ack_settings = ack_settings
        self.server_settings: dict | None = None
        self.frames: list[Frame] = []
        self._block = None  # (HEADERS frame, fragments) being assembled
        self.sent = 0
        self.outbuf = bytearray()
        self.goaway: Frame | None = None
        if preface:
            self.send(PREFACE + settings_frame(settings))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending
    def send(self, data: bytes):
        self.sock.sendall(data)
        self.sent += len(data)

    def try_send(self, data: bytes) -> bool:
        """Send; False if the peer has closed the connection (reset, broken pipe)."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.reset_by_peer = True
            return False

    def encode(self, fields) -> bytes:
        return self.encoder.encode(fields)

    def headers(self, stream_id, fields, end_stream=True, end_headers=True) -> bytes:
        """A HEADERS frame (bytes, not sent) with ``fields`` HPACK-encoded."""
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, stream_id, self.encode(fields))

    def request(self, stream_id, path="/", method="GET", extra=(), end_stream=True):
        self.send(
            self.headers(
                stream_id, request_fields(path, method) + list(extra), end_stream
            )
        )

    # -- receiving
    def _fill(self, timeout) -> bool:
        if self.eof:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            self.reset_by_peer = True
            data = b""
        except ssl.SSLError:
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _buffered_frame(self) -> Frame | None:
        """The next complete frame already read, if any."""
        if len(self.buf) < 9:
            return None
        length = int.from_bytes(self.buf[:3], "big")
        if len(self.buf) < 9 + length:
            return None
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload = bytes(self.buf[9 : 9 + length])
        del self.buf[: 9 + length]
        f = Frame(ftype, flags, sid, payload)
        self._handle(f)
        # floods get many answers: keep the interesting frames only
        if f.type not in (PING, SETTINGS, WINDOW_UPDATE) or len(self.frames) < 1000:
            self.frames.append(f)
        return f

    def read_frame(self, timeout=None) -> Frame | None:
        """The next frame; None at EOF; socket.timeout if none within ``timeout``."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            f = self._buffered_frame()
            if f is not None:
                return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame in time")
            if not self._fill(left):
                return None

    # -- floods: sending without blocking, reading what has come
    def queue(self, data: bytes):
        """Add to what :meth:`pump_out` sends."""
        self.outbuf += data

    def pump_out(self, wait: float = 0.05) -> bool:
        """Send queued bytes until the socket would block (waiting up to ``wait`` for
        it to take more); False once the peer has closed or reset the connection."""
        if self.reset_by_peer:
            return False
        self.sock.setblocking(False)
        try:
            while self.outbuf:
                try:
                    n = self.sock.send(self.outbuf[: 1 << 18])
                except (BlockingIOError, ssl.SSLWantWriteError):
                    if not wait_writable(self.sock, wait):
                        return True
                    continue
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    self.reset_by_peer = True
                    return False
                del self.outbuf[:n]
                self.sent += n
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def poll_end(self, wait: float = 0.0):
        """Read whatever the server has sent (waiting up to ``wait`` for the first
        byte) and parse it; ("goaway", code) or ("closed", None) once the connection
        has ended, else None."""
        first = True
        while readable(self.sock, wait if first else 0.0):
            first = False
            try:
                more = self._fill(1.0)
            except socket.timeout:
                break
            while True:
                f = self._buffered_frame()
                if f is None:
                    break
                if f.type == GOAWAY:
                    self.goaway = f
            if not more:
                break
        if self.goaway is not None:
            return ("goaway", self.goaway.error_code)
        if self.eof or self.reset_by_peer:
            return ("closed", None)
        return None

    def _handle(self, f: Frame):
        if f.type == SETTINGS and not f.flags & ACK:
            if self.server_settings is None:
                self.server_settings = {}
            self.server_settings.update(f.settings())
            if self.ack_settings:
                if self.outbuf:  # behind what is queued, never inside a frame
                    self.outbuf += settings_frame(ack=True)
                else:
                    self.try_send(settings_frame(ack=True))
        elif f.type == HEADERS:
            payload = f.payload
            if f.flags & PADDED:
                pad = payload[0]
                payload = payload[1 : len(payload) - pad]
            if f.flags & PRIORITY_FLAG:
                payload = payload[5:]
            if f.flags & END_HEADERS:
                f.fields = self._decode(payload)
            else:
                self._block = (f, [payload])
        elif f.type == CONTINUATION and self._block is not None:
            head, parts = self._block
            parts.append(f.payload)
            if f.flags & END_HEADERS:
                head.fields = self._decode(b"".join(parts))
                f.fields = head.fields
                self._block = None

    def _decode(self, block: bytes) -> list:
        return [
            (
                bytes(k).decode("latin-1") if not isinstance(k, str) else k,
                bytes(v).decode("latin-1") if not isinstance(v, str) else v,
            )
            for k, v in self.decoder.decode(block, raw=True)
        ]

    def read_until(self, predicate, timeout=None, what="a frame") -> Frame:
        """Frames until one for which ``predicate(frame)``; AssertionError at EOF or
        after ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                f = self.read_frame(max(left, 0.001))
            except socket.timeout:
                raise AssertionError(
                    f"no {what} in time; frames so far: {self.frames[-20:]}"
                ) from None
            if f is None:
                raise AssertionError(
                    f"connection closed before {what}; frames so far: "
                    f"{self.frames[-20:]}"
                )
            if predicate(f):
                return f

    def handshake(self, timeout=None) -> dict:
        """Read up to the server's SETTINGS; their values."""
        self.read_until(
            lambda f: f.type == SETTINGS and not f.flags & ACK,
            timeout,
            what="the server's SETTINGS",
        )
        return self.server_settings

    def ending(self, timeout=None):
        """Read until GOAWAY or EOF: ("goaway", code, frame), ("closed", None, None),
        or ("open", None, None) if neither came within ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ("open", None, None)
            try:
                f = self.read_frame(left)
            except socket.timeout:
                return ("open", None, None)
            if f is None:
                return ("closed", None, None)
            if f.type == GOAWAY:
                return ("goaway", f.error_code, f)

    def stream_outcome(self, stream_id, timeout=None):
        """Frames of ``stream_id`` until it ends: a dict with ``status``, ``fields``,
        ``data``, ``reset`` (RST_STREAM code) and ``goaway`` (code, if the
        connection ended first) and ``closed``."""
        out = {
            "status": None,
            "fields": None,
            "data": bytearray(),
            "reset": None,
            "goaway": None,
            "closed": False,
            "data_frames": 0,
        }
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"stream {stream_id} did not end in time: {out}; "
                    f"frames: {self.frames[-20:]}"
                )
            try:
                f = self.read_frame(left)
            except socket.timeout:
                continue
            if f is None:
                out["closed"] = True
                return out
            if f.type == GOAWAY:
                out["goaway"] = f.error_code
                # the stream may still complete if the server goes on with it
                if f.last_stream_id < stream_id:
                    return out
                continue
            if f.stream_id != stream_id:
                continue
            if f.type == HEADERS and f.fields is not None and out["fields"] is None:
                out["fields"] = f.fields
                out["status"] = int(dict(f.fields)[":status"])
            elif f.type == DATA:
                payload = f.payload
                if f.flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                out["data"] += payload
                out["data_frames"] += 1
            elif f.type == RST_STREAM:
                out["reset"] = f.error_code
                return out
            if f.type in (HEADERS, DATA, CONTINUATION) and f.flags & END_STREAM:
                return out


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_writable(sock, timeout) -> bool:
    _, w, _ = select.select([], [sock], [], timeout)
    return bool(w)


def readable(sock, timeout=0.0) -> bool:
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)
