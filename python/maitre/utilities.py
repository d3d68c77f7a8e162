"""Loggers and small helpers shared by the package."""

from __future__ import annotations

import logging
import os
import stat

logger = logging.getLogger("maitre")
queue_logger = logging.getLogger("maitre.queue")


def cleanup_unix_socket(path: str) -> None:
    """Remove a stale Unix socket file left by a previous run; anything else at that
    path is left alone."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno != 2:  # ENOENT: nothing to clean up
            raise
    else:
        if stat.S_ISSOCK(st.st_mode):
            try:
                os.remove(path)
            except OSError:
                pass
