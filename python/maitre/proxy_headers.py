"""Behind a reverse proxy: rewrite the environ from the proxy headers of a trusted peer.

``proxy_headers_middleware`` wraps a WSGI application. When the peer (``REMOTE_ADDR``)
is the trusted proxy (or ``trusted_proxy`` is ``*``), the headers named in
``trusted_proxy_headers`` are believed for the last ``trusted_proxy_count`` hops:

- ``X-Forwarded-For`` / ``Forwarded: for=`` -> ``REMOTE_ADDR``, ``REMOTE_HOST`` (and
  ``REMOTE_PORT`` when the value carries a port);
- ``X-Forwarded-Host`` / ``Forwarded: host=`` -> ``HTTP_HOST`` and ``SERVER_NAME``;
- ``X-Forwarded-Proto`` / ``Forwarded: proto=`` -> ``wsgi.url_scheme`` (and the default
  port of that scheme);
- ``X-Forwarded-Port`` (or a port in the forwarded host) -> ``SERVER_PORT``;
- ``X-Forwarded-By`` is only let through to the application.

A trusted header that cannot be parsed gets a 400 naming it. Every proxy header not used
(sent by an untrusted peer, or not trusted) is removed from the environ when
``clear_untrusted`` is set, and the trusted ones are cut down to the hops believed.
This is waitress 3.0's behaviour, setting for setting.

The server wraps the application in this middleware only when a proxy is trusted (or
removed headers are to be logged): with no trusted proxy, the Rust engine drops proxy
headers itself while it builds the environ.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Collection, Iterable
from logging import Logger
from typing import Any

from .utilities import BadRequest, logger, undquote

#: the proxy headers, as environ keys without ``HTTP_``
PROXY_HEADERS = frozenset(
    {
        "X_FORWARDED_FOR",
        "X_FORWARDED_HOST",
        "X_FORWARDED_PROTO",
        "X_FORWARDED_PORT",
        "X_FORWARDED_BY",
        "FORWARDED",
    }
)

#: one element of a ``Forwarded`` header (RFC 7239)
Forwarded = namedtuple("Forwarded", ["by", "for_", "host", "proto"])

_DEFAULT_PORTS = {"http": "80", "https": "443"}


class MalformedProxyHeader(Exception):
    """A trusted proxy header that cannot be parsed; the request gets a 400."""

    def __init__(self, header: str, reason: str, value: str) -> None:
        self.header = header
        self.reason = reason
        self.value = value
        super().__init__(header, reason, value)


def proxy_headers_middleware(
    app: Callable[..., Any],
    trusted_proxy: str | None = None,
    trusted_proxy_count: int = 1,
    trusted_proxy_headers: Collection[str] | None = None,
    clear_untrusted: bool = True,
    log_untrusted: bool = False,
    logger: Logger = logger,
) -> Callable[..., Any]:
    """Wrap ``app`` so that it sees the client as the trusted proxy describes it."""

    def translate_proxy_headers(
        environ: dict, start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        untrusted = PROXY_HEADERS
        peer = environ["REMOTE_ADDR"]
        if trusted_proxy == "*" or peer == trusted_proxy:
            try:
                untrusted = parse_proxy_headers(
                    environ,
                    trusted_proxy_count=trusted_proxy_count,
                    trusted_proxy_headers=trusted_proxy_headers,
                    logger=logger,
                )
            except MalformedProxyHeader as exc:
                logger.warning(
                    'Malformed proxy header "%s" from "%s": %s value: %s',
                    exc.header,
                    peer,
                    exc.reason,
                    exc.value,
                )
                error = BadRequest(f'Header "{exc.header}" malformed.')
                return error.wsgi_response(environ, start_response)
        if clear_untrusted:
            clear_untrusted_headers(
                environ, untrusted, log_warning=log_untrusted, logger=logger
            )
        return app(environ, start_response)

    return translate_proxy_headers


def parse_proxy_headers(
    environ: dict,
    trusted_proxy_count: int,
    trusted_proxy_headers: Collection[str] | None,
    logger: Logger = logger,
) -> set[str]:
    """Apply the trusted proxy headers of a request from the trusted proxy to
    ``environ``; return the proxy headers (environ keys without ``HTTP_``) that were not
    used. Raises MalformedProxyHeader for a trusted header that cannot be parsed."""
    trusted = trusted_proxy_headers or ()
    count = trusted_proxy_count
    untrusted = set(PROXY_HEADERS)
    client = host = proto = port = ""

    if "x-forwarded-for" in trusted and "HTTP_X_FORWARDED_FOR" in environ:
        client = _last_hops(environ, "X_FORWARDED_FOR", "X-Forwarded-For", count)
        untrusted.discard("X_FORWARDED_FOR")
    if "x-forwarded-host" in trusted and "HTTP_X_FORWARDED_HOST" in environ:
        host = _last_hops(environ, "X_FORWARDED_HOST", "X-Forwarded-Host", count)
        untrusted.discard("X_FORWARDED_HOST")
    if "x-forwarded-proto" in trusted:
        proto = _single_value(environ, "X_FORWARDED_PROTO", "X-Forwarded-Proto")
        untrusted.discard("X_FORWARDED_PROTO")
    if "x-forwarded-port" in trusted:
        port = _single_value(environ, "X_FORWARDED_PORT", "X-Forwarded-Port")
        untrusted.discard("X_FORWARDED_PORT")
    if "x-forwarded-by" in trusted:
        # Not used by the server, only let through to the application.
        untrusted.discard("X_FORWARDED_BY")

    forwarded = ""
    if "forwarded" in trusted:
        forwarded = environ.get("HTTP_FORWARDED", "")
        # Forwarded replaces the X-Forwarded-* headers: never believed together.
        untrusted = set(PROXY_HEADERS - {"FORWARDED"})
    if forwarded:
        proxies = _parse_forwarded(forwarded, logger)[-count:]
        environ["HTTP_FORWARDED"] = ",".join(forwarded.split(",")[-count:]).strip()
        # The oldest trusted element that has a value wins: intermediate proxies may
        # rewrite host and proto, the first one saw what the client asked for.
        host = proto = port = ""
        for proxy in reversed(proxies):
            client = proxy.for_ or client
            host = proxy.host or host
            proto = proxy.proto or proto

    if proto:
        proto = proto.lower()
        if proto not in _DEFAULT_PORTS:
            raise MalformedProxyHeader(
                "Forwarded Proto=" if forwarded else "X-Forwarded-Proto",
                "unsupported proto value",
                proto,
            )
        environ["wsgi.url_scheme"] = proto
        port = port or _DEFAULT_PORTS[proto]

    if host:
        environ["HTTP_HOST"] = host
        if ":" in host and not host.endswith("]"):
            # A port in the forwarded host wins over X-Forwarded-Port and the scheme's.
            name, _, port = host.rpartition(":")
            environ["SERVER_NAME"] = name.strip()
        else:
            environ["SERVER_NAME"] = host
            scheme = environ.get("wsgi.url_scheme")
            if port and port != _DEFAULT_PORTS.get(scheme):
                environ["HTTP_HOST"] = f"{host}:{port}"

    if port:
        environ["SERVER_PORT"] = str(port)

    if client:
        client_port = None
        addr = client
        if ":" in client and not client.endswith("]"):
            addr, _, client_port = client.rpartition(":")
        addr = strip_brackets(addr.strip())
        if not addr:
            # (waitress fails with a 500 here)
            raise MalformedProxyHeader(
                "Forwarded" if forwarded else "X-Forwarded-For",
                "empty client address",
                client,
            )
        environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = addr
        if client_port is not None:
            environ["REMOTE_PORT"] = client_port.strip()

    return untrusted


def _last_hops(environ: dict, key: str, header: str, count: int) -> str:
    """The oldest of the last ``count`` hops of a comma-separated X-Forwarded-* header;
    the header is cut down to those hops."""
    raw = environ["HTTP_" + key]
    parts = raw.split(",")
    try:
        hops = [undquote(part.strip()) for part in parts]
        if key == "X_FORWARDED_FOR":
            # An IPv6 address without a port gets the brackets an address with a port
            # has, so that its colons are not taken for a port separator.
            hops = [
                f"[{hop}]" if ":" in hop and "." not in hop and hop[-1] != "]" else hop
                for hop in hops
            ]
        first = hops[-count:][0]
    except Exception as exc:
        raise MalformedProxyHeader(header, str(exc), raw) from None
    environ["HTTP_" + key] = ",".join(parts[-count:]).strip()
    return first


def _single_value(environ: dict, key: str, header: str) -> str:
    """An X-Forwarded-* header that may only carry one value ("" when absent)."""
    raw = environ.get("HTTP_" + key, "")
    try:
        value = undquote(raw)
    except ValueError as exc:
        raise MalformedProxyHeader(header, str(exc), raw) from None
    if "," in value:
        raise MalformedProxyHeader(
            header, "Unspecified behavior for multiple values found in header", raw
        )
    return value


def _parse_forwarded(value: str, logger: Logger) -> list[Forwarded]:
    """The elements of a ``Forwarded`` header (RFC 7239 section 4), lower-cased."""
    elements = []
    try:
        for element in value.split(","):
            fields = {"by": "", "for_": "", "host": "", "proto": ""}
            for pair in element.strip().split(";"):
                pair = pair.lower()
                if not pair:
                    continue
                token, equals, pair_value = pair.partition("=")
                if not equals:
                    raise ValueError('Invalid forwarded-pair missing "="')
                if token.strip() != token:
                    raise ValueError("Token may not be surrounded by whitespace")
                if pair_value.strip() != pair_value:
                    raise ValueError("Value may not be surrounded by whitespace")
                if token in ("by", "host", "proto"):
                    fields[token] = undquote(pair_value)
                elif token == "for":
                    fields["for_"] = undquote(pair_value)
                else:
                    logger.warning("Unknown Forwarded token: %s", token)
            elements.append(Forwarded(**fields))
    except ValueError as exc:
        raise MalformedProxyHeader("Forwarded", str(exc), value) from None
    return elements


def strip_brackets(addr: str) -> str:
    """``addr`` without the brackets around an IPv6 address."""
    if addr.startswith("[") and addr.endswith("]"):
        return addr[1:-1]
    return addr


def clear_untrusted_headers(
    environ: dict,
    untrusted_headers: Iterable[str],
    log_warning: bool = False,
    logger: Logger = logger,
) -> None:
    """Remove the ``untrusted_headers`` (environ keys without ``HTTP_``) from
    ``environ``, logging a warning naming those removed if ``log_warning``."""
    removed = [
        header
        for header in untrusted_headers
        if environ.pop("HTTP_" + header, None) is not None
    ]
    if log_warning and removed:
        names = ", ".join(
            "-".join(part.capitalize() for part in header.split("_"))
            for header in sorted(removed)
        )
        logger.warning(
            "Removed untrusted headers (%s). maitre recommends these be removed "
            "upstream.",
            names,
        )
