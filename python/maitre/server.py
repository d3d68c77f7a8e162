"""Servers: the listening sockets (bound here, in Python, where address handling is
simplest) and the Rust engine that serves them.

``create_server`` binds at once but starts no thread: threads start in ``run()``, so a
process can create a server, fork, and run it in the child.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
import weakref
from typing import Any

from . import _maitre
from .adjustments import ENGINE_SETTINGS, Adjustments
from .proxy_headers import proxy_headers_middleware
from .utilities import cleanup_unix_socket, logger

#: the ``access_log = logging`` destination: one INFO record per request
access_logger = logging.getLogger("maitre.access")


def create_server(
    application: Any,
    map: Any = None,  # noqa: A002 - waitress's signature
    _start: bool = True,
    _sock: socket.socket | None = None,
    _dispatcher: Any = None,
    _stats_slot: tuple | None = None,
    **kw: Any,
) -> BaseWSGIServer:
    """Create a server for ``application`` with waitress's settings (``**kw``).

    Returns a single-socket server, or a ``MultiSocketServer`` when several addresses
    are listened on. ``_stats_slot=(buffer, index)`` (for a master that forks
    workers) makes the engine count into slot ``index`` of a shared writable buffer
    of ``index + 1`` or more ``_maitre.STATS_BLOCK_SIZE``-byte slots (e.g.
    ``mmap.mmap(-1, n * _maitre.STATS_BLOCK_SIZE)`` made before the fork), which
    ``_maitre.MetricsServer`` or ``_maitre.render_metrics`` then render together."""
    if application is None:
        raise ValueError(
            'The "app" passed to ``create_server`` was ``None``.  You forgot '
            "to return a WSGI app within your application."
        )
    adj = Adjustments(**with_activated_sockets(kw))
    sockets = [_sock] if _sock is not None else bind_sockets(adj)
    server = server_class(sockets)(application, adj, sockets)
    if _stats_slot is not None:
        server.use_stats_slot(*_stats_slot)
    return server


def bind_sockets(adj: Adjustments) -> list[socket.socket]:
    """The listening sockets ``adj`` asks for, bound and listening: a Unix socket,
    the ``sockets`` given (listen() called again for the backlog), or one TCP socket
    per resolved address. Used by ``create_server`` and by the master process (which
    binds once for all its workers)."""
    if adj.unix_socket:
        return [_bind_unix(adj)]
    if adj.sockets:
        for s in adj.sockets:
            s.listen(adj.backlog)
        return list(adj.sockets)
    return _bind_tcp(adj)


def server_class(sockets: list[socket.socket]) -> type[BaseWSGIServer]:
    """The server class for already listening ``sockets`` (waitress's names)."""
    if len(sockets) > 1:
        return MultiSocketServer
    return UnixWSGIServer if sockets[0].family == socket.AF_UNIX else TcpWSGIServer


#: first descriptor passed by systemd's socket activation (sd_listen_fds(3))
SD_LISTEN_FDS_START = 3


def with_activated_sockets(kw: dict) -> dict:
    """``kw`` with the sockets passed by socket activation (LISTEN_FDS naming this
    process in LISTEN_PID) as ``sockets``, when no address setting was given. The
    variables are removed from the environment once taken, as sd_listen_fds(1)
    does, so that no child process (a worker, something the app runs) takes them
    for its own."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return kw
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count < 1:
        return kw
    given = [n for n in ("host", "port", "listen", "unix_socket", "sockets") if n in kw]
    if given:
        # Binding elsewhere as well would leave the passed sockets unserved.
        raise ValueError(
            f"{' and '.join(given)} may not be set when sockets are passed by "
            "socket activation (LISTEN_FDS)"
        )
    fds = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)
    return dict(kw, sockets=list(fds))


def _bind_tcp(adj: Adjustments) -> list[socket.socket]:
    bound: list[socket.socket] = []
    try:
        for family, socktype, proto, sockaddr in adj.listen:
            sock = socket.socket(family, socktype, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # '*' binds each family on its own socket.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            host = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
            _bind(sock, sockaddr, f"{host}:{sockaddr[1]}")
            sock.listen(adj.backlog)
    except BaseException:
        for s in bound:
            s.close()
        raise
    return bound


def _bind(sock: socket.socket, address: Any, shown: str) -> None:
    """bind(), with the address in the error (a start-up error should say which)."""
    try:
        sock.bind(address)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, shown) from exc


def _bind_metrics(adj: Adjustments) -> socket.socket:
    from .listen import split_listen

    host, port = split_listen(adj.metrics_listen, 0)
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ValueError(f"metrics_listen {adj.metrics_listen!r}: {exc}") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(sock, sockaddr, f"metrics_listen {adj.metrics_listen}")
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix(adj: Adjustments) -> socket.socket:
    cleanup_unix_socket(adj.unix_socket)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind(sock, adj.unix_socket, adj.unix_socket)
        os.chmod(adj.unix_socket, adj.unix_socket_perms)
        sock.listen(adj.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _environ_template(adj: Adjustments, port: Any, tls: bool = False) -> dict:
    """The environ entries that are the same for every request on one socket."""
    return {
        "SERVER_NAME": adj.server_name,
        "SERVER_PORT": str(port),
        "SERVER_SOFTWARE": adj.ident or "",
        "SCRIPT_NAME": adj.url_prefix,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if tls else adj.url_scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        # PEP 3333: true when the application may run in several processes at once.
        "wsgi.multiprocess": getattr(adj, "workers", 1) > 1,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": _maitre.FileWrapper,
        "wsgi.input_terminated": True,
    }


def _engine_settings(adj: Adjustments) -> dict:
    """What the engine is given: the value of every setting the table marks for the
    engine (``Setting.engine``), and the values derived from other settings."""
    settings = {name: getattr(adj, name) for name in ENGINE_SETTINGS}
    settings["access_logger"] = access_logger if adj.access_log == "logging" else None
    # With no trusted proxy, proxy headers can only be spoofed: the engine drops them
    # (unless they are to be logged: then the proxy headers middleware does it).
    settings["clear_proxy_headers"] = bool(
        adj.clear_untrusted_proxy_headers and not _needs_proxy_middleware(adj)
    )
    return settings


def _needs_proxy_middleware(adj: Adjustments) -> bool:
    """Whether the app is wrapped in proxy_headers_middleware, as waitress does it."""
    return bool(
        adj.trusted_proxy
        or (adj.clear_untrusted_proxy_headers and adj.log_untrusted_proxy_headers)
    )


def _tls_listeners(adj: Adjustments, sockets: list[socket.socket]) -> set[int]:
    """Indices of the sockets that serve TLS."""
    listen_tls = getattr(adj, "listen_tls", [])
    if len(listen_tls) == len(sockets) and adj.listen:
        return {i for i, tls in enumerate(listen_tls) if tls}
    # A unix socket, given sockets, or a server built around other sockets: TLS on
    # all of them when certificates are set.
    return set(range(len(sockets))) if adj.ssl_certificate else set()


#: Servers inside run(). A program that exits with one still running (in a daemon
#: thread) has it closed before the interpreter finalizes: its threads must be gone by
#: then.
_running: weakref.WeakSet = weakref.WeakSet()

#: Servers whose stop abandoned requests still running in the application.
_abandoning: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_running_servers() -> None:
    for server in list(_running):
        server.close()


def threads_left_running() -> int:
    """How many worker threads of stopped servers are still in the application, their
    requests abandoned by the stop (shutdown_timeout, or an immediate stop). They end
    when the application returns; a program that must exit before may ``os._exit``
    (the command line does), as the interpreter cannot stop them."""
    return sum(s._engine.threads_left_running() for s in list(_abandoning))


#: signal -> what a running server does with it (see BaseWSGIServer.run)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_OTHER_SIGNALS = {
    signal.SIGHUP: "reload_certificates",
    signal.SIGUSR1: "reopen_logs",
    signal.SIGTTIN: "",  # a worker more: only a master has workers
    signal.SIGTTOU: "",  # a worker fewer
}


class BaseWSGIServer:
    """Serves one WSGI application on one or more listening sockets."""

    #: whether closing the server removes its ``unix_socket`` file; a worker process
    #: serves the master's socket, which only the master removes
    owns_unix_socket_file = True

    def __init__(
        self, application: Any, adj: Adjustments, sockets: list[socket.socket]
    ) -> None:
        if _needs_proxy_middleware(adj):
            # Here, not in create_server: a server class built directly gets it too.
            application = proxy_headers_middleware(
                application,
                trusted_proxy=adj.trusted_proxy,
                trusted_proxy_count=adj.trusted_proxy_count,
                trusted_proxy_headers=adj.trusted_proxy_headers,
                clear_untrusted=adj.clear_untrusted_proxy_headers,
                log_untrusted=adj.log_untrusted_proxy_headers,
                logger=logger,
            )
        self.application = application
        self.adj = adj
        self.sockets = sockets
        self.effective_listen = [self._sockname(s) for s in sockets]
        self.effective_host, self.effective_port = self.effective_listen[0]
        self.server_name = adj.server_name
        self.tls_listeners = _tls_listeners(adj, sockets)
        listeners = [
            (s.fileno(), _environ_template(adj, port, i in self.tls_listeners))
            for i, (s, (_, port)) in enumerate(zip(sockets, self.effective_listen))
        ]
        settings = _engine_settings(adj)
        #: the metrics listener's socket (``metrics_listen``), served by the engine
        self.metrics_socket = None
        settings["tls_listeners"] = sorted(self.tls_listeners)
        settings["metrics_fd"] = None
        if adj.metrics_listen:
            self.metrics_socket = _bind_metrics(adj)
            settings["metrics_fd"] = self.metrics_socket.fileno()
        try:
            # Reads and checks the certificate files: a bad one fails here, at start.
            self._engine = _maitre.Engine(application, listeners, settings, logger)
        except BaseException:
            if self.metrics_socket is not None:
                self.metrics_socket.close()
            raise

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) the metrics listener is bound to, or None."""
        if self.metrics_socket is None:
            return None
        return self.metrics_socket.getsockname()[:2]

    def stats(self) -> dict:
        """The server's counters (CherryPy's ``stats`` keys where they fit: Accepts,
        Queue, Threads, Requests, Bytes Read/Written, Work Time, Run time, per-thread
        figures under "Worker Threads"), plus open connections, requests by status
        class, body spills and the latency histogram. Reading never stops the
        server."""
        return self._engine.stats()

    def use_stats_slot(self, buffer: Any, index: int) -> None:
        """Count into slot ``index`` of ``buffer`` (a writable shared map of
        ``_maitre.STATS_BLOCK_SIZE``-byte slots, e.g. ``mmap.mmap(-1, n * size)`` made
        by a master before forking) instead of this process's own memory. For a worker
        process after the fork, before ``run()``. The master then serves the metrics
        of every slot (``_maitre.MetricsServer(sock.fileno(), buffer, n)``), so this
        server stops serving ``metrics_listen`` itself. When it replaces a worker,
        the master counts it with ``_maitre.count_restart(buffer, index)`` (kept by
        the slot across engines: ``maitre_worker_restarts_total``)."""
        self._engine.use_stats_slot(buffer, index)

    def reopen_logs(self) -> None:
        """Open the access log file again (after logrotate renamed it); lines
        logged before go to the old file. SIGUSR1 calls this."""
        self._engine.reopen_logs()

    @staticmethod
    def _sockname(sock: socket.socket) -> tuple[str, Any]:
        if sock.family == socket.AF_UNIX:
            return ("unix", sock.getsockname())
        name = sock.getsockname()
        return (name[0], name[1])

    def attach_supervisor(self, fd: int, max_requests: int = 0) -> None:
        """Report to a master process on the pipe ``fd`` (call before ``run()``; the
        descriptor is duplicated, the caller keeps its own). The I/O loop writes one
        byte at a time, never blocking: ``R`` once it accepts, ``.`` at most once a
        second while it turns (silence means a wedged process), ``M`` once
        ``max_requests`` requests have been served (0: never); it keeps serving
        after ``M`` until it is stopped."""
        self._engine.attach_supervisor(fd, max_requests)
        # Stop signals come from the master (see _on_stop_signal).
        self._supervised = True

    def reload_certificates(self) -> bool:
        """Read the TLS certificate and key files again (called on SIGHUP while
        ``run()`` runs in the main thread). New connections get the new certificate;
        open ones are not disturbed. If the new files are not usable, the old
        certificate stays, the reason is logged, and False is returned (also without
        TLS, where there is nothing to read)."""
        try:
            reloaded = bool(self._engine.reload_certificates())
        except ValueError as exc:
            logger.error("TLS certificates not reloaded, keeping the old ones: %s", exc)
            return False
        if reloaded:
            logger.info("TLS certificates reloaded: new connections get them")
        return reloaded

    def run(self) -> None:
        """Serve until ``close()`` is called (from another thread) or a signal.

        In the main thread, signal handlers are installed for the time of the call
        (the previous ones are restored after): SIGTERM and SIGINT stop gracefully
        (see ``close()``), a second one or SIGQUIT at once; SIGHUP calls
        ``reload_certificates()`` and SIGUSR1 ``reopen_logs()``."""
        self._ran = True
        _running.add(self)
        previous = self._install_signal_handlers()
        try:
            self._engine.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            _running.discard(self)
            if self._engine.threads_left_running():
                _abandoning.add(self)
            self._close_sockets()

    def close(self, timeout: float | None = None) -> None:
        """Stop serving, gracefully: stop accepting at once (new connections are
        refused), close idle keep-alive connections, let the requests already
        received finish (their responses say ``Connection: close``); requests still
        running after ``timeout`` seconds (default: the ``shutdown_timeout`` setting)
        are abandoned. ``timeout=0`` stops at once, abandoning the responses not yet
        produced. Waits until ``run()`` has returned (from another thread than
        ``run()``'s). A server that never ran releases its sockets at once."""
        self._stop_listening()
        self._engine.close(timeout)
        if not getattr(self, "_ran", False):
            self._close_sockets()

    def _install_signal_handlers(self) -> dict:
        """Our handlers, in the main thread only (signal handlers can only be set
        there, and only run there); returns the ones they replace."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        self._stop_signals = 0
        previous = {}
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, self._on_stop_signal)
        for signum in _OTHER_SIGNALS:
            previous[signum] = signal.signal(signum, self._on_other_signal)
        return previous

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # Runs in the main thread, inside run(): nothing here may block or raise.
        # With shutdown_delay, the first signal starts the delay (not ready, still
        # serving), the second ends it, the next one stops at once. A worker delays
        # only when its master says so (SIGINT): a SIGTERM from the master is the
        # end of a delay the master waited out, or a reload's stop.
        self._stop_signals += 1
        if signum == signal.SIGQUIT:
            self._engine.close(0)
        elif self._stop_signals == 1:
            supervised = getattr(self, "_supervised", False)
            delay = self.adj.shutdown_delay
            if supervised and signum != signal.SIGINT:
                delay = 0
            self._delayed = bool(delay)
            # Our copies only: the engine accepts on its own until the drain.
            self._stop_listening()
            self._engine.close(self.adj.shutdown_timeout, delay)
        elif self._stop_signals == 2 and getattr(self, "_delayed", False):
            self._engine.close(self.adj.shutdown_timeout)  # ends the delay
        else:
            self._engine.close(0)

    def _on_other_signal(self, signum: int, frame: Any) -> None:
        # Every signal gets one line saying what it did (or why it did nothing).
        name = _OTHER_SIGNALS[signum]
        signame = signal.Signals(signum).name
        if not name:
            logger.info(
                "%s ignored: adding or removing worker processes needs --workers "
                "(a master with workers); this is a single process",
                signame,
            )
            return
        try:
            getattr(self, name)()  # reload_certificates() says how it went
        except Exception as exc:  # a failed reload must not stop the server
            logger.error("%s (on %s) failed: %s", name, signame, exc)
            return
        if name == "reload_certificates" and not self.tls_listeners:
            logger.info(
                "%s: no TLS certificates to reload; reloading the application "
                "needs --workers (a master with workers)",
                signame,
            )
        elif name == "reopen_logs":
            what = self.adj.access_log
            if what and what not in ("-", "logging"):
                logger.info("%s: access log %s reopened", signame, what)
            else:
                logger.info("%s: no access log file to reopen", signame)

    def _stop_listening(self) -> None:
        """Close our copies of the listening sockets: once the engine has closed its
        own (after taking what the kernel had queued), new connections are refused.
        A Unix socket's file is removed when run() ends."""
        for s in self.sockets:
            s.close()

    def _close_sockets(self) -> None:
        for s in self.sockets:
            if (
                s.family == socket.AF_UNIX
                and self.adj.unix_socket
                and self.owns_unix_socket_file
            ):
                try:
                    os.unlink(self.adj.unix_socket)
                except OSError:
                    pass
            s.close()
        if self.metrics_socket is not None:
            self.metrics_socket.close()

    def print_listen(self, format_str: str) -> None:
        for i, (host, port) in enumerate(self.effective_listen):
            if ":" in str(host):
                host = f"[{host}]"
            line = format_str.format(host, port)
            if i in self.tls_listeners:
                line = line.replace("http://", "https://", 1)
            logger.info(line)


class TcpWSGIServer(BaseWSGIServer):
    """A server on one TCP socket."""


class UnixWSGIServer(BaseWSGIServer):
    """A server on one Unix domain socket."""


class MultiSocketServer(BaseWSGIServer):
    """A server on several sockets (one engine serves them all)."""
