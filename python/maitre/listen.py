"""Listen addresses as the settings write them: the ``https://`` mark of a TLS
listener, and ``host:port`` (``[v6]:port``, ``*:port``, a bare host) split for
getaddrinfo. Used by ``adjustments`` (``listen``) and ``server``
(``metrics_listen``)."""

from __future__ import annotations


def is_https(item: str) -> bool:
    return str(item).lower().startswith("https://")


def strip_https(item: str) -> str:
    item = str(item)
    if item.lower().startswith(("https://", "http://")):
        return item.split("://", 1)[1]
    return item


def split_listen(item: str, default_port: int) -> tuple[str | None, str]:
    """``host:port`` (``[v6]:port``, ``*:port``, or a bare host) to the arguments of
    getaddrinfo; a numeric port outside 0-65535 is refused (getaddrinfo would
    silently take it modulo 65536)."""
    if ":" in item:
        host, port = item.rsplit(":", 1)
        if "]" in port:  # "[::1]" with no port: the colon was the address's
            host, port = item, str(default_port)
    else:
        host, port = item, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if port.isdigit() and int(port) > 65535:
        raise ValueError(
            f"Invalid host/port specified in listen: {item!r} "
            "(port must be between 0 and 65535)"
        )
    return (None if host == "*" else host), port
