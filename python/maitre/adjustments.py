"""Settings: each defined once, in ``SETTINGS``, with its type conversion, default and
help text. The same table drives ``serve(**kw)``/``create_server(**kw)``, the command
line (``Adjustments.parse_args``) and PasteDeploy's string values.

Names, defaults and conversions follow waitress 3.0, except the identity strings.
"""

from __future__ import annotations

import getopt
import socket
import warnings
from typing import Any, Callable, NamedTuple

truthy = frozenset(("t", "true", "y", "yes", "on", "1"))

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


def asbool(s: Any) -> bool:
    """True for ``t``, ``true``, ``y``, ``yes``, ``on``, ``1`` (any case), ``True``."""
    if s is None:
        return False
    if isinstance(s, bool):
        return s
    return str(s).strip().lower() in truthy


def asoctal(s: Any) -> int:
    """An octal string (``"600"``) or an int as is."""
    if isinstance(s, int):
        return s
    return int(s, 8)


def aslist_cronly(value: Any) -> list:
    if isinstance(value, str):
        value = filter(None, [x.strip() for x in value.splitlines()])
    return list(value)


def aslist(value: Any) -> list:
    """Split a string on newlines and spaces; other iterables become lists."""
    result = []
    for item in aslist_cronly(value):
        result.extend(item.split())
    return result


def asset(value: Any) -> set:
    return set(aslist(value))


def slash_fixed_str(s: Any) -> str:
    """One leading slash, no trailing slash; empty stays empty."""
    s = str(s).strip()
    if s:
        s = "/" + s.lstrip("/").rstrip("/")
    return s


def str_iftruthy(s: Any) -> str | None:
    return str(s) if s else None


def as_socket_list(sockets: Any) -> list:
    return [sock for sock in sockets if isinstance(sock, socket.socket)]


def asint(s: Any) -> int:
    if isinstance(s, bool):
        raise ValueError("expected an integer, got a boolean")
    return int(s)


