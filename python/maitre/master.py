"""The master process: with ``workers`` > 1 (or ``reload``), one process binds the
listening sockets once, forks the workers that serve them, and supervises them. It
never serves a request itself (gunicorn's arbiter is the model). The child side of
its forks is ``worker_process.py``; the ``reload`` watcher is ``reloader.py``; it
tells systemd how it is doing through ``systemd.py`` and writes ``pidfile.py``'s file.

States of the master (``Master.state``, a ``State``):

- STARTING: sockets bound, the first workers booting; READY=1 to systemd once every
  one of them has said it accepts.
- RUNNING: serving. A worker that dies is replaced (the reason logged); one silent
  for ``worker_timeout`` is killed and replaced; one that reached ``max_requests``,
  ``max_worker_memory`` or ``max_worker_lifetime``, or has every thread stuck, is
  recycled: replaced by a new one, stopped once the new one accepts (``_recycle``).
- RELOADING: after SIGHUP (or a changed file with ``reload``): a new generation of
  workers with the application imported afresh; the old ones are stopped only once
  every new one accepts, so that at no instant is nobody accepting. If the new ones
  cannot import the application, they are given up and the old ones keep serving.
- with ``shutdown_delay``, SIGTERM/SIGINT first make the metrics listener's
  ``/readyz`` say 503 at once, and SIGINT tells each worker to go on serving with
  every keep-alive connection closing after its next response; the stop below
  (SIGTERM to every worker) follows when the delay is over, or at a second signal.
- STOPPING: after SIGTERM/SIGINT: every worker stops gracefully (stops accepting,
  finishes what it has read, within ``shutdown_timeout``); a second signal, or
  SIGQUIT, stops them at once. The master exits 0 when the last one has gone.

What must hold:

- the master acts from one loop in one thread: signal handlers only note the
  signal, and it forks from that loop alone (no thread of its holds a lock a child
  would need: the watcher is a process, the metrics listener takes no Python lock);
- at no instant, save at a full stop, is nobody accepting: outgoing workers (an old
  generation, one recycled at ``max_requests``) stop only once their successors
  all accept;
- a worker that cannot load the application at start stops the master (status 2,
  as a single process's usage error) instead of being forked again and again; one
  that cannot after a reload leaves the old workers serving;
- every worker is reaped, and killed (SIGKILL) if it is still there
  ``KILL_MARGIN`` after its stop should have ended.

Under systemd with ``WatchdogSec=`` (``WATCHDOG_USEC``), the master sends
``WATCHDOG=1`` at half the interval from its loop, and only while at least one
worker's heartbeat is fresh (``systemd.Watchdog``): a master whose loop is stuck,
or whose workers are all wedged, falls silent and systemd acts. A single wedged
worker among others is ``worker_timeout``'s to replace, not a reason to restart
the service.

Each worker talks to the master over a pipe, one byte at a time (see
``worker_process.py``): ``R`` once it accepts, ``.`` as a heartbeat (silence means a
wedged process), ``M`` at ``max_requests``, ``E`` and a traceback if it cannot load
the application.

Sockets are shared: the master binds them once and every worker accepts from the
same ones, so a connection in the backlog belongs to no worker and none is lost when
one exits; the engine of each worker balances them (``src/engine/balance.rs``). At a
full stop the master closes its copies as soon as it has told the workers to stop, so
the sockets close the moment the last worker stops accepting, and no connection is
left in a backlog nobody reads (gunicorn #3397). docs/processes.md says why this
shape and not one SO_REUSEPORT socket per worker.

With ``metrics_listen``, the workers count into slots of a map the master shares
with them and the master alone serves the metrics of them all (``worker_stats``).
Each worker opens the access log itself, with O_APPEND: whole lines from every
worker, never interleaved; SIGUSR1 to the master reaches every worker.
"""

from __future__ import annotations

import enum
import os
import random
import selectors
import signal
import socket
import time
from typing import Any, Callable

