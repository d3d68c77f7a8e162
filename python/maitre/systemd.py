"""systemd's notification protocol (sd_notify(3)) for ``Type=notify`` and
``Type=notify-reload`` units: ``READY=1`` once serving, ``RELOADING=1`` with the
monotonic time when a reload starts, ``STOPPING=1`` when stopping, and ``STATUS=``
lines for ``systemctl status``. The single process and the master both send them.

What must hold:

- without ``NOTIFY_SOCKET`` nothing is sent and nothing fails;
- a notification that cannot be delivered is logged, never raised: the server
  serves on whether or not systemd listens;
- it imports nothing of maitre but the logger: the single process uses it without
  the master.

The sockets systemd passes (socket activation, ``LISTEN_FDS``) are taken where the
other listening sockets are bound: ``server.with_activated_sockets``.
"""

from __future__ import annotations

import os
import socket
import time

from .utilities import logger


def sd_notify(message: str) -> None:
    """Send ``message`` to systemd's notification socket, if ``NOTIFY_SOCKET`` names
    one (sd_notify(3)); nothing otherwise. A failure is logged, not raised."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        logger.warning("sd_notify to %s failed: %s", address, exc)


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it (Type=notify-reload)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
