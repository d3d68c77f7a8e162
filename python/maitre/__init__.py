"""maitre: a production WSGI server with its HTTP engine in Rust, a drop-in
replacement for waitress.

    from maitre import serve
    serve(app, listen="*:8080")
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from .server import create_server
from .utilities import logger

__all__ = ["create_server", "profile", "serve", "serve_paste"]


def serve(app: Any, **kw: Any) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM; takes waitress's settings."""
    _server = kw.pop("_server", create_server)  # test shim, as in waitress
    _quiet = kw.pop("_quiet", False)
    _profile = kw.pop("_profile", False)  # test shim, as in waitress
    if not _quiet:
        logging.basicConfig()  # idempotent if logging is already set up
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    server = _server(app, **kw)
    if not _quiet:
        server.print_listen("Serving on http://{}:{}")
        _print_summary(server)
    previous = _stop_on_sigterm()
    previous_usr1 = _reopen_logs_on_sigusr1(server)
    try:
        if _profile:
            profile("server.run()", globals(), locals(), (), False)
        else:
            server.run()
    except KeyboardInterrupt:
        logger.info("Shutting down")
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_usr1 is not None:
            signal.signal(signal.SIGUSR1, previous_usr1)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("maitre")
    except Exception:  # not installed as a distribution (e.g. run from a checkout)
        return "unknown"


def _print_summary(server: Any) -> None:
    """After the "Serving on" lines (waitress's): version, processes, threads, and
    where the metrics are."""
    adj = getattr(server, "adj", None)
    if adj is None:  # a test shim standing in for the server
        return
    logger.info(
        "maitre %s: 1 process, %d threads, access log %s",
        _version(),
        adj.threads,
        adj.access_log or "off",
    )
    address = getattr(server, "metrics_address", None)
    if address:
        logger.info("Metrics on http://%s:%s/metrics", *address)


def _reopen_logs_on_sigusr1(server: Any) -> Any:
    """SIGUSR1 reopens the access log (log rotation), when serving from the main
    thread and nobody installed a handler of their own."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if not hasattr(signal, "SIGUSR1") or not hasattr(server, "reopen_logs"):
        return None
    if signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL:
        return None

    def reopen(signum: int, frame: Any) -> None:
        try:
            server.reopen_logs()
        except OSError as exc:
            logger.error("SIGUSR1: %s", exc)

    return signal.signal(signal.SIGUSR1, reopen)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop ``serve()`` cleanly, like Ctrl-C (main thread only, and only
    if nobody installed a handler of their own)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def serve_paste(app: Any, global_conf: Any, **kw: Any) -> int:
    """PasteDeploy server runner: ``[server:main] use = egg:maitre#main`` (entry point
    ``main`` of the group ``paste.server_runner``). The ini's values are strings,
    converted by the same setting definitions as ``serve()``'s keywords;
    ``global_conf`` is not used."""
    serve(app, **kw)
    return 0


def profile(
    cmd: str, globals: dict, locals: dict, sort_order: Any, callers: bool
) -> None:  # pragma: no cover - waitress's profiling helper
    """Run ``cmd`` under the profiler and print the statistics when it returns."""
    import cProfile
    import os
    import pstats
    import tempfile

    fd, fn = tempfile.mkstemp()
    os.close(fd)
    try:
        cProfile.runctx(cmd, globals, locals, fn)
        stats = pstats.Stats(fn)
        stats.strip_dirs()
        stats.sort_stats(*(sort_order or ("cumulative", "calls", "time")))
        if callers:
            stats.print_callers(0.3)
        else:
            stats.print_stats(0.3)
    finally:
        os.remove(fn)
