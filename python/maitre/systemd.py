"""systemd's notification protocol (sd_notify(3)) for ``Type=notify`` and
``Type=notify-reload`` units: ``READY=1`` once serving, ``RELOADING=1`` with the
monotonic time when a reload starts, ``STOPPING=1`` when stopping, and ``STATUS=``
lines for ``systemctl status``. The single process and the master both send them.

With ``WatchdogSec=`` (``WATCHDOG_USEC``), ``Watchdog`` sends ``WATCHDOG=1`` at half
the interval while the heartbeats it is given are fresh: the master's loop gives it
its workers' (``master.py``); an engine's supervisor pipe carries the heartbeats of
a single process's I/O loop the same way.

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
from collections.abc import Iterable

from .utilities import logger

#: a heartbeat (an engine's loop sends at most one a second) counts as fresh for the
#: watchdog's interval, but never less than this many seconds
WATCHDOG_MIN_FRESH = 2.0


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


class Watchdog:
    """systemd's watchdog (``WatchdogSec=``, sd_watchdog_enabled(3)): ``WATCHDOG=1``
    at half the interval, called from the loop being watched, while at least one of
    the heartbeats (monotonic times) given is fresh."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.fresh = max(interval, WATCHDOG_MIN_FRESH)
        self.next_ping = 0.0
        self.silent = False  # logged once per silence, not per turn

    @classmethod
    def from_environ(cls) -> Watchdog | None:
        """The watchdog systemd asks for, or None: ``WATCHDOG_USEC`` set, under
        ``NOTIFY_SOCKET``, and ``WATCHDOG_PID`` naming this process or unset."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        if not os.environ.get("NOTIFY_SOCKET") or not usec.isdigit() or not int(usec):
            return None
        pid = os.environ.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            return None
        return cls(int(usec) / 1e6)

    def tick(self, beats: Iterable[float]) -> None:
        """Ping if it is time and one of ``beats`` is fresh."""
        now = time.monotonic()
        if now < self.next_ping:
            return
        if not any(now - beat < self.fresh for beat in beats):
            if not self.silent:
                logger.error(
                    "No heartbeat in %.1fs: no WATCHDOG=1 to systemd",
                    self.fresh,
                )
                self.silent = True
            return
        if self.silent:
            logger.info("Heartbeats again: WATCHDOG=1 to systemd")
            self.silent = False
        sd_notify("WATCHDOG=1")
        self.next_ping = now + self.interval / 2
