"""The pid file (``pid_file``): the id of the serving process (the single process, or
the master), written at start and removed at exit.

What must hold:

- a reader never sees a half-written file: it is written aside, then renamed over;
- a file naming another process that is alive refuses the start; a stale one, whose
  process is gone, is overwritten;
- at exit the file is removed only if it still names this process (a successor may
  have written its own since);
- it imports nothing of maitre: the single process uses it without the master.
"""

from __future__ import annotations

import os


class PidFile:
    """``pid_file``: written by ``create()`` at start, removed by ``remove()`` at exit
    (if it is still ours). No path: both do nothing."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def create(self) -> None:
        if not self.path:
            return
        try:
            with open(self.path) as f:
                other = int(f.read().strip() or 0)
        except (OSError, ValueError):
            other = 0
        if other > 0 and other != os.getpid() and _alive(other):
            raise ValueError(
                f"pid_file: {self.path} names process {other}, which is running"
            )
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, self.path)  # never a half-written file to read

    def remove(self) -> None:
        if not self.path:
            return
        try:
            with open(self.path) as f:
                if f.read().strip() != str(os.getpid()):
                    return
            os.unlink(self.path)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
