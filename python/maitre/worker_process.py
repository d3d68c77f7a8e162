"""The child side of the master's fork: how a process becomes a worker, serves, and
exits. The master (``master.py``) forks; from then on the child runs this:

1. ``become_child()``: the default signal dispositions (the master's handlers only
   record signals for its loop), signals unblocked (the master blocks them across
   the fork), a process group of its own, and SIGTERM if the master dies
   (PR_SET_PDEATHSIG) rather than serving on, orphaned. The reload watcher
   (``reloader.py``) becomes a child the same way.
2. The master's own descriptors closed: its selector, its signal wakeup pipe, the
   watcher's pipe and the other workers' pipes.
3. The application loaded, unless the master preloaded it. A worker that cannot
   load it writes ``E`` and its report (``boot_report``) on its pipe and exits with
   ``WORKER_BOOT_ERROR``: the master shows the error once and stops, instead of
   forking again and again.
4. A server built on the sockets the master bound (the inherited copies closed, so
   that they close as soon as the engine stops accepting, not at this process's
   exit), the pipe handed to the engine, and ``run()`` until told to stop.

The engine's I/O loop writes on the pipe one byte at a time
(``BaseWSGIServer.attach_supervisor``): ``R`` once it accepts, ``.`` at most once a
second while its loop turns (a heartbeat: silence means a wedged process), ``M``
once it has served ``max_requests`` requests.

What must hold:

- a child never returns into the master's code: it leaves by ``os._exit``, whatever
  happens, so that it never runs the master's loop or its clean-up (pid file,
  sockets);
- no signal reaches a child before it has dropped the master's handlers;
- a worker's own process group: a Ctrl-C in a terminal (SIGINT to the foreground
  group) reaches the master alone, which stops the workers once, gracefully,
  instead of each worker getting the signal twice (which would mean "at once");
- the pipe is non-blocking: a slow master never stalls a worker's loop.
"""

from __future__ import annotations

import copy
import errno
import os
import signal
import socket
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from . import server as _server
from .adjustments import Adjustments

if TYPE_CHECKING:
    from .worker_stats import WorkerStats

#: exit status of a worker that could not load the application
WORKER_BOOT_ERROR = 3

#: between the traceback and the one-line message of a boot report
_REPORT_SEPARATOR = "\0"


class BootError(Exception):
    """The workers cannot load the application: ``traceback`` (the user's frames,
    or the whole traceback when the loader gave no report of its own, possibly
    empty) and the one-line ``message``. ``str()`` is both, for a log."""

    def __init__(self, traceback: str, message: str) -> None:
        super().__init__(message)
        self.traceback = traceback
        self.message = message

    def __str__(self) -> str:
        return "\n".join(t for t in (self.traceback, self.message) if t)


def boot_report(exc: BaseException) -> str:
    """What a worker tells the master when loading the application raised
    ``exc``: the loader's own report when the exception carries one (a
    ``boot_report`` attribute holding the traceback to show and the message, e.g.
    the command line's, which shows the user's frames only), else the traceback."""
    report = getattr(exc, "boot_report", None)
    if isinstance(report, tuple) and len(report) == 2:
        return f"{report[0]}{_REPORT_SEPARATOR}{report[1]}"
    return traceback.format_exc()


def read_boot_report(data: bytes) -> BootError:
    """The master's side of ``boot_report``."""
    text = data.decode("utf-8", "replace")
    tb, sep, message = text.partition(_REPORT_SEPARATOR)
    if not sep:
        return BootError(text.rstrip(), "the application cannot be loaded")
    return BootError(tb.rstrip(), message.strip())


#: the signals the master handles (the others keep their default action): blocked
#: across its forks, back to their default action in each child
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


def become_child() -> None:
    """In a child of the master's fork: the default signal dispositions, signals
    unblocked, its own process group and a signal if the master dies."""
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    os.setpgid(0, 0)
    _set_parent_death_signal()


def _set_parent_death_signal() -> None:
    """PR_SET_PDEATHSIG(SIGTERM): stop gracefully if the master dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_worker(
    *,
    pipe: int,
    master_fds: list[int],
    app: Any,
    load_app: Callable[[], Any] | None,
    adj: Adjustments,
    sockets: list[socket.socket],
    stats: WorkerStats | None,
    slot: int | None,
    max_requests: int,
) -> NoReturn:
    """The child side of a fork: serve, and exit (never returns).

    ``pipe`` is the write end to the master; ``master_fds`` the master's descriptors
    this child inherited and does not need; ``app`` the preloaded application, or
    None for ``load_app()`` to import it here; ``slot`` this worker's block of the
    shared ``stats`` (metrics_listen), if any."""
    code = 0
    try:
        become_child()
        # Closing the master's epoll descriptor here leaves its registrations be.
        for fd in master_fds:
            os.close(fd)
        code = _serve(pipe, app, load_app, adj, sockets, stats, slot, max_requests)
    except KeyboardInterrupt:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _serve(
    pipe: int,
    app: Any,
    load_app: Callable[[], Any] | None,
    adj: Adjustments,
    sockets: list[socket.socket],
    stats: WorkerStats | None,
    slot: int | None,
    max_requests: int,
) -> int:
    """Load the application, serve until told to stop; the exit status."""
    if app is None:
        try:
            assert load_app is not None  # the master requires one or the other
            app = load_app()
        except BaseException as exc:
            # Told to the master, which shows it once for all the workers.
            _write_all(pipe, b"E" + boot_report(exc).encode())
            return WORKER_BOOT_ERROR
    if stats is not None:
        # The master serves metrics_listen (and holds its port): not this one.
        adj = copy.copy(adj)
        adj.metrics_listen = None
        stats.close_in_child()
    server = _server.server_class(sockets)(app, adj, sockets)
    server.owns_unix_socket_file = False
    if stats is not None and slot is not None:
        server.use_stats_slot(stats.map, slot)
    # The engine serves duplicates of the descriptors: closing the inherited
    # ones lets the listening sockets close as soon as the engine stops
    # accepting, not when this process exits.
    for s in sockets:
        s.close()
    os.set_blocking(pipe, False)  # a slow master must never stall the loop
    server.attach_supervisor(pipe, max_requests)  # the engine writes on its own dup
    os.close(pipe)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                time.sleep(0.01)
                continue
            return
