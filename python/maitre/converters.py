"""The conversions of the settings table (``maitre.settings_table.SETTINGS``): each
takes a value as given to ``serve(**kw)``, on the command line or in a PasteDeploy ini
file (often a string) and returns the setting's value, or raises ``ValueError``.

They are public through ``maitre.adjustments`` (``maitre.adjustments.asbool`` ...), as
waitress's are through ``waitress.adjustments``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any, Callable

truthy = frozenset(("t", "true", "y", "yes", "on", "1"))


def asbool(s: Any) -> bool:
    """True for ``t``, ``true``, ``y``, ``yes``, ``on``, ``1`` (any case), ``True``;
    False for anything else, ``None`` included."""
    if s is None:
        return False
    if isinstance(s, bool):
        return s
    return str(s).strip().lower() in truthy


def asoctal(s: Any) -> int:
    """An octal string (``"600"``), or an int taken as is (``0o600``)."""
    if isinstance(s, int) and not isinstance(s, bool):
        return s
    return int(s, 8)


def aslist_cronly(value: Any) -> list:
    """A string split into its non-blank lines; other iterables as a list."""
    if isinstance(value, str):
        value = filter(None, [x.strip() for x in value.splitlines()])
    return list(value)


def aslist(value: Any) -> list:
    """Split a string on newlines and spaces; other iterables become lists (their
    string items split on spaces too)."""
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


def str_or_none(s: Any) -> str | None:
    return None if s is None else str(s)


def one_of(*choices: str) -> Callable[[Any], str]:
    """A conversion accepting only ``choices`` (case-insensitive)."""

    def convert(value: Any) -> str:
        v = str(value).strip().lower()
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return v

    return convert


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, except that None and the empty string stay None (unset)."""

    def convert_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return convert(value)

    return convert_optional


def asint(s: Any) -> int:
    if isinstance(s, bool):
        raise ValueError("expected an integer, got a boolean")
    return int(s)


def asseconds(s: Any) -> float:
    """A duration in seconds: an int, a float or their string (``"1.5"``)."""
    if isinstance(s, bool):
        raise ValueError("expected a number of seconds, got a boolean")
    value = float(s)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number of seconds")
    return value


def as_socket_list(sockets: Any) -> list:
    """Listening sockets to serve on (socket activation).

    ``socket.socket`` objects are taken as they are. File descriptor numbers (ints,
    or a string such as ``"3 4"`` from the command line or an ini file) are wrapped
    in socket objects that own them. Anything else is an error (waitress silently
    drops it, which would then serve on no socket at all)."""
    if isinstance(sockets, (str, int)):
        sockets = aslist(str(sockets))
    result = []
    for item in sockets:
        if isinstance(item, socket.socket):
            result.append(item)
            continue
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if not isinstance(item, int) or isinstance(item, bool):
            raise ValueError(
                f"expected socket objects or file descriptor numbers, got {item!r}"
            )
        try:
            result.append(socket.socket(fileno=item))
        except OSError as exc:
            raise ValueError(
                f"file descriptor {item} is not a usable socket ({exc})"
            ) from None
    return result


def as_workers(value: Any) -> int:
    """A number of worker processes, or ``auto``: as many as the CPUs this process
    may run on (its affinity mask, which containers and taskset narrow, not the
    machine's count)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return len(os.sched_getaffinity(0))
    return asint(value)


def as_peer_list(value: Any) -> list:
    """Peers allowed to do something (``proxy_protocol_from``): IP addresses and
    networks (``10.0.0.0/8``, ``2001:db8::/32``), separated by spaces, commas or
    newlines, or a list of them; ``*`` for any IP address, ``unix`` for the
    connections to a Unix socket (which have no address). Each is returned in one
    canonical form (an address as a network of itself: ``127.0.0.1/32``), or raises
    ``ValueError`` naming the entry that is none of these."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    result = []
    for item in value:
        for entry in str(item).replace(",", " ").split():
            word = entry.lower()
            if word in ("*", "unix"):
                result.append(word)
                continue
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address, a network (CIDR), '*' or 'unix'"
                ) from None
            result.append(str(network))
    return result