from . import _maitre
from . import server as _server
from .adjustments import MAX_WORKERS, Adjustments
from .config import StartError, configure_logging, create_pid_file
from .pidfile import PidFile
from .procfs import memory_readable, worker_rss
from .reloader import Reloader, check_watchfiles
from .systemd import Watchdog, monotonic_usec, sd_notify
from .utilities import log_summary, logger
from .worker_process import (
    HANDLED_SIGNALS,
    WORKER_BOOT_ERROR,
    read_boot_report,
    run_worker,
)
from .worker_stats import WorkerStats

#: seconds a stopping worker gets beyond ``shutdown_timeout`` before SIGKILL
KILL_MARGIN = 5.0
#: seconds since a worker's last heartbeat within which it counts as live (/livez)
HEARTBEAT_FRESH = 10.0

#: seconds between two readings of the workers' memory (``max_worker_memory``)
MEMORY_CHECK_INTERVAL = 1.0

#: the most a worker's ``max_worker_lifetime`` is lengthened at random, as a fraction
#: of it, so that workers started together are not all replaced together
LIFETIME_JITTER = 0.1


class State(enum.Enum):
    """The master's states, in the order of its life (see the module's docstring).
    RELOADING goes back to RUNNING; STOPPING is the last."""

    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"


class Worker:
    """The master's view of one worker process."""

    def __init__(
        self, pid: int, pipe: int, generation: int, slot: int | None, restarts: int
    ) -> None:
        self.pid = pid
        self.pipe = pipe  # read end; -1 once closed
        self.generation = generation
        self.slot = slot  # of the shared stats (metrics_listen), or None
        #: times the workers this one follows were replaced (died, wedged, recycled)
        self.restarts = restarts
        self.booted = time.monotonic()
        self.last_beat = time.monotonic()  # boot counts as activity
        self.ready = False
        #: reached max_requests, max_worker_memory or max_worker_lifetime: replaced as
        #: soon as a successor accepts
        self.recycle = False
        #: monotonic time after which it is recycled (max_worker_lifetime), or None
        self.retire_at: float | None = None
        #: sent SIGTERM (graceful stop) at this monotonic time, or None
        self.stopping_since: float | None = None
        self.error = b""  # what an E message carried

    def __repr__(self) -> str:
        return f"worker {self.pid}"


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


