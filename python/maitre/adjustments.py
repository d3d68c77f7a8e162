"""Settings: each defined once, in ``SETTINGS``, with its type conversion, default and
help text. The same table drives ``serve(**kw)``/``create_server(**kw)``, the command
line (``Adjustments.parse_args``), PasteDeploy's string values, and what the engine is
given (the rows marked ``engine``: the engine declares no defaults of its own).

Adding a setting: a row here (plus a check in ``_check_values`` if it has a range);
for one the engine acts on, ``engine=True`` and a field of ``Config`` in
``src/engine/config.rs``, read in ``src/wsgi/settings.rs``.

Names, defaults and conversions follow waitress 3.0, except the identity strings.
"""

from __future__ import annotations

import getopt
import socket
import warnings
from typing import Any, Callable, NamedTuple

from .converters import (  # noqa: F401 (some are only re-exported)
    as_peer_list,
    as_socket_list,
    as_workers,
    asbool,
    asint,
    aslist,
    aslist_cronly,
    asoctal,
    asseconds,
    asset,
    one_of,
    optional,
    slash_fixed_str,
    str_iftruthy,
    str_or_none,
    truthy,
)

# The conversions, public here as in waitress (maitre.adjustments.asbool, ...).
from .listen import is_https, split_listen, strip_https

KNOWN_PROXY_HEADERS = frozenset(
    (
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-by",
        "forwarded",
    )
)


DEFAULT_ACCESS_LOG_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
)


