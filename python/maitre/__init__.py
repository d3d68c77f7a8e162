"""maitre: a production WSGI server with its HTTP engine in Rust, a drop-in
replacement for waitress.

    from maitre import serve
    serve(app, listen="*:8080")
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ._maitre import RequestAbandoned, RequestTimeout
from .adjustments import SETTINGS_BY_NAME, as_workers, asbool
from .config import configure_logging, create_pid_file
from .pidfile import PidFile
from .server import create_server
from .systemd import Watchdog, sd_notify
from .utilities import log_summary, logger

__all__ = [
    "RequestAbandoned",
    "RequestTimeout",
    "create_server",
    "profile",
    "serve",
    "serve_paste",
]


def _package_version() -> str:
    # One source: the version in Cargo.toml, which maturin writes into the
    # installed metadata (tests/test_version.py checks that they agree).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maitre")
    except PackageNotFoundError:  # imported from a source tree that is not installed
        return "0+unknown"


__version__ = _package_version()


def serve(app: Any, **kw: Any) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM; takes waitress's settings (the
    keyword arguments only: unlike the command line, ``serve()`` reads no
    ``MAITRE_*`` environment variable and no file, so that a call means the same
    wherever it runs)."""
    _server = kw.pop("_server", create_server)  # test shim, as in waitress
    _quiet = kw.pop("_quiet", False)
    _profile = kw.pop("_profile", False)  # test shim, as in waitress
    _reread = kw.pop("_reread", None)  # how a master re-reads the settings (HUP)
    if not _quiet:
        configure_logging(
            *(_converted(kw, name) for name in ("log_level", "log_config"))
        )
    if as_workers(kw.get("workers", 1)) > 1 or asbool(kw.get("reload")):
        # An application object can only be preloaded: forked with the master.
        from .master import Master

        code = Master(kw, app=app, reread=_reread).run()
        if code:
            raise SystemExit(code)
        return
    server = _server(app, **kw)
    # A ``_server`` factory's object (waitress's test shim) may have no adj.
    pid_file = PidFile(getattr(getattr(server, "adj", None), "pid_file", None))
    try:
        create_pid_file(pid_file)
    except BaseException:
        server.close()
        raise
    if not _quiet:
        server.print_listen("Serving on http://{}:{}")
        _print_summary(server)
    # In the main thread, run() stops gracefully on SIGTERM/SIGINT (at once on a
    # second one or on SIGQUIT) and returns; SIGUSR1 reopens the access log.
    _notify_when_ready(server)
    try:
        if _profile:
            profile("server.run()", globals(), locals(), (), False)
        else:
            server.run()
    except KeyboardInterrupt:  # Ctrl-C before run() had its handlers in place
        logger.info("Shutting down")
    finally:
        sd_notify("STOPPING=1")
        # A ``_server`` factory's object (waitress's test shim) may have no close().
        close = getattr(server, "close", None)
        if close is not None:
            close()
        pid_file.remove()


def _converted(kw: dict, name: str) -> Any:
    """The value of setting ``name`` in ``kw`` (else its default), converted as
    ``Adjustments`` converts it, with its error message."""
    setting = SETTINGS_BY_NAME[name]
    value = kw.get(name, setting.default)
    try:
        return setting.convert(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid value for {name}: {value!r} ({e})") from None


def _print_summary(server: Any, processes: str = "1 process") -> None:
    """After the "Serving on" lines (waitress's): version, processes, threads, and
    where the metrics are."""
    adj = getattr(server, "adj", None)
    if adj is None:  # a test shim standing in for the server
        return
    log_summary(adj, processes, getattr(server, "metrics_address", None))


def _notify_when_ready(server: Any) -> None:
    """Under systemd (NOTIFY_SOCKET), READY=1 once the engine's loop accepts: told
    by its supervisor pipe, read in a thread that also drains its heartbeats. With
    ``WatchdogSec=``, each heartbeat of the I/O loop may send ``WATCHDOG=1``: if the
    loop stops turning, its heartbeats stop and so do the pings."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    watchdog = Watchdog.from_environ()
    if watchdog is not None:
        logger.info(
            "systemd watchdog: WATCHDOG=1 every %.1fs while the I/O loop beats",
            watchdog.interval / 2,
        )
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    server.attach_supervisor(write_end, 0)  # the engine writes on its own duplicate
    os.close(write_end)  # so that the reader sees the end when the engine's closes

    def wait_ready() -> None:
        told = False
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                data = pipe.read(4096)
                if not data:
                    return
                if b"R" in data and not told:
                    told = True
                    sd_notify("READY=1\nSTATUS=serving with 1 process")
                if watchdog is not None and told:
                    watchdog.tick([time.monotonic()])

    threading.Thread(target=wait_ready, daemon=True, name="maitre-notify").start()


def serve_paste(app: Any, global_conf: Any, **kw: Any) -> int:
    """PasteDeploy server runner: ``[server:main] use = egg:maitre#main`` (entry point
    ``main`` of the group ``paste.server_runner``). The ini's values are strings,
    converted by the same setting definitions as ``serve()``'s keywords. With a
    master process (``workers`` > 1), SIGHUP reads the same ``[server:...]``
    section of the ini file again; the application, loaded by PasteDeploy before
    the server, stays the one in memory."""
    serve(app, _reread=_paste_rereader(global_conf, kw), **kw)
    return 0


def _paste_rereader(global_conf: Any, kw: dict) -> Any:
    """A function reading the settings again from the ini file they came from
    (``__file__`` in ``global_conf``): the ``[server:NAME]`` section whose values
    are ``kw``. None when they came from elsewhere."""
    path = (global_conf or {}).get("__file__")
    if not path:
        return None
    try:
        import configparser

        from paste.deploy.loadwsgi import SERVER, loadcontext

        parser = configparser.RawConfigParser()
        parser.read(path)
        names = [
            section.split(":", 1)[1].strip()
            for section in parser.sections()
            if section.startswith("server:")
        ]
        uri = "config:" + os.path.abspath(path)
        mine = [n for n in names if loadcontext(SERVER, uri, name=n).local_conf == kw]
    except Exception:  # an ini PasteDeploy read once but cannot read again
        return None
    if len(mine) != 1:
        return None

    def reread() -> tuple:
        return loadcontext(SERVER, uri, name=mine[0]).local_conf, None

    return reread


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