class Master:
    """Binds the sockets, runs the workers, handles the signals; ``run()`` returns
    the exit status.

    ``load_app()`` imports the application (in each worker, or once here with
    ``preload_app``; ``app`` given means already loaded). ``reread()``, on SIGHUP,
    returns the settings and loader to use from then on, read again from where they
    came from (the command line, an ini file); None keeps the current ones.
    """

    def __init__(
        self,
        kw: dict,
        load_app: Callable[[], Any] | None = None,
        app: Any = None,
        reread: Callable[[], tuple[dict, Callable[[], Any] | None]] | None = None,
        watch_dirs: list[str] | None = None,
    ) -> None:
        if app is None and load_app is None:
            raise ValueError("an application or a way to load one is needed")
        self.kw = _server.with_activated_sockets(kw)
        self.adj = Adjustments(**self.kw)
        if "sockets" in self.kw:
            # The socket objects now owning the descriptors, for any later
            # Adjustments (a reload) to take as they are, not wrap again.
            self.kw["sockets"] = self.adj.sockets
        self.load_app = load_app
        self.app = app
        self.reread = reread
        self.watch_dirs = watch_dirs or []
        if self.adj.reload:
            if app is not None or load_app is None:
                raise ValueError(
                    "reload needs the application as MODULE:OBJECT "
                    "(maitre-serve --reload), not an application object"
                )
            check_watchfiles()
        self.state = State.STARTING
        self.workers: dict[int, Worker] = {}
        #: the generation the workers counted towards ``target`` belong to. Numbers
        #: are never reused: a failed reload goes back to ``before_reload``'s, and
        #: the workers of the failed one, still draining, keep a number of their own.
        self.generation = 1
        self.generations = 1  # the highest number given
        self.target = self.adj.workers
        self.sockets: list[socket.socket] = []
        self.pid_file = PidFile(self.adj.pid_file)
        self.exit_code = 0
        self.signals: list[int] = []
        self.selector = selectors.DefaultSelector()
        self.wakeup_r = self.wakeup_w = -1
        self._old_wakeup = -1
        self._old_handlers: dict[int, Any] = {}
        self.reloader: Reloader | None = None  # with ``reload``
        self.quick = False  # stopping at once (SIGQUIT, second TERM/INT)
        self.boot_failures = 0
        self.spawn_not_before = 0.0
        self.reload_started = 0.0
        self.pending_reload: tuple[str, bool] | None = None
        self.before_reload: tuple = (
            self.kw,
            self.adj,
            self.load_app,
            self.target,
            self.generation,
        )
        self.stats: WorkerStats | None = None  # metrics_listen, request_timeout
        #: monotonic end of shutdown_delay after a first stop signal, or None
        self.delay_until: float | None = None
        #: (``restarts``, why) of the workers replaced whose replacements are not
        #: forked yet; why: a name of ``_maitre.RESTART_REASONS``
        self.replaced: list[tuple[int, str]] = []
        #: why the start failed, raised by ``run()`` once the workers are gone
        self.start_failure: Exception | None = None
        self._metrics_address: Any = None
        self.memory_checked = 0.0
        self.watchdog = Watchdog.from_environ()

    # ------------------------------------------------------------------ life

    def run(self) -> int:
        configure_logging(self.adj.log_level, self.adj.log_config)
        create_pid_file(self.pid_file)
        try:
            # Bad TLS files stop the start here, naming the setting, rather than each
            # worker's boot.
            _maitre.check_tls_files(_server._engine_settings(self.adj))
            self.sockets = _server.bind_sockets(self.adj)
            if self.adj.preload_app and self.app is None:
                self.app = self.load_app()  # errors are the caller's to show
            self._install_signals()
            if self.adj.reload:
                self.reloader = Reloader(self.watch_dirs, self.selector)
                self.reloader.start(self.sockets)
            if self.adj.metrics_listen or self.adj.request_timeout:
                self.stats = WorkerStats(self.target)
                self._metrics_address = self.stats.serve(self.adj)
            if self.adj.max_worker_memory and not memory_readable():
                logger.warning(
                    "max_worker_memory needs /proc (Linux): workers are not "
                    "replaced for their memory here"
                )
            if self.watchdog is not None:
                logger.info(
                    "systemd watchdog: WATCHDOG=1 every %.1fs while a worker beats",
                    self.watchdog.interval / 2,
                )
            logger.info(
                "Master %d starting %d worker(s)%s",
                os.getpid(),
                self.target,
                " (preloaded app)" if self.app is not None else "",
            )
            self._loop()
        finally:
            self._close_sockets()
            if self.stats is not None:
                self.stats.close()
            if self.reloader is not None:
                self.reloader.stop()
            self.pid_file.remove()
            self._restore_signals()
        if self.start_failure is not None:
            raise self.start_failure
        return self.exit_code

    def _announce(self) -> None:
        """The "Serving on" lines and the summary: once the first workers accept,
        not before (an application that cannot be imported serves nothing)."""
        tls = _server._tls_listeners(self.adj, self.sockets)
        for i, (host, port) in enumerate(
            _server.BaseWSGIServer._sockname(s) for s in self.sockets
        ):
            if ":" in str(host):
                host = f"[{host}]"
            scheme = "https" if i in tls else "http"
            logger.info("Serving on %s://%s:%s", scheme, host, port)
        log_summary(self.adj, f"{self.target} workers", self._metrics_address)

    def _loop(self) -> None:
        while not (self.state is State.STOPPING and not self.workers):
            self._maintain()
            for key, _ in self.selector.select(self._timeout()):
                fd = key.fd
                if fd == self.wakeup_r:
                    _drain(fd)
                elif self.reloader is not None and fd == self.reloader.pipe:
                    if self.reloader.changed():
                        self._reload("a file changed", reread=False)
                else:
                    self._on_worker_pipe(key.data)
            self._handle_signals()
            if self.delay_until is not None and time.monotonic() >= self.delay_until:
                self.delay_until = None
                self._stop(quick=False, why="shutdown_delay over")
            self._reap()
            self._check_timeouts()
            self._check_recycling()
            # From READY=1 on, as systemd enforces it: a worker importing a slow
            # application at start is no cause for alarm.
            if self.watchdog is not None and self.state is not State.STARTING:
                self.watchdog.tick(w.last_beat for w in self.workers.values())
            self._publish_health()

    def _publish_health(self) -> None:
        """What ``/livez`` and ``/readyz`` of the metrics listener answer: live while
        a worker's heartbeat is fresh, ready while one of them accepts, with room in
        its queue (``max_queued_requests``, read from its stats slot), and no stop
        (nor its ``shutdown_delay``) has begun."""
        stats = self.stats
        listener = stats.listener if stats is not None else None
        if stats is None or listener is None:
            return
        now = time.monotonic()
        serving = [w for w in self.workers.values() if w.stopping_since is None]
        live = any(now - w.last_beat < HEARTBEAT_FRESH for w in self.workers.values())
        ready = (
            live
            and self.state is not State.STOPPING
            and self.delay_until is None
            and any(
                w.ready and (w.slot is None or not stats.queue_full(w.slot))
                for w in serving
            )
        )
        listener.set_health(live, ready)

    def _timeout(self) -> float:
        # Heartbeat checks need no precision finer than a fraction of a second (nor
        # does the watchdog: its pings go at half its interval, a second or more).
        return 0.25

    # ------------------------------------------------------------- signals

    def _install_signals(self) -> None:
        self.wakeup_r, self.wakeup_w = os.pipe()
        for fd in (self.wakeup_r, self.wakeup_w):
            os.set_blocking(fd, False)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ)
        self._old_wakeup = signal.set_wakeup_fd(
            self.wakeup_w, warn_on_full_buffer=False
        )
        self._old_handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in HANDLED_SIGNALS
        }

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        if self.wakeup_w >= 0:
            signal.set_wakeup_fd(self._old_wakeup)
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            self.wakeup_r = self.wakeup_w = -1

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only noted here: acted upon in the loop, never inside a handler.
        self.signals.append(signum)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGCHLD:
                continue  # _reap() runs on every turn
            if sig in (signal.SIGTERM, signal.SIGINT):
                name = signal.Signals(sig).name
                if self.delay_until is not None:
                    self.delay_until = None
                    self._stop(quick=False, why=name + " again (delay ended)")
                elif self.state is State.STOPPING:
                    self._stop(quick=True, why=signal.Signals(sig).name + " again")
                elif self.adj.shutdown_delay > 0:
                    # Not ready at once; the workers serve on until the delay ends,
                    # closing their keep-alive connections (SIGINT: see
                    # BaseWSGIServer._on_stop_signal); SIGTERM then ends it.
                    self.delay_until = time.monotonic() + self.adj.shutdown_delay
                    logger.info(
                        "%s: not ready; stopping in %s s (shutdown_delay)",
                        name,
                        self.adj.shutdown_delay,
                    )
                    self._publish_health()
                    for w in self.workers.values():
                        # (One still booting has no handler yet: SIGTERM later.)
                        if w.stopping_since is None and w.ready:
                            _kill(w.pid, signal.SIGINT)
                else:
                    self._stop(quick=False, why=name)
            elif sig == signal.SIGQUIT:
                self._stop(quick=True, why="SIGQUIT")
            elif sig == signal.SIGHUP:
                self._reload("SIGHUP", reread=True)
            elif sig == signal.SIGTTIN:
                if self.target >= MAX_WORKERS:
                    logger.warning("SIGTTIN: already at the cap of %d", MAX_WORKERS)
                elif self.state is not State.STOPPING:
                    self.target += 1
                    logger.info("SIGTTIN: %d worker(s)", self.target)
                    sd_notify(f"STATUS=serving with {self.target} worker(s)")
            elif sig == signal.SIGTTOU:
                self._remove_one()
            elif sig == signal.SIGUSR1:
                # Each worker reopens its own log files.
                self._signal_all(signal.SIGUSR1)

    def _remove_one(self) -> None:
        if self.state is State.STOPPING or self.target <= 1:
            logger.info("SIGTTOU: keeping the last worker")
            return
        self.target -= 1
        logger.info("SIGTTOU: %d worker(s)", self.target)
        sd_notify(f"STATUS=serving with {self.target} worker(s)")
        current = self._current()
        if len(current) > self.target:
            # The newest goes: the older ones have warm caches.
            self._retire(max(current, key=lambda w: w.booted))

    # -------------------------------------------------------------- workers

    def _current(self) -> list[Worker]:
        """The workers that count towards ``target``: this generation's, not being
        replaced or stopped."""
        return [
            w
            for w in self.workers.values()
            if w.generation == self.generation
            and not w.recycle
            and w.stopping_since is None
        ]

    def _maintain(self) -> None:
        """Start the workers missing, and stop the outgoing ones whose successors
        all accept."""
        if self.state is State.STOPPING:
            return
        current = self._current()
        if len(current) < self.target and time.monotonic() >= self.spawn_not_before:
            for _ in range(self.target - len(current)):
                self._spawn()
            current = self._current()
        ready = sum(1 for w in current if w.ready)
        if ready < min(self.target, len(current)) or ready == 0:
            return
        outgoing = [
            w
            for w in self.workers.values()
            if (w.generation != self.generation or w.recycle)
            and w.stopping_since is None
        ]
        for w in outgoing:
            self._retire(w)
        if self.state is State.STARTING:
            self.state = State.RUNNING
            self._announce()
            logger.info("Ready with %d worker(s)", ready)
            sd_notify(f"READY=1\nSTATUS=serving with {ready} worker(s)")
        elif self.state is State.RELOADING:
            self.state = State.RUNNING
            logger.info(
                "Reloaded: %d new worker(s) ready in %.2fs",
                ready,
                time.monotonic() - self.reload_started,
            )
            sd_notify(f"READY=1\nSTATUS=serving with {ready} worker(s)")
            self._reload_pending()

    def _reload_pending(self) -> None:
        if self.pending_reload is not None:
            why, reread = self.pending_reload
            self.pending_reload = None
            self._reload(why, reread)

    def _spawn(self) -> None:
        if self.state is State.STOPPING or time.monotonic() < self.spawn_not_before:
            return  # after a fork failure
        max_requests = self.adj.max_requests
        if max_requests > 0 and self.adj.max_requests_jitter > 0:
            max_requests += random.randint(0, self.adj.max_requests_jitter)
        restarts, reason = 0, ""
        if self.replaced:
            before, reason = self.replaced.pop(0)
            restarts = before + 1
        slot = None
        if self.stats is not None:
            slot = self.stats.take(max(restarts - 1, 0))
            if slot is not None and restarts:
                restarts = self.stats.count_restart(slot, reason)
        master_fds = self._descriptors()
        read_end, write_end = os.pipe()
        # Signals are blocked across fork so that none reaches the child before it
        # has dropped the master's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(read_end)
                os.close(write_end)
                if self.stats is not None:
                    self.stats.give_back(slot)
                if restarts:
                    self.replaced.insert(0, (restarts - 1, reason))
                self._on_fork_error(exc)
                return
            if pid == 0:
                os.close(read_end)
                run_worker(
                    pipe=write_end,
                    master_fds=master_fds,
                    app=self.app,
                    load_app=self.load_app,
                    adj=self.adj,
                    sockets=self.sockets,
                    stats=self.stats,
                    slot=slot,
                    max_requests=max_requests,
                )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        os.close(write_end)
        os.set_blocking(read_end, False)
        worker = Worker(pid, read_end, self.generation, slot, restarts)
        if self.adj.max_worker_lifetime > 0:
            lifetime = self.adj.max_worker_lifetime
            worker.retire_at = worker.booted + lifetime * (
                1 + random.uniform(0, LIFETIME_JITTER)
            )
        self.workers[pid] = worker
        self.selector.register(read_end, selectors.EVENT_READ, worker)
        logger.info("Booting worker %d", pid)

    def _on_fork_error(self, exc: OSError) -> None:
        what = f"cannot start a worker process: fork failed: {exc.strerror or exc}"
        if self.state is State.STARTING:
            self.start_failure = StartError(what)
            self.exit_code = 1
            self._stop(quick=True, why="a worker process cannot be started")
            return
        logger.error("%s (next attempt in 1s)", what)
        self.spawn_not_before = time.monotonic() + 1.0

    def _descriptors(self) -> list[int]:
        """The master's own descriptors, which a worker it forks closes: its
        selector, its signal wakeup pipe, the watcher's pipe and the workers'."""
        fds = [self.selector.fileno(), self.wakeup_r, self.wakeup_w]
        if self.reloader is not None:
            fds.append(self.reloader.pipe)
        fds.extend(w.pipe for w in self.workers.values())
        return [fd for fd in fds if fd >= 0]

    def _retire(self, worker: Worker, sig: int = signal.SIGTERM) -> None:
        worker.stopping_since = time.monotonic()
        _kill(worker.pid, sig)

    def _signal_all(self, sig: int) -> None:
        for w in self.workers.values():
            _kill(w.pid, sig)

    def _on_worker_pipe(self, worker: Worker) -> bool:
        """Read what ``worker`` wrote; False once there is nothing more for now."""
        try:
            data = os.read(worker.pipe, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._close_pipe(worker)
            return False
        if worker.error or data.startswith(b"E"):
            worker.error += data
            return True
        worker.last_beat = time.monotonic()
        if b"R" in data and not worker.ready:
            worker.ready = True
            self.boot_failures = 0
            logger.info("Worker %d accepting", worker.pid)
            if self.delay_until is not None and worker.stopping_since is None:
                _kill(worker.pid, signal.SIGINT)  # shutdown_delay under way
        if b"M" in data:
            self._recycle(worker, "reached max_requests", "max_requests")
        return True

    def _recycle(self, worker: Worker, why: str, reason: str) -> None:
        """Replace ``worker``, new one first: ``_maintain`` forks its successor (it no
        longer counts towards ``target``) and stops it once every current worker
        accepts. The path of max_requests, max_worker_memory, max_worker_lifetime
        and stuck threads alike (``reason``: which, for the status page)."""
        if worker.recycle or worker.stopping_since is not None:
            return
        if self.state is State.STOPPING:
            return
        worker.recycle = True
        self.replaced.append((worker.restarts, reason))
        logger.info("Worker %d %s: replacing it", worker.pid, why)

    def _check_recycling(self) -> None:
        """Recycle the workers past ``max_worker_lifetime``, ``max_worker_memory``
        or with every thread stuck (``request_timeout``). Only ready ones: one still
        booting has nothing to hand over yet, nor would a successor be better placed."""
        if self.state is State.STOPPING:
            return
        now = time.monotonic()
        for w in self._current():
            if w.ready and w.retire_at is not None and now >= w.retire_at:
                self._recycle(
                    w,
                    f"ran {now - w.booted:.0f}s > max_worker_lifetime "
                    f"{self.adj.max_worker_lifetime}",
                    "max_worker_lifetime",
                )
            elif w.ready and self.stats is not None and self.stats.all_stuck(w.slot):
                self._recycle(w, "has every thread stuck past request_timeout", "stuck")
        limit = self.adj.max_worker_memory
        if not limit or now - self.memory_checked < MEMORY_CHECK_INTERVAL:
            return
        self.memory_checked = now
        for w in self._current():
            if not w.ready:
                continue
            rss = worker_rss(w.pid)
            if rss is not None and rss > limit * 1024 * 1024:
                self._recycle(
                    w,
                    f"uses {rss // (1024 * 1024)} MiB > max_worker_memory {limit}",
                    "max_worker_memory",
                )

    def _close_pipe(self, worker: Worker) -> None:
        if worker.pipe >= 0:
            self.selector.unregister(worker.pipe)
            os.close(worker.pipe)
            worker.pipe = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.reloader is not None and pid == self.reloader.pid:
                self._on_watcher_exit(self.reloader, status)
                continue
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            # What it wrote before dying is still in the pipe (and the pipe may
            # stay open if it left a child of its own: read what is there only).
            while worker.pipe >= 0 and self._on_worker_pipe(worker):
                pass
            self._close_pipe(worker)
            if self.stats is not None:
                self.stats.give_back(worker.slot)
            self._on_exit(worker, status)

    def _on_exit(self, worker: Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None
        if code == WORKER_BOOT_ERROR and not worker.ready:
            self._on_boot_error(worker)
            return
        expected = worker.stopping_since is not None or self.state is State.STOPPING
        if expected:
            logger.info("Worker %d %s", worker.pid, _describe_status(status))
        else:
            self.replaced.append((worker.restarts, "exited"))
            logger.error(
                "Worker %d %s; starting a replacement",
                worker.pid,
                _describe_status(status),
            )

    def _on_boot_error(self, worker: Worker) -> None:
        if worker.stopping_since is not None or self.state is State.STOPPING:
            return  # of a generation already given up, or stopping anyway
        report = read_boot_report(worker.error[1:])
        text = str(report)
        old = [
            w
            for w in self.workers.values()
            if w.generation != worker.generation and w.stopping_since is None
        ]
        if self.state is State.RELOADING and worker.generation == self.generation:
            # The new code does not load: keep the old workers.
            logger.error(
                "Reload failed, the new workers cannot load the application; "
                "the old ones keep serving:\n%s",
                text,
            )
            # Gracefully: a new worker that did load may already have accepted
            # connections (a worker still importing has none; SIGTERM ends it).
            for w in list(self.workers.values()):
                if w.generation == self.generation and w.stopping_since is None:
                    self._retire(w)
            self._restore_before_reload()
            self.state = State.RUNNING
            sd_notify("READY=1\nSTATUS=reload failed; serving with the old code")
            self._reload_pending()
            return
        if self.state is State.STARTING or not old and not self._current():
            # Shown once, by run()'s caller once the workers are gone (the other
            # workers' errors come after the stop): the same error, and the same
            # status, as a single process's.
            self.start_failure = report
            self.exit_code = 2
            self._stop(quick=True, why="the application cannot be loaded")
            return
        # A replacement failed on code changed on disk while others still serve:
        # retry later rather than fork in a loop, or take the server down. The next
        # attempt replaces the same worker: one restart more.
        self.replaced.append((worker.restarts, "boot_error"))
        self.boot_failures += 1
        delay = min(30.0, 2.0 ** (self.boot_failures - 1))
        self.spawn_not_before = time.monotonic() + delay
        logger.error(
            "Worker %d cannot load the application (next attempt in %.0fs):\n%s",
            worker.pid,
            delay,
            text,
        )

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        timeout = self.adj.worker_timeout
        for w in list(self.workers.values()):
            if w.stopping_since is not None:
                limit = self._shutdown_timeout() + KILL_MARGIN
                if self.quick:
                    limit = KILL_MARGIN
                if now - w.stopping_since > limit:
                    logger.warning(
                        "Worker %d still running %.0fs after being told to stop: "
                        "killing it",
                        w.pid,
                        now - w.stopping_since,
                    )
                    _kill(w.pid, signal.SIGKILL)
                    w.stopping_since = now  # again later if SIGKILL did not do it
            elif timeout and now - w.last_beat > timeout:
                logger.error(
                    "Worker %d silent for %.1fs (worker_timeout=%d): killing it",
                    w.pid,
                    now - w.last_beat,
                    timeout,
                )
                _kill(w.pid, signal.SIGKILL)
                # Out of the count now: its replacement starts at once.
                w.stopping_since = now
                self.replaced.append((w.restarts, "worker_timeout"))

    def _shutdown_timeout(self) -> float:
        return float(self.adj.shutdown_timeout)

    # ------------------------------------------------------- reload and stop

    def _reload(self, why: str, reread: bool) -> None:
        if self.state is State.STOPPING:
            return
        if self.state is State.RELOADING:
            # Done once this one ends: a file saved twice in a row must not leave
            # workers running the first version.
            logger.info("%s: reloading again after the reload under way", why)
            self.pending_reload = (why, reread or bool(self.pending_reload))
            return
        # What a failed reload goes back to.
        self.before_reload = (
            self.kw,
            self.adj,
            self.load_app,
            self.target,
            self.generation,
        )
        if reread and self.reread is not None:
            try:
                kw, load_app = self.reread()
                kw = dict(kw)
                if "sockets" in self.kw:
                    kw["sockets"] = self.kw["sockets"]
                adj = Adjustments(**kw)
            except Exception as exc:
                logger.error("%s: settings not reloaded: %s", why, exc)
                return
            if _addresses(adj) != _addresses(self.adj):
                logger.warning(
                    "%s: the listening addresses cannot change without a restart",
                    why,
                )
            if adj.metrics_listen != self.adj.metrics_listen:
                # The master serves it; new workers must not bind it themselves.
                logger.warning(
                    "%s: metrics_listen cannot change without a restart (stays %s)",
                    why,
                    self.adj.metrics_listen or "off",
                )
                adj.metrics_listen = self.adj.metrics_listen
            self.kw, self.adj = kw, adj
            if load_app is not None:  # None: the application stays the loaded one
                self.load_app = load_app
            self.target = adj.workers
        try:
            # New workers read the TLS files again: unusable ones keep the old workers
            # (and so the old certificate), as a single process keeps its old one.
            _maitre.check_tls_files(_server._engine_settings(self.adj))
        except ValueError as exc:
            logger.error("%s: not reloaded, the TLS files are not usable: %s", why, exc)
            self._restore_before_reload()
            return
        logger.info("%s: reloading, starting %d new worker(s)", why, self.target)
        self.state = State.RELOADING
        self.reload_started = time.monotonic()
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}\nSTATUS=reloading")
        self.generations += 1
        self.generation = self.generations
        self.spawn_not_before = 0.0

    def _restore_before_reload(self) -> None:
        """Back to the settings, application and workers from before the reload."""
        self.kw, self.adj, self.load_app, self.target, self.generation = (
            self.before_reload
        )

    def _stop(self, quick: bool, why: str) -> None:
        first = self.state is not State.STOPPING
        self.state = State.STOPPING
        self.quick = self.quick or quick
        if first:
            logger.info(
                "%s: stopping %d worker(s)%s",
                why,
                len(self.workers),
                " at once" if quick else " gracefully",
            )
            sd_notify("STOPPING=1")
        elif quick:
            logger.info("%s: stopping at once", why)
        sig = signal.SIGQUIT if quick else signal.SIGTERM
        for w in self.workers.values():
            w.stopping_since = time.monotonic()
            _kill(w.pid, sig)
        # The workers keep their copies until they have drained the backlog.
        self._close_sockets()

    def _close_sockets(self) -> None:
        for s in self.sockets:
            if s.family == socket.AF_UNIX and self.adj.unix_socket:
                try:
                    os.unlink(self.adj.unix_socket)
                except OSError:
                    pass
            s.close()
        self.sockets = []

    # ------------------------------------------------------------- --reload

    def _on_watcher_exit(self, watcher: Reloader, status: int) -> None:
        watcher.exited()
        if self.state is not State.STOPPING:
            logger.error("The file watcher %s; restarting it", _describe_status(status))
            watcher.start(self.sockets)


def _addresses(adj: Adjustments) -> tuple:
    return (adj.unix_socket, tuple(map(str, adj.listen)))


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