class Setting(NamedTuple):
    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str
    #: placeholder of the value in ``--help`` (booleans take none)
    metavar: str = "INT"
    #: whether the engine (``_maitre.Engine``) acts on it: then its value is in the
    #: settings handed to the engine, under its name (``ENGINE_SETTINGS``), and the
    #: engine refuses to start without it
    engine: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "host",
        str,
        "0.0.0.0",
        "Host name or IP address to listen on. Not together with --listen.",
        "ADDR",
    ),
    Setting(
        "port",
        asint,
        8080,
        "TCP port to listen on. Not together with --listen.",
        "PORT",
    ),
    Setting(
        "ipv4", asbool, True, "Listen on IPv4 when resolving '*' and host names.", ""
    ),
    Setting(
        "ipv6", asbool, True, "Listen on IPv6 when resolving '*' and host names.", ""
    ),
    Setting(
        "listen",
        aslist,
        ["0.0.0.0:8080"],
        "HOST:PORT to listen on; repeat the option (or separate with spaces) for "
        "several sockets. '*:8080' listens on every enabled family, '[::1]:8080' "
        "on an IPv6 address, a host name on each address it resolves to. "
        "'https://HOST:PORT' serves TLS there (see ssl_certificate).",
        "HOST:PORT",
    ),
    Setting(
        "threads",
        asint,
        4,
        "Number of worker threads running the application.",
        engine=True,
    ),
    Setting(
        "trusted_proxy",
        str_iftruthy,
        None,
        "IP address of a proxy allowed to set proxy headers ('*' for any).",
        "ADDR",
    ),
    Setting(
        "trusted_proxy_count",
        asint,
        None,
        "How many trusted proxies are in front (1 when trusted_proxy is set).",
    ),
    Setting(
        "trusted_proxy_headers",
        asset,
        set(),
        "Space-separated proxy headers to trust from trusted_proxy: "
        "x-forwarded-for, x-forwarded-host, x-forwarded-proto, x-forwarded-port, "
        "x-forwarded-by, or forwarded (alone).",
        "NAMES",
    ),
    Setting(
        "log_untrusted_proxy_headers",
        asbool,
        False,
        "Log proxy headers sent by untrusted peers.",
        "",
    ),
    Setting(
        "clear_untrusted_proxy_headers",
        asbool,
        True,
        "Remove untrusted proxy headers from the environ.",
        "",
    ),
    Setting("url_scheme", str, "http", "Default wsgi.url_scheme.", "SCHEME"),
    Setting(
        "url_prefix",
        slash_fixed_str,
        "",
        "Mount point: becomes SCRIPT_NAME and is stripped from PATH_INFO.",
        "PATH",
        engine=True,
    ),
    Setting(
        "backlog",
        asint,
        1024,
        "Backlog of listen(): connections waiting to be accepted.",
    ),
    Setting(
        "recv_bytes", asint, 8192, "Bytes read from a socket at a time.", engine=True
    ),
    Setting("send_bytes", asint, 1, "Accepted for compatibility; has no effect."),
    Setting(
        "outbuf_overflow",
        asint,
        1048576,
        "Pending output above this many bytes spills to a temporary file.",
        engine=True,
    ),
    Setting(
        "outbuf_high_watermark",
        asint,
        16777216,
        "An application writing faster than its client reads waits above this many "
        "bytes of pending output.",
        engine=True,
    ),
    Setting(
        "inbuf_overflow",
        asint,
        524288,
        "Request bodies above this many bytes spill to a temporary file.",
        engine=True,
    ),
    Setting(
        "connection_limit",
        asint,
        100,
        "Stop accepting connections while this many are open.",
        engine=True,
    ),
    Setting(
        "cleanup_interval",
        asint,
        30,
        "Seconds between checks for idle connections.",
        engine=True,
    ),
    Setting(
        "channel_timeout",
        asint,
        120,
        "Seconds of inactivity after which a connection is closed.",
        engine=True,
    ),
    Setting(
        "shutdown_timeout",
        asseconds,
        30,
        "Seconds a graceful stop (SIGTERM, SIGINT, close()) waits for the requests "
        "in flight; those still running then are abandoned.",
        "SECONDS",
        engine=True,
    ),
    # Leaving a fleet behind a load balancer (docs/deployment.md).
    Setting(
        "shutdown_delay",
        asseconds,
        0,
        "Seconds between SIGTERM/SIGINT and the graceful stop: /readyz on the "
        "metrics listener says 503 at once, the server keeps accepting and "
        "answering, each keep-alive connection closing after its next response. "
        "A second signal ends the delay. 0: none.",
        "SECONDS",
    ),
    Setting(
        "keepalive_linger",
        asseconds,
        2,
        "Seconds a graceful stop or reload leaves idle keep-alive connections open "
        "for a request already on its way (answered with Connection: close). "
        "0: closed at once, as waitress does.",
        "SECONDS",
        engine=True,
    ),
    Setting(
        "proxy_protocol",
        one_of("off", "v1", "v2", "auto"),
        "off",
        "PROXY protocol header expected from the peers in proxy_protocol_from "
        "(a TCP load balancer's send-proxy, an AWS NLB): off, v1, v2 or auto "
        "(either). Its source address becomes REMOTE_ADDR/REMOTE_PORT for the "
        "whole connection; a listed peer that sends no valid header is closed.",
        "VERSION",
        engine=True,
    ),
    Setting(
        "proxy_protocol_from",
        as_peer_list,
        [],
        "Addresses and networks (CIDR) of the peers that must send the PROXY "
        "protocol header, separated by spaces or commas; '*' for any IP address, "
        "'unix' for connections to a Unix socket. Required with proxy_protocol; "
        "other peers are served as usual, and a header from one is refused.",
        "ADDRS",
        engine=True,
    ),
    Setting(
        "log_socket_errors",
        asbool,
        True,
        "Log socket errors (such as clients disconnecting early).",
        "",
        engine=True,
    ),
    Setting(
        "max_request_header_size",
        asint,
        262144,
        "Largest request head accepted, in bytes; larger gets 431.",
        engine=True,
    ),
    Setting(
        "max_request_body_size",
        asint,
        1073741824,
        "Largest request body accepted, in bytes; larger gets 413.",
        engine=True,
    ),
    Setting(
        "max_request_headers",
        asint,
        100,
        "Most header fields accepted in a request; more gets 431.",
        engine=True,
    ),
    Setting(
        "min_request_body_rate",
        asint,
        500,
        "Bytes per second a request body must average after a grace period "
        "(channel_timeout, at most 20 s); slower gets 408. 0: no minimum.",
        "BYTES",
        engine=True,
    ),
    Setting(
        "expose_tracebacks",
        asbool,
        False,
        "Show the traceback in the body of 500 responses.",
        "",
        engine=True,
    ),
    Setting(
        "ident",
        str_iftruthy,
        "maitre",
        "Server header and SERVER_SOFTWARE value.",
        "STR",
        engine=True,
    ),
    Setting(
        "asyncore_loop_timeout", asint, 1, "Accepted for compatibility; no effect."
    ),
    Setting(
        "asyncore_use_poll",
        asbool,
        False,
        "Accepted for compatibility; no effect.",
        "",
    ),
    Setting(
        "unix_socket",
        str_or_none,
        None,
        "Path of a Unix domain socket to listen on instead of TCP (a stale socket "
        "file there is removed first; one a live server uses is refused).",
        "PATH",
    ),
    Setting(
        "unix_socket_perms",
        asoctal,
        0o600,
        "Octal permissions of the unix_socket file.",
        "OCTAL",
    ),
    Setting(
        "sockets",
        as_socket_list,
        [],
        "Already bound sockets to serve on (socket activation): socket objects "
        "from Python, file descriptor numbers on the command line. Not together "
        "with host, port, listen or unix_socket.",
        "FD",
    ),
    Setting(
        "channel_request_lookahead",
        asint,
        0,
        "Requests read ahead while one runs; enables client_disconnected().",
        engine=True,
    ),
    Setting(
        "server_name",
        str,
        "maitre.invalid",
        "SERVER_NAME of the environ when the request has no Host header.",
        "NAME",
    ),
    # The process model (maitre's own; waitress has one process): see master.py.
    Setting(
        "workers",
        as_workers,
        1,
        "Worker processes, each with its own threads; 'auto' for one per usable "
        "CPU. With more than 1, a master process binds the sockets and supervises "
        "the workers. At most 512 (MAX_WORKERS).",
        "N",
    ),
    Setting(
        "preload_app",
        asbool,
        False,
        "Import the application once in the master before starting the workers "
        "(less memory, faster starts; a reload then keeps the old code).",
        "",
    ),
    Setting(
        "worker_timeout",
        asint,
        30,
        "Seconds a worker's event loop may stay silent before the worker is killed "
        "and replaced (a wedged process, not a slow request); 0 for never.",
        "SECONDS",
    ),
    Setting(
        "max_requests",
        asint,
        0,
        "Replace a worker after it has served this many requests (its successor "
        "starts first); 0 for never.",
    ),
    Setting(
        "max_requests_jitter",
        asint,
        0,
        "Add a random 0 to this many requests to each worker's max_requests, so "
        "that workers are not all replaced at once.",
    ),
    # Recycling and watching beyond max_requests (see master.py).
    Setting(
        "max_worker_memory",
        asint,
        0,
        "Replace a worker whose resident memory (RSS) exceeds this many MiB, checked "
        "by the master every second (its successor starts first; Linux only); 0 for "
        "never.",
        "MIB",
    ),
    Setting(
        "max_worker_lifetime",
        asint,
        0,
        "Replace a worker after it has run this many seconds, plus a random 0 to 10% "
        "more so that workers are not all replaced at once (its successor starts "
        "first); 0 for never.",
        "SECONDS",
    ),
    Setting(
        "pid_file",
        str_or_none,
        None,
        "Write the server's process id to this file at start, remove it at exit; "
        "refuse to start while the process it names is alive.",
        "PATH",
    ),
    Setting(
        "reload",
        asbool,
        False,
        "Development: restart the workers when a .py file under the application's "
        "directory (or reload_dirs) changes. Needs the watchfiles package.",
        "",
    ),
    Setting(
        "reload_dirs",
        aslist,
        [],
        "Directories watched by reload instead of the application's directory.",
        "DIRS",
    ),
    # Observability (maitre's own; waitress has none).
    Setting(
        "access_log",
        str_iftruthy,
        None,
        "Access log: '-' for stdout, a file path (appended to; reopened by "
        "SIGUSR1), or 'logging' for the 'maitre.access' logger. Off when unset.",
        "WHERE",
        engine=True,
    ),
    Setting(
        "access_log_format",
        str,
        DEFAULT_ACCESS_LOG_FORMAT,
        "Format of access log lines, with gunicorn's atoms: %(h)s address, %(l)s "
        "'-', %(u)s user, %(t)s time, %(r)s request line, %(m)s method, %(U)s "
        "path, %(q)s query, %(H)s protocol, %(s)s status, %(B)s body bytes, %(b)s "
        "body bytes or '-', %(f)s referer, %(a)s user agent, %(T)s/%(M)s/%(D)s/"
        "%(L)s duration in s/ms/us/decimal s, %(p)s process id, "
        "%({header}i)s request header, %({header}o)s response header, "
        "%({key}e)s environ value. Default: Apache's combined format. Or 'json' "
        "for one JSON object per line.",
        "FORMAT",
        engine=True,
    ),
    Setting(
        "metrics_listen",
        str_iftruthy,
        None,
        "HOST:PORT of a listener of its own serving Prometheus metrics at "
        "/metrics and a status page at /. Off when unset; never the "
        "application's port.",
        "HOST:PORT",
    ),
    # TLS (maitre's own).
    Setting(
        "ssl_certificate",
        str_iftruthy,
        None,
        "PEM file of the server certificate (leaf first, intermediates may follow). "
        "With it, the listen entries marked https:// serve TLS, or every listener "
        "when none is marked.",
        "PATH",
        engine=True,
    ),
    Setting(
        "ssl_private_key",
        str_iftruthy,
        None,
        "PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1; "
        "encrypted PKCS#8 with ssl_private_key_password).",
        "PATH",
        engine=True,
    ),
    Setting(
        "ssl_certificate_chain",
        str_iftruthy,
        None,
        "PEM file of intermediate certificates sent after ssl_certificate.",
        "PATH",
        engine=True,
    ),
    Setting(
        "ssl_private_key_password",
        str_iftruthy,
        None,
        "Password of an encrypted ssl_private_key (on the command line it shows in "
        "the process list: prefer an ini file or the Python API).",
        "PASSWORD",
        engine=True,
    ),
    Setting(
        "ssl_ca_certificate",
        str_iftruthy,
        None,
        "PEM file of the CA certificates that client certificates must chain to.",
        "PATH",
        engine=True,
    ),
    Setting(
        "ssl_verify_client",
        one_of("none", "optional", "required"),
        "none",
        "Client certificates: none (not asked for), optional (verified if sent) or "
        "required.",
        "MODE",
        engine=True,
    ),
    Setting(
        "ssl_min_version",
        one_of("1.2", "1.3"),
        "1.2",
        "Oldest TLS version accepted: 1.2 or 1.3.",
        "VERSION",
        engine=True,
    ),
    # Logging (maitre's own): applied by maitre.config.configure_logging.
    Setting(
        "log_level",
        optional(one_of("debug", "info", "warning", "error", "critical")),
        None,
        "Level of the 'maitre' loggers (the server's messages, not the access "
        "log's lines): debug, info, warning, error or critical. Unset: info, or "
        "the level the application already gave the 'maitre' logger.",
        "LEVEL",
    ),
    Setting(
        "log_config",
        str_iftruthy,
        None,
        "A logging configuration file applied at start, before anything is "
        "logged: JSON (a logging.config.dictConfig dictionary) when it ends in "
        ".json, else an INI file for logging.config.fileConfig. Unset: maitre "
        "sets up logging itself (time, level and logger on each line), unless the "
        "application already has.",
        "PATH",
    ),
)

