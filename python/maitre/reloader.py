"""``reload``: a process of its own that watches the application's ``.py`` files, and
the master's end of the pipe it writes to. After each batch of changes (debounced)
the watcher writes a byte; the master then reloads as on SIGHUP, with the settings
it has: a new generation of workers, the application imported afresh.

What must hold:

- the watcher is a process, not a thread of the master: the master stays
  single-threaded for its forks;
- it becomes a child the way a worker does (``worker_process.become_child``): its
  own process group, and SIGTERM if the master dies;
- it holds none of the listening sockets: it closes its copies at once;
- the master's end of the pipe is non-blocking and registered in the master's
  selector; the master starts a new watcher if one dies (unless it is stopping),
  and kills it at exit.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import traceback
from typing import NoReturn

from .utilities import logger
from .worker_process import HANDLED_SIGNALS, become_child


def check_watchfiles() -> None:
    """ValueError, saying what to install, if the watcher cannot run here."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ValueError(
            "reload needs the watchfiles package: pip install 'maitre[reload]'"
        ) from None


class Reloader:
    """The watcher process (``pid``, None when there is none) and the read end of its
    pipe (``pipe``, -1 once closed), registered in the master's ``selector``."""

    def __init__(self, dirs: list[str], selector: selectors.BaseSelector) -> None:
        self.dirs = dirs or [os.getcwd()]
        self.selector = selector
        self.pid: int | None = None
        self.pipe = -1

    def start(self, sockets: list[socket.socket]) -> None:
        """Fork the watcher; ``sockets`` are the master's listening sockets, which the
        watcher closes."""
        read_end, write_end = os.pipe()
        # Blocked across the fork, as for a worker: none reaches the child before
        # it has dropped the master's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _run_watcher(self.dirs, read_end, write_end, sockets)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.pid, self.pipe = pid, read_end
        self.selector.register(read_end, selectors.EVENT_READ)
        logger.info("Watching %s for changes", ", ".join(self.dirs))

    def changed(self) -> bool:
        """Read what the watcher wrote: True if files changed. At the end of the pipe
        (the watcher is gone) the pipe is closed."""
        try:
            data = os.read(self.pipe, 4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._close_pipe()
            return False
        return True

    def exited(self) -> None:
        """The master reaped the watcher."""
        self.pid = None
        self._close_pipe()

    def stop(self) -> None:
        """At the master's exit: the watcher killed and reaped."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = None

    def _close_pipe(self) -> None:
        if self.pipe >= 0:
            self.selector.unregister(self.pipe)
            os.close(self.pipe)
            self.pipe = -1


def _run_watcher(
    dirs: list[str], read_end: int, write_end: int, sockets: list[socket.socket]
) -> NoReturn:
    """The child side of the watcher's fork: watch, and exit (never returns)."""
    code = 0
    try:
        become_child()
        os.close(read_end)
        for s in sockets:
            s.close()
        _watch(dirs, write_end)
    except KeyboardInterrupt:
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _watch(dirs: list[str], pipe: int) -> None:
    """The watcher process: a byte to ``pipe`` after each batch of changed .py
    files (watchfiles, debounced), until the master goes."""
    import watchfiles

    for _changes in watchfiles.watch(
        *dirs,
        watch_filter=watchfiles.PythonFilter(),
        debounce=100,
        step=20,
        raise_interrupt=False,
    ):
        try:
            os.write(pipe, b"C")
        except BrokenPipeError:
            return
