"""Start one WSGI server on 127.0.0.1 for the benchmarks.

    python bench/run_server.py SERVER PORT [APP]
    python bench/run_server.py --check SERVER

SERVER is maitre, waitress or bjoern; APP is a name from bench/apps.py (default
hello).  Every server gets the same application object and listens only on
127.0.0.1.  The thread pools (maitre, waitress) have THREADS workers (env var,
default 4); bjoern is single-threaded.  ``--check`` only imports the server and
exits 0, or exits 3 printing why it cannot be imported.
"""

import logging
import os
import sys

from apps import APPS  # bench/ is sys.path[0] when run as a script

HOST = "127.0.0.1"
SERVERS = ("maitre", "waitress", "bjoern")


def _import(server):
    if server not in SERVERS:
        raise SystemExit(f"unknown server {server!r}; expected one of {SERVERS}")
    try:
        return __import__(server)
    except Exception as exc:  # noqa: BLE001 - report any import failure
        print(f"cannot import {server}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(3) from None


def main(argv):
    if len(argv) == 2 and argv[0] == "--check":
        _import(argv[1])
        return 0
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    server, port = argv[0], int(argv[1])
    app = APPS[argv[2] if len(argv) == 3 else "hello"]
    threads = int(os.environ.get("THREADS", "4"))
    module = _import(server)
    # Servers log "serving on ..." and queue-depth warnings: keep them, quietly.
    logging.basicConfig(level=logging.WARNING)
    print(f"{server} pid {os.getpid()} on {HOST}:{port}", flush=True)
    if server == "bjoern":
        module.run(app, HOST, port)
    else:
        module.serve(app, host=HOST, port=port, threads=threads)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