class Setting(NamedTuple):
    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "0.0.0.0", "Hostname or IP address to listen on."),
    Setting("port", asint, 8080, "TCP port to listen on."),
    Setting("ipv4", asbool, True, "Listen on IPv4 when resolving '*' and names."),
    Setting("ipv6", asbool, True, "Listen on IPv6 when resolving '*' and names."),
    Setting(
        "listen",
        aslist,
        ["0.0.0.0:8080"],
        "host:port to listen on; repeat or space-separate for several. "
        "'*:8080' listens on every enabled family, '[::1]:8080' on IPv6.",
    ),
    Setting("threads", asint, 4, "Number of threads running the application."),
    Setting(
        "trusted_proxy",
        str_iftruthy,
        None,
        "IP address of a proxy allowed to set proxy headers ('*' for any).",
    ),
    Setting(
        "trusted_proxy_count", asint, None, "How many trusted proxies are in front."
    ),
    Setting(
        "trusted_proxy_headers",
        asset,
        set(),
        "Proxy headers to trust: x-forwarded-for, x-forwarded-host, "
        "x-forwarded-proto, x-forwarded-port, x-forwarded-by, forwarded.",
    ),
    Setting(
        "log_untrusted_proxy_headers",
        asbool,
        False,
        "Log proxy headers sent by untrusted peers.",
    ),
    Setting(
        "clear_untrusted_proxy_headers",
        asbool,
        True,
        "Remove untrusted proxy headers from the environ.",
    ),
    Setting("url_scheme", str, "http", "Default wsgi.url_scheme."),
    Setting(
        "url_prefix",
        slash_fixed_str,
        "",
        "Mount point: becomes SCRIPT_NAME and is stripped from PATH_INFO.",
    ),
    Setting("backlog", asint, 1024, "listen() backlog."),
    Setting("recv_bytes", asint, 8192, "Bytes read per recv() call."),
    Setting("send_bytes", asint, 1, "Accepted for compatibility; has no effect."),
    Setting(
        "outbuf_overflow",
        asint,
        1048576,
        "Pending output above this many bytes spills to a temporary file.",
    ),
    Setting(
        "outbuf_high_watermark",
        asint,
        16777216,
        "An application writing faster than its client reads waits above this.",
    ),
    Setting(
        "inbuf_overflow",
        asint,
        524288,
        "Request bodies above this many bytes spill to a temporary file.",
    ),
    Setting(
        "connection_limit",
        asint,
        100,
        "Stop accepting connections while this many are open.",
    ),
    Setting(
        "cleanup_interval", asint, 30, "Seconds between checks for idle connections."
    ),
    Setting(
        "channel_timeout",
        asint,
        120,
        "Seconds of inactivity after which a connection is closed.",
    ),
    Setting("log_socket_errors", asbool, True, "Log socket errors."),
    Setting(
        "max_request_header_size",
        asint,
        262144,
        "Largest request head accepted (bytes); larger gets 431.",
    ),
    Setting(
        "max_request_body_size",
        asint,
        1073741824,
        "Largest request body accepted (bytes); larger gets 413.",
    ),
    Setting(
        "expose_tracebacks",
        asbool,
        False,
        "Show the traceback in the body of 500 responses.",
    ),
    Setting(
        "ident", str_iftruthy, "maitre", "Server header and SERVER_SOFTWARE value."
    ),
    Setting(
        "asyncore_loop_timeout", asint, 1, "Accepted for compatibility; no effect."
    ),
    Setting(
        "asyncore_use_poll", asbool, False, "Accepted for compatibility; no effect."
    ),
    Setting("unix_socket", str, None, "Path of a Unix domain socket to listen on."),
    Setting("unix_socket_perms", asoctal, 0o600, "Octal permissions of unix_socket."),
    Setting("sockets", as_socket_list, [], "Already bound sockets to serve on."),
    Setting(
        "channel_request_lookahead",
        asint,
        0,
        "Requests read ahead while one runs; enables client_disconnected().",
    ),
    Setting(
        "server_name",
        str,
        "maitre.invalid",
        "SERVER_NAME of the environ.",
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


class Adjustments:
    """Validated settings. ``Adjustments(**kw)`` converts each value with its
    setting's conversion and rejects unknown names and bad combinations."""

    def __init__(self, **kw: Any) -> None:
        _check_combinations(kw)
        for setting in SETTINGS:
            default = setting.default
            if isinstance(default, (list, set)):
                default = type(default)(default)
            setattr(self, setting.name, default)
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
        self.listen = self._resolve(self.listen) if not self.unix_socket else []
        self._check_proxy()

    def _check_values(self) -> None:
        for name in ("threads", "connection_limit", "recv_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
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
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 < self.port < 65536 and self.port != 0:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")

    def _resolve(self, listen: list) -> list:
        """(family, socktype, proto, sockaddr) for every address to bind."""
        if not self.ipv4 and not self.ipv6:
            raise ValueError("ipv4 and ipv6 are both disabled: nothing to listen on")
        families = socket.AF_UNSPEC
        if self.ipv4 and not self.ipv6:
            families = socket.AF_INET
        elif self.ipv6 and not self.ipv4:
            families = socket.AF_INET6
        wanted = []
        seen = set()
        for item in listen:
            if ":" in item:
                host, port = item.rsplit(":", 1)
                if "]" in port:
                    host, port = item, str(self.port)
            else:
                host, port = item, str(self.port)
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            if host == "*":
                host = None
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
                key = (sockaddr[0].split("%", 1)[0], sockaddr[1])
                if sockaddr[1] == 0 or key not in seen:
                    wanted.append((family, socktype, proto, sockaddr))
                    seen.add(key)
        return wanted

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
                    "The Forwarded proxy header and the "
                    "X-Forwarded-{By,Host,Proto,Port,For} headers are mutually "
                    "exclusive. Can't trust both!"
                )
        elif self.trusted_proxy is not None:
            self.trusted_proxy_headers = {"x-forwarded-proto"}

    @classmethod
    def parse_args(cls, argv: list[str]) -> tuple[dict, list[str]]:
        """Command-line flags to keyword arguments (values still strings), plus the
        positional arguments. ``--flag``/``--no-flag`` for booleans, ``--name=value``
        otherwise; ``--listen`` may repeat."""
        long_opts = ["help", "call"]
        for s in SETTINGS:
            opt = s.name.replace("_", "-")
            if s.convert is asbool:
                long_opts += [opt, "no-" + opt]
            else:
                long_opts.append(opt + "=")
        kw: dict[str, Any] = {"help": False, "call": False}
        opts, args = getopt.getopt(argv, "", long_opts)
        for opt, value in opts:
            param = opt.lstrip("-").replace("-", "_")
            if param == "listen":
                kw["listen"] = "{} {}".format(kw.get("listen", ""), value).strip()
            elif param in ("help", "call"):
                kw[param] = True
            elif param.startswith("no_") and param[3:] in SETTINGS_BY_NAME:
                kw[param[3:]] = "false"
            elif SETTINGS_BY_NAME[param].convert is asbool:
                kw[param] = "true"
            else:
                kw[param] = value
        return kw, args


def _check_combinations(kw: dict) -> None:
    if "listen" in kw and ("host" in kw or "port" in kw):
        raise ValueError("host or port may not be set if listen is set.")
    if "listen" in kw and "sockets" in kw:
        raise ValueError("socket may not be set if listen is set.")
    if "sockets" in kw and ("host" in kw or "port" in kw):
        raise ValueError("host or port may not be set if sockets is set.")
    if "sockets" in kw and "unix_socket" in kw:
        raise ValueError("unix_socket may not be set if sockets is set")
    if "unix_socket" in kw and ("host" in kw or "port" in kw):
        raise ValueError("unix_socket may not be set if host or port is set")
    if "unix_socket" in kw and "listen" in kw:
        raise ValueError("unix_socket may not be set if listen is set")
