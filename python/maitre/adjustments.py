"""Settings, validated: ``Adjustments(**kw)`` converts each value with the conversion
of its row in the settings table (``maitre.settings_table.SETTINGS``, re-exported
here), then checks the values' ranges and combinations, naming the setting in the
error. ``Adjustments.parse_args`` is the command line the same table describes.

Names, defaults and conversions follow waitress 3.0, except the identity strings.
"""

from __future__ import annotations

import getopt
import socket
import warnings
from typing import Any

# The conversions, public here as in waitress (maitre.adjustments.asbool, ...).
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
from .listen import is_https, split_listen, strip_https
from .settings_table import (  # noqa: F401 (some are only re-exported)
    ACCESS_LOG_FORMAT_COMBINED,
    COMMAND_LINE_OPTIONS,
    DEFAULT_ACCESS_LOG_FORMAT,
    ENGINE_SETTINGS,
    KNOWN_PROXY_HEADERS,
    MAX_WORKERS,
    SETTINGS,
    SETTINGS_BY_NAME,
    Setting,
)

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
            "keepalive_timeout",
            "worker_timeout",
            "max_requests",
            "max_requests_jitter",
            "max_worker_memory",
            "max_worker_lifetime",
            "min_request_body_rate",
            "max_queued_requests",
            "queue_timeout",
            "request_timeout",
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
