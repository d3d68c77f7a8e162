"""The settings table: each setting defined once, in ``SETTINGS``, with its type
conversion, default and help text. The same table drives ``serve(**kw)``/
``create_server(**kw)``, the command line, PasteDeploy's string values, the settings
reference in the docs, and what the engine is given (the rows marked ``engine``: the
engine declares no defaults of its own). ``maitre.adjustments`` (waitress's module
name, where users and waitress's tests look) validates values against it and
re-exports it.

Adding a setting: a row here (plus a check in ``Adjustments._check_values`` if it has
a range); for one the engine acts on, ``engine=True`` and a field of ``Config`` in
``src/engine/config.rs``, read in ``src/wsgi/settings.rs``.

Names, defaults and conversions follow waitress 3.0, except the identity strings.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .converters import (
    as_peer_list,
    as_socket_list,
    as_workers,
    asbool,
    asint,
    aslist,
    asoctal,
    asseconds,
    asset,
    one_of,
    optional,
    slash_fixed_str,
    str_iftruthy,
    str_or_none,
)

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
    # Overload: turning requests away fast rather than queueing them without bound.
    Setting(
        "max_queued_requests",
        asint,
        0,
        "Requests that may wait for a free thread; the next one gets 503 Service "
        "Unavailable with Retry-After: 1 and Connection: close, from the engine, "
        "and /readyz says 503 while the queue is full. 0: no limit.",
        engine=True,
    ),
    Setting(
        "queue_timeout",
        asseconds,
        0,
        "Seconds a request may wait for a free thread; one that waited that long "
        "gets 503 Service Unavailable (Retry-After: 1) instead of running. "
        "0: no limit.",
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
        "http2",
        asbool,
        False,
        "Serve HTTP/2 beside HTTP/1.1: TLS listeners offer ALPN h2 before "
        "http/1.1, and cleartext listeners take the HTTP/2 connection preface "
        "(prior knowledge, h2c) on the same port. Streams run in parallel on the "
        "thread pool.",
        "",
        engine=True,
    ),
    Setting(
        "keepalive_timeout",
        asseconds,
        0,
        "Seconds a keep-alive connection may wait for its next request before it "
        "is closed (checked every second). 0: channel_timeout, as in waitress.",
        "SECONDS",
        engine=True,
    ),
    Setting(
        "request_timeout",
        asseconds,
        0,
        "Seconds an application call may run: then the client gets 504 Gateway "
        "Timeout (or, once the response has started, its connection is closed), "
        "maitre.RequestTimeout is raised in the call's Python code and its stack "
        "logged. A thread blocked in C code stays stuck (maitre_threads_stuck). "
        "0: no limit.",
        "SECONDS",
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
