"""The counters of every worker of a master, in one shared map, and the master's
metrics listener over them (``metrics_listen`` with ``workers`` > 1). With
``request_timeout``, the map is there without a listener too: the master reads in it
which workers have every thread stuck.

The master maps ``slots`` blocks of ``_maitre.STATS_BLOCK_SIZE`` bytes before it forks
(anonymous and shared: each worker counts into its slot, the master reads them all).
A slot belongs to one live worker at a time: taken at the fork (lowest free first),
given back when the master reaps that worker. There are enough for twice the
workers plus headroom for SIGTTIN, since a rolling reload or a ``max_requests``
recycle runs the old and the new worker side by side for a while; a worker started
when none is free serves uncounted (logged).

The ``worker`` label of a series is the slot index. A dead worker's slot is not
rendered (no stale gauges); the next worker of the slot starts its counters from
zero and carries ``maitre_process_id`` of its own: for Prometheus a counter reset
in that series, which ``rate()`` and ``increase()`` handle. ``restarts`` goes from a
replaced worker (died, wedged, or recycled at ``max_requests``) to its replacement,
one more, whichever slot the replacement takes: ``maitre_worker_restarts_total``;
so does why the last one was replaced (the status page's "last restart").

The listener is a thread of the master (Rust only: it never takes the GIL nor a lock
a worker uses), so the master forks beside it; a worker closes the listening socket
it inherits (``close_in_child``) so that only the master holds the port.
"""

from __future__ import annotations

import heapq
import mmap
import os
from typing import Any

from . import _maitre
from .utilities import logger

#: slots beyond twice the workers, for SIGTTIN (and its overlap in a reload)
HEADROOM = 8


class WorkerStats:
    def __init__(self, workers: int) -> None:
        self.slots = 2 * (workers + HEADROOM)
        self.map = mmap.mmap(-1, self.slots * _maitre.STATS_BLOCK_SIZE)
        self.free = list(range(self.slots))  # a heap: lowest first
        self.listener: Any = None
        self.socket: Any = None
        self.warned = False

    def take(self, restarts: int = 0) -> int | None:
        """A free slot for a worker about to be forked; ``restarts``: how often the
        worker it replaces was replaced before, or None if it replaces none."""
        if not self.free:
            if not self.warned:
                logger.warning(
                    "%d workers or more: the metrics count only %d of them",
                    self.slots,
                    self.slots,
                )
                self.warned = True
            return None
        slot = heapq.heappop(self.free)
        _maitre.release_stats_slot(self.map, slot, restarts)
        return slot

    def count_restart(self, slot: int, reason: str) -> int:
        """The worker forked into ``slot`` replaces one: one restart more, and why
        (a name of ``_maitre.RESTART_REASONS``, whose codes the engine defines; an
        unknown name is recorded as none)."""
        code = _maitre.RESTART_REASONS.get(reason, 0)
        return _maitre.count_restart(self.map, slot, code)

    def queue_full(self, slot: int) -> bool:
        """Whether the worker of ``slot`` turns requests away: ``max_queued_requests``
        wait for a thread there, by its own I/O loop's count."""
        return _maitre.queue_full(self.map, slot)

    def all_stuck(self, slot: int | None) -> bool:
        """Whether every thread of the worker counting in ``slot`` is stuck in an
        application call that ``request_timeout`` interrupted (blocked in C code)."""
        if slot is None:
            return False
        figures = _maitre.threads_stuck(self.map, slot)
        if figures is None:
            return False
        stuck, threads = figures
        return threads > 0 and stuck >= threads

    def give_back(self, slot: int | None) -> None:
        """The worker of ``slot`` has been reaped: not rendered any more."""
        if slot is None:
            return
        _maitre.release_stats_slot(self.map, slot)
        heapq.heappush(self.free, slot)

    def serve(self, adj: Any) -> tuple[str, int] | None:
        """Binds ``metrics_listen`` and serves every slot on it, from a thread of the
        master (never through a worker). Returns the address bound; None without
        ``metrics_listen`` (the map serves ``request_timeout`` alone)."""
        from .server import _bind_metrics

        if not adj.metrics_listen:
            return None

        self.socket = _bind_metrics(adj)
        self.listener = _maitre.MetricsServer(
            self.socket.fileno(), self.map, self.slots
        )
        return self.socket.getsockname()[:2]

    def close_in_child(self) -> None:
        """In a worker after the fork: its copies of the metrics socket go, so that
        the port closes with the master. The listener's thread did not come along:
        the object is kept (its descriptor closed), never stopped or dropped."""
        if self.listener is not None:
            os.close(self.listener.fileno())
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.socket is not None:
            self.socket.close()
            self.socket = None
