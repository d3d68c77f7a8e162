"""maitre: a production WSGI server with its HTTP engine in Rust, a drop-in
replacement for waitress.

    from maitre import serve
    serve(app, listen="*:8080")
"""

from __future__ import annotations

import logging
from typing import Any

from .server import create_server
from .utilities import logger

__all__ = ["create_server", "profile", "serve", "serve_paste"]


def _package_version() -> str:
    # One source: the version in pyproject.toml, as installed in the metadata.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maitre")
    except PackageNotFoundError:  # imported from a source tree that is not installed
        return "0+unknown"


__version__ = _package_version()


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
    # In the main thread, run() stops gracefully on SIGTERM/SIGINT (at once on a
    # second one or on SIGQUIT) and returns.
    try:
        if _profile:
            profile("server.run()", globals(), locals(), (), False)
        else:
            server.run()
    except KeyboardInterrupt:  # Ctrl-C before run() had its handlers in place
        logger.info("Shutting down")
    finally:
        # A ``_server`` factory's object (waitress's test shim) may have no close().
        close = getattr(server, "close", None)
        if close is not None:
            close()


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
