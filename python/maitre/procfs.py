"""What the master reads of its workers from ``/proc`` (Linux): their resident memory,
for ``max_worker_memory``. Elsewhere there is no ``/proc``: the readers say None, and
the master warns once that the setting is not enforced rather than fail to start."""

from __future__ import annotations

import os


def worker_rss(pid: int) -> int | None:
    """Resident bytes of process ``pid`` (``/proc/PID/statm``), or None where
    there is no /proc or the process has gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def memory_readable() -> bool:
    """Whether this system lets the master read its workers' memory."""
    return worker_rss(os.getpid()) is not None
