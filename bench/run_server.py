"""Start one WSGI server on 127.0.0.1 for the benchmarks.

    python bench/run_server.py SERVER PORT [APP]
    python bench/run_server.py --check SERVER
    python bench/run_server.py --version SERVER

SERVER is one of maitre, waitress, bjoern, gunicorn, granian, pyruvate; APP is
a name from bench/apps.py (default hello).  Every server gets the same
application and listens only on 127.0.0.1, in one process where it can (gunicorn
and granian run a master process and one worker process).

Settings are each server's defaults except:

- THREADS (env, default 4) application threads: maitre and waitress
  ``threads``, gunicorn ``-k gthread -w 1 --threads``, granian ``--workers 1
  --blocking-threads``, pyruvate ``num_workers``.  bjoern is single-threaded.
- MANY_CONNECTIONS (env, unset by default) for the idle-connections scenario:
  every cap on open connections is raised to this number (maitre and waitress
  ``connection_limit``, gunicorn ``worker_connections``, granian
  ``backpressure`` and ``backlog``), waitress uses poll() since select() stops
  at 1,024 descriptors, and idle keep-alive timeouts shorter than 120 s are
  raised to 120 s (gunicorn ``keepalive``).
- pyruvate runs with its defaults, so without keep-alive (it closes every
  connection after one response).  Its keep-alive switch (``max_reuse_count``
  > 0) is not used: with it, pyruvate 1.6.1 never answers a second request on
  a connection; and ``chunked_transfer=True`` appends a last chunk
  ``0\\r\\n\\r\\n`` to responses that have a Content-Length.
- access logs off, log level WARNING; except with ACCESS_LOG (env, a file path):
  maitre ``access_log`` and gunicorn ``accesslog`` write there, each in its
  default format; METRICS_LISTEN (env, HOST:PORT): maitre ``metrics_listen``
  (bench/investigations/observe.sh measures what they cost); and
  MAX_QUEUED_REQUESTS, QUEUE_TIMEOUT, REQUEST_TIMEOUT (env): those maitre
  settings, to measure what the fleet's settings cost a request.
- WORKERS (env, default 1) worker processes: maitre ``workers`` (a master and
  that many workers, the app preloaded since it is an object), gunicorn ``-w``,
  granian ``--workers``, bjoern that many forked processes each with its own
  ``reuse_port`` socket; waitress and pyruvate have one process and ignore it.
- TLS_CERT and TLS_KEY (env, PEM files; unset by default) serve HTTPS with each
  server's own TLS: maitre ``ssl_certificate``/``ssl_private_key``, gunicorn
  ``certfile``/``keyfile``, granian ``ssl_cert``/``ssl_key`` (bench/tls.sh).
- HTTP2 (env, unset by default) serves HTTP/2 (bench/h2.py): maitre ``http2``
  (HTTP/2 beside HTTP/1.1: ALPN h2 over TLS, prior knowledge on cleartext),
  granian ``--http 2`` (HTTP/2 only).  The other servers ignore it.

``--check`` only imports the server (exit 0, or 3 with the reason);
``--version`` prints its installed version.
"""

import logging
import os
import sys
from importlib import metadata
from pathlib import Path

import apps  # bench/ is sys.path[0] when run as a script

HOST = "127.0.0.1"
SERVERS = ("maitre", "waitress", "bjoern", "gunicorn", "granian", "pyruvate")
IDLE_TIMEOUT = 120
WORKERS = int(os.environ.get("WORKERS") or 1)
TLS_CERT = os.environ.get("TLS_CERT")
TLS_KEY = os.environ.get("TLS_KEY")
HTTP2 = bool(os.environ.get("HTTP2"))


def _import(server):
    if server not in SERVERS:
        raise SystemExit(f"unknown server {server!r}; expected one of {SERVERS}")
    try:
        return __import__(server)
    except Exception as exc:  # noqa: BLE001 - report any import failure
        print(f"cannot import {server}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(3) from None


#: maitre's settings a run may turn on from the environment (the fleet's, to measure
#: what they cost on the request path): variable -> setting
_FROM_ENV = {
    "ACCESS_LOG": "access_log",
    "METRICS_LISTEN": "metrics_listen",
    "MAX_QUEUED_REQUESTS": "max_queued_requests",
    "QUEUE_TIMEOUT": "queue_timeout",
    "REQUEST_TIMEOUT": "request_timeout",
}


def _observe():
    """maitre's access log, metrics listener and fleet settings, when the environment
    asks."""
    env = os.environ
    return {name: env[var] for var, name in _FROM_ENV.items() if env.get(var)}


def _maitre(module, app, port, threads, many):
    extra = {"connection_limit": many} if many else {}
    if WORKERS > 1:
        extra["workers"] = WORKERS
    extra.update(_observe())
    if TLS_CERT:
        extra.update(ssl_certificate=TLS_CERT, ssl_private_key=TLS_KEY)
    if HTTP2:
        extra["http2"] = True
    module.serve(app, host=HOST, port=port, threads=threads, **extra)


def _waitress(module, app, port, threads, many):
    extra = {"connection_limit": many, "asyncore_use_poll": True} if many else {}
    module.serve(app, host=HOST, port=port, threads=threads, **extra)


def _bjoern(module, app, port, threads, many):
    if WORKERS == 1:
        module.run(app, HOST, port)
        return
    for _ in range(WORKERS - 1):  # the parent serves too
        if os.fork() == 0:
            break
    module.run(app, HOST, port, reuse_port=True)


def _gunicorn(module, app, port, threads, many):
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"{HOST}:{port}",
        "workers": WORKERS,
        "worker_class": "gthread",
        "threads": threads,
        "loglevel": "warning",
        "accesslog": os.environ.get("ACCESS_LOG") or None,
    }
    if many:
        options["worker_connections"] = many
        options["backlog"] = max(2048, many)
        options["keepalive"] = IDLE_TIMEOUT
    if TLS_CERT:
        options["certfile"] = TLS_CERT
        options["keyfile"] = TLS_KEY

    class Application(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Application().run()


def _granian(module, app_name, port, threads, many):
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    extra = {"backpressure": many, "backlog": max(1024, many)} if many else {}
    if TLS_CERT:
        extra.update(ssl_cert=Path(TLS_CERT), ssl_key=Path(TLS_KEY))
    if HTTP2:
        extra["http"] = HTTPModes.http2
    Granian(
        f"apps:{app_name}",
        address=HOST,
        port=port,
        interface=Interfaces.WSGI,
        workers=WORKERS,
        blocking_threads=threads,
        log_level=LogLevels.warning,
        working_dir=Path(__file__).resolve().parent,
        **extra,
    ).serve()


def _pyruvate(module, app, port, threads, many):
    module.serve(app, f"{HOST}:{port}", threads)


def main(argv):
    if len(argv) == 2 and argv[0] in ("--check", "--version"):
        _import(argv[1])
        if argv[0] == "--version":
            print(metadata.version(argv[1]))
        return 0
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    server, port = argv[0], int(argv[1])
    app_name = argv[2] if len(argv) == 3 else "hello"
    app = apps.load(app_name)
    threads = int(os.environ.get("THREADS", "4"))
    many = int(os.environ.get("MANY_CONNECTIONS") or 0)
    module = _import(server)
    # Servers log "serving on ..." and queue-depth warnings: keep them, quietly.
    logging.basicConfig(level=logging.WARNING)
    print(f"{server} pid {os.getpid()} on {HOST}:{port} app {app_name}", flush=True)
    if server == "granian":
        _granian(module, app_name, port, threads, many)
    else:
        globals()[f"_{server}"](module, app, port, threads, many)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