#: the most worker processes accepted: each is a process with its own threads and a
#: pipe to the master, and a number beyond this is a typo, not a plan (it would fork
#: until the process or descriptor limits stop it)
MAX_WORKERS = 512

#: Apache's combined log format in gunicorn's atoms.
ACCESS_LOG_FORMAT_COMBINED = DEFAULT_ACCESS_LOG_FORMAT

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}

#: the command line's options that are not settings (getopt's long options)
COMMAND_LINE_OPTIONS = (
    "help",
    "call",
    "version",
    "app=",
    "mount=",
    "paste=",
    "config=",
    "check-config",
)

#: the settings the engine acts on (``Setting.engine``), in the table's order
ENGINE_SETTINGS = tuple(s.name for s in SETTINGS if s.engine)

#: settings that say where to listen; ``sockets`` excludes all the others
_ADDRESS_SETTINGS = ("host", "port", "listen", "unix_socket")


def _copy_default(value: Any) -> Any:
    return type(value)(value) if isinstance(value, (list, set)) else value


class Adjustments:
    """Validated settings. ``Adjustments(**kw)`` converts each value with its
    setting's conversion and rejects unknown names, bad values and bad
    combinations with a ``ValueError`` naming the setting.

    Every setting is also a class attribute holding its default, as in waitress."""

    # waitress's names for the table: (name, conversion) pairs, and by name
    _params = tuple((s.name, s.convert) for s in SETTINGS)
    _param_map = dict(_params)

    def __init__(self, **kw: Any) -> None:
        _check_combinations(kw)
        for setting in SETTINGS:
            setattr(self, setting.name, _copy_default(setting.default))
        for name, value in kw.items():
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None:
                raise ValueError(f"Unknown adjustment {name!r}")
            try:
                converted = setting.convert(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"Invalid value for {name}: {value!r} ({e})") from None
            setattr(self, name, converted)
        if "send_bytes" in kw:
            warnings.warn(
                "send_bytes has no effect and will be removed",
                DeprecationWarning,
                stacklevel=2,
            )
        self._check_values()
        if "listen" not in kw:
            self.listen = [f"{self.host}:{self.port}"]
        marked = [is_https(item) for item in self.listen]
        self._check_tls(any(marked))
        if self.unix_socket or "sockets" in kw:
            # Nothing is listened on by address: only the values are checked.
            self.listen = []
            #: TLS on the unix socket or the given sockets: all or none
            self.listen_tls: list[bool] = []
            self.tls_everywhere = bool(self.ssl_certificate)
        else:
            # With certificates and no https:// anywhere, every listener is TLS.
            everywhere = bool(self.ssl_certificate) and not any(marked)
            self.listen, self.listen_tls = self._resolve_marked(
                [strip_https(item) for item in self.listen],
                [m or everywhere for m in marked],
            )
            self.tls_everywhere = everywhere
        self._check_proxy()
        if "sockets" in kw and not self.sockets:
            raise ValueError("sockets was set but holds no socket")
        self.check_sockets(self.sockets)

    def _check_values(self) -> None:
        for name in (
            "threads",
            "connection_limit",
            "recv_bytes",
            "workers",
            "max_request_headers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1, not {getattr(self, name)}"
                )
        for name in (
            "backlog",
            "outbuf_overflow",
            "outbuf_high_watermark",
            "inbuf_overflow",
            "cleanup_interval",
            "channel_timeout",
            "max_request_header_size",
            "max_request_body_size",
            "channel_request_lookahead",
            "shutdown_timeout",
            "shutdown_delay",
            "keepalive_linger",
            "worker_timeout",
            "max_requests",
            "max_requests_jitter",
            "max_worker_memory",
            "max_worker_lifetime",
            "min_request_body_rate",
        ):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must not be negative, not {getattr(self, name)}"
                )
        if self.workers > MAX_WORKERS:
            raise ValueError(
                f"workers must be at most {MAX_WORKERS}, not {self.workers}"
            )
        if self.metrics_listen is not None:
            host, port = split_listen(self.metrics_listen, -1)
            if not port.isdigit():
                raise ValueError(
                    f"metrics_listen must be HOST:PORT, not {self.metrics_listen!r}"
                )
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")
        if self.reload and self.preload_app:
            # A preloaded app is in the master's memory: new workers would get the
            # same old code.
            raise ValueError("reload may not be set together with preload_app")
        if self.proxy_protocol != "off" and not self.proxy_protocol_from:
            raise ValueError(
                f"proxy_protocol={self.proxy_protocol} needs proxy_protocol_from: the "
                "addresses of the load balancers that send the PROXY header"
            )
        if self.proxy_protocol == "off" and self.proxy_protocol_from:
            raise ValueError(
                "proxy_protocol_from has no meaning without proxy_protocol "
                "(v1, v2 or auto)"
            )
        count = self.trusted_proxy_count
        if count is not None and count < 1:
            raise ValueError(f"trusted_proxy_count must be at least 1, not {count}")

    def _families(self) -> int:
        if self.ipv4 and not self.ipv6:
            return socket.AF_INET
        if self.ipv6 and not self.ipv4:
            return socket.AF_INET6
        if not self.ipv4 and not self.ipv6:
            raise ValueError("ipv4 and ipv6 are both disabled: nothing to listen on")
        return socket.AF_UNSPEC

    def _resolve(self, listen: list) -> list:
        """(family, socktype, proto, sockaddr) for every address to bind."""
        families = self._families()
        wanted = []
        seen = set()
        for item in listen:
            host, port = split_listen(item, self.port)
            try:
                infos = socket.getaddrinfo(
                    host,
                    port,
                    families,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    socket.AI_PASSIVE,
                )
            except (OSError, UnicodeError) as e:
                raise ValueError(
                    f"Invalid host/port specified in listen: {item!r} ({e})"
                ) from None
            for family, socktype, proto, _, sockaddr in infos:
                # getaddrinfo may repeat itself; a zone index does not make an
                # address different. Port 0 binds a new port each time.
                key = (sockaddr[0].split("%", 1)[0], sockaddr[1])
                if sockaddr[1] == 0 or key not in seen:
                    wanted.append((family, socktype, proto, sockaddr))
                    seen.add(key)
        return wanted

    def _resolve_marked(self, listen: list, tls: list[bool]) -> tuple[list, list[bool]]:
        """``_resolve``, keeping with each address whether its entry was TLS."""
        addresses: list = []
        flags: list[bool] = []
        for item, is_tls in zip(listen, tls):
            resolved = self._resolve([item])
            seen = {(a[3][0].split("%", 1)[0], a[3][1]) for a in addresses}
            for a in resolved:
                if a[3][1] == 0 or (a[3][0].split("%", 1)[0], a[3][1]) not in seen:
                    addresses.append(a)
                    flags.append(is_tls)
        return addresses, flags

    def _check_tls(self, marked: bool) -> None:
        if marked and not self.ssl_certificate:
            raise ValueError("an https:// listen entry needs ssl_certificate")
        if self.ssl_certificate and not self.ssl_private_key:
            raise ValueError("ssl_private_key must be set with ssl_certificate")
        if not self.ssl_certificate:
            for name in (
                "ssl_private_key",
                "ssl_certificate_chain",
                "ssl_private_key_password",
                "ssl_ca_certificate",
            ):
                if getattr(self, name):
                    raise ValueError(f"{name} has no meaning without ssl_certificate")
        if self.ssl_verify_client != "none" and not self.ssl_ca_certificate:
            raise ValueError(
                f"ssl_verify_client={self.ssl_verify_client} needs ssl_ca_certificate"
            )

    def _check_proxy(self) -> None:
        if self.trusted_proxy_count is not None and self.trusted_proxy is None:
            raise ValueError(
                "trusted_proxy_count has no meaning without setting trusted_proxy"
            )
        if self.trusted_proxy_count is None:
            self.trusted_proxy_count = 1
        if self.trusted_proxy_headers and self.trusted_proxy is None:
            raise ValueError(
                "trusted_proxy_headers has no meaning without setting trusted_proxy"
            )
        if self.trusted_proxy_headers:
            self.trusted_proxy_headers = {h.lower() for h in self.trusted_proxy_headers}
            unknown = self.trusted_proxy_headers - KNOWN_PROXY_HEADERS
            if unknown:
                raise ValueError(
                    "Received unknown trusted_proxy_headers value ({}) expected one "
                    "of {}".format(
                        ", ".join(sorted(unknown)),
                        ", ".join(sorted(KNOWN_PROXY_HEADERS)),
                    )
                )
            if (
                "forwarded" in self.trusted_proxy_headers
                and self.trusted_proxy_headers - {"forwarded"}
            ):
                raise ValueError(
                    "trusted_proxy_headers: The Forwarded proxy header and the "
                    "X-Forwarded-{By,Host,Proto,Port,For} headers are mutually "
                    "exclusive. Can't trust both!"
                )
        elif self.trusted_proxy is not None:
            warnings.warn(
                "No proxy headers were marked as trusted, but trusted_proxy was set. "
                "Implicitly trusting X-Forwarded-Proto for compatibility with "
                "waitress; set trusted_proxy_headers to say which headers to trust.",
                DeprecationWarning,
                stacklevel=3,
            )
            self.trusted_proxy_headers = {"x-forwarded-proto"}

    @classmethod
    def check_sockets(cls, sockets: list) -> None:
        """Sockets given in ``sockets`` must be stream sockets, all Internet or all
        Unix."""
        inet = unix = False
        for sock in sockets:
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    "sockets: only Internet or UNIX stream sockets may be used."
                )
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                inet = True
            elif sock.family == getattr(socket, "AF_UNIX", None):
                unix = True
            else:
                raise ValueError(
                    "sockets: only Internet or UNIX stream sockets may be used."
                )
        if inet and unix:
            raise ValueError("sockets: Internet and UNIX sockets may not be mixed.")

    @classmethod
    def parse_args(cls, argv: list[str]) -> tuple[dict, list[str]]:
        """Command-line flags to keyword arguments (values still strings), plus the
        positional arguments. ``--flag``/``--no-flag`` for booleans, ``--name=value``
        otherwise; ``--listen`` may repeat; options may come before or after the
        positional arguments. ``help`` and ``call`` are always in the
        result; ``app`` only when ``--app=MODULE:OBJECT`` was given, ``version`` only
        with ``--version``; ``mount`` (a list of ``PREFIX=MODULE:OBJECT``) only when
        ``--mount`` was; ``paste``, ``config`` and ``check_config`` only when given.

        Raises ``getopt.GetoptError`` for an unknown or malformed option."""
        long_opts = list(COMMAND_LINE_OPTIONS)
        for s in SETTINGS:
            opt = s.name.replace("_", "-")
            if s.convert is asbool:
                long_opts += [opt, "no-" + opt]
            else:
                long_opts.append(opt + "=")
        kw: dict[str, Any] = {"help": False, "call": False}
        # Options may also follow the application (waitress stops at it).
        opts, args = getopt.gnu_getopt(argv, "", long_opts)
        for opt, value in opts:
            param = opt[2:].replace("-", "_")
            if param == "listen":
                # As waitress builds it (a leading space included): a space-separated
                # list, one entry per --listen.
                kw["listen"] = "{} {}".format(kw.get("listen", ""), value)
            elif param in ("help", "call"):
                kw[param] = True
            elif param == "version":  # maitre's own flag: only there when given
                kw["version"] = True
            elif param in ("paste", "config"):  # only there when given
                if param in kw:
                    raise getopt.GetoptError(
                        f"option --{param} given more than once", param
                    )
                kw[param] = value
            elif param == "check_config":
                kw["check_config"] = True
            elif param == "mount":
                kw.setdefault("mount", []).append(value)
            elif param == "app":
                if "app" in kw:
                    raise getopt.GetoptError("option --app given more than once", "app")
                kw["app"] = value
            elif param.startswith("no_") and param[3:] in SETTINGS_BY_NAME:
                kw[param[3:]] = "false"
            elif SETTINGS_BY_NAME[param].convert is asbool:
                kw[param] = "true"
            else:
                kw[param] = value
        return kw, args


for _setting in SETTINGS:
    setattr(Adjustments, _setting.name, _copy_default(_setting.default))
del _setting


def _check_combinations(kw: dict) -> None:
    if "listen" in kw and ("host" in kw or "port" in kw):
        raise ValueError("host or port may not be set if listen is set.")
    if "sockets" in kw:
        others = [name for name in _ADDRESS_SETTINGS if name in kw]
        if others:
            raise ValueError(
                f"{' and '.join(others)} may not be set if sockets is set."
            )
    if "unix_socket" in kw and ("host" in kw or "port" in kw):
        raise ValueError("unix_socket may not be set if host or port is set")
    if "unix_socket" in kw and "listen" in kw:
        raise ValueError("unix_socket may not be set if listen is set")
