"""The app called in a loop, no server: the floor under a server's CPU per request.

    python bench/app_loop.py SCENARIO [CALLS] [ROUNDS]

Calls the scenario's WSGI application (bench/apps.py) CALLS times in this
one thread, with an environ built once the way a server would build it for
wrk's request (a fresh copy and a fresh ``wsgi.input`` per call, as a server
gives every request its own) and a ``start_response`` that only keeps its
arguments; each call's body is iterated, joined and closed as a server would.
After warm-up calls (at least 50 and 0.3 s) it measures the process's CPU time
(user + system, ``time.process_time``) over the CALLS, ROUNDS times [3], and
prints the lowest as one line (CALLS, when not given, is what takes about a
second)::

    APPLOOP scenario=django calls=5000 us_per_call=812.4 bytes=9876

A server cannot do a request in less CPU than this: bench/run.sh prints it next
to each server's CPU per request, so that the difference (the server's own share:
parsing, environ, hand-offs, writing, the kernel's socket work) is visible.
Run it pinned to the server's core (run.sh does) on a quiet machine.
"""

import io
import sys
import time

import apps

HOST = "127.0.0.1"
PORT = "8080"


def environ_for(scenario):
    """The environ of `GET PATH HTTP/1.1` with wrk's headers, as servers build it."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": apps.path(scenario),
        "QUERY_STRING": "",
        "SERVER_NAME": HOST,
        "SERVER_PORT": PORT,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": HOST,
        "REMOTE_HOST": HOST,
        "REMOTE_PORT": "40000",
        "HTTP_HOST": f"{HOST}:{PORT}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def call(app, environ):
    """One request: (status, headers, body bytes)."""
    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(b"")
    seen = []

    def start_response(status, headers, exc_info=None):
        seen[:] = [status, headers]
        return seen.append

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return seen[0], seen[1], body


def measure(scenario, calls, rounds):
    app = apps.load(scenario)
    environ = environ_for(scenario)
    status, _, body = call(app, environ)
    if not status.startswith("200"):
        raise SystemExit(f"{scenario}: the app answered {status}")
    warm, start = 0, time.process_time()
    while warm < 50 or time.process_time() - start < 0.3:
        call(app, environ)
        warm += 1
    if not calls:
        calls = max(100, int(warm / (time.process_time() - start)))
    best = None
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            call(app, environ)
        spent = time.process_time() - start
        best = spent if best is None else min(best, spent)
    return calls, best * 1e6 / calls, len(body)


def main(argv):
    if not 1 <= len(argv) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    scenario = argv[0]
    calls = int(argv[1]) if len(argv) > 1 else 0
    rounds = int(argv[2]) if len(argv) > 2 else 3
    calls, us, size = measure(scenario, calls, rounds)
    print(
        f"APPLOOP scenario={scenario} calls={calls} us_per_call={us:.1f} bytes={size}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
