"""Loggers and small helpers shared by the package, with waitress's names: HTTP dates,
RFC 9110 quoted strings, and the error responses the server sends (their text format is
the one the Rust engine uses on the wire, src/http/response.rs ``error_response``)."""

from __future__ import annotations

import calendar
import datetime
import errno
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from typing import Any, Callable

#: the server's logger: startup lines, application errors, socket errors
logger = logging.getLogger("maitre")
#: warnings about requests waiting for a free worker thread
queue_logger = logging.getLogger("maitre.queue")


def cleanup_unix_socket(path: str) -> None:
    """Remove a stale Unix socket file left by a previous run; anything else at that
    path is left alone.

    A socket that a live server still accepts connections on is not stale: removing
    it would silently take its address over (waitress does). That raises an
    ``OSError`` (EADDRINUSE) saying so, and the file stays."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # nothing there: nothing to clean up
            raise
        return
    if not stat.S_ISSOCK(st.st_mode):
        return
    if _unix_socket_live(path):
        raise OSError(
            errno.EADDRINUSE,
            "Unix socket in use by a running server (unix_socket)",
            path,
        )
    try:
        os.remove(path)
    except OSError:
        pass


def _unix_socket_live(path: str) -> bool:
    """Whether something accepts connections on the Unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # nobody listens: left by a previous run
        return False
    except (BlockingIOError, socket.timeout):  # a listener with a full backlog
        return True
    except OSError:  # not ours to judge (permissions...): as before, stale
        return False
    finally:
        probe.close()
    return True


def find_double_newline(s: bytes) -> int:
    """The position just after the first ``\\r\\n\\r\\n`` in ``s``, or -1."""
    pos = s.find(b"\r\n\r\n")
    return pos + 4 if pos >= 0 else -1


# -- HTTP dates (RFC 9110 section 5.6.7) -------------------------------------------

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS, 1)}
_SHORT_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# Sun, 06 Nov 1994 08:49:37 GMT  (IMF-fixdate; a one-digit day tolerated, as waitress)
_IMF_FIXDATE = re.compile(
    _SHORT_DAY
    + r", (?P<day>[0-9]{1,2}) "
    + _MONTH
    + r" (?P<year>[0-9]{4}) "
    + _TIME
    + " gmt"
)
# Sunday, 06-Nov-94 08:49:37 GMT  (obsolete RFC 850 format)
_RFC850 = re.compile(
    _LONG_DAY
    + r", (?P<day>[0-9]{1,2})-"
    + _MONTH
    + r"-(?P<year>[0-9]{2}|[0-9]{4}) "
    + _TIME
    + " gmt"
)
# Sun Nov  6 08:49:37 1994  (ANSI C asctime(); the day is space-padded)
_ASCTIME = re.compile(
    _SHORT_DAY
    + " "
    + _MONTH
    + r" (?P<day>[ 0-9][0-9]) "
    + _TIME
    + r" (?P<year>[0-9]{4})"
)


def build_http_date(when: float) -> str:
    """``when`` (seconds since the epoch) as an IMF-fixdate:
    ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(when)
    return (
        f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1].capitalize()} "
        f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(d: str) -> int:
    """Seconds since the epoch of an HTTP date in any of the three formats RFC 9110
    accepts (IMF-fixdate, RFC 850, asctime), matched case-insensitively; 0 if ``d`` is
    none of them or names a time that does not exist."""
    d = d.lower()
    m = _IMF_FIXDATE.fullmatch(d) or _ASCTIME.fullmatch(d)
    if m is not None:
        year = int(m["year"])
    else:
        m = _RFC850.fullmatch(d)
        if m is None:
            return 0
        year = int(m["year"])
        if len(m["year"]) == 2:
            # RFC 9110: a two-digit year over 50 years in the future is in the past.
            this_year = time.gmtime().tm_year
            year += this_year - this_year % 100
            if year > this_year + 50:
                year -= 100
    month, day = _MONTH_NUMBER[m["month"]], int(m["day"])
    hour, minute, second = int(m["hour"]), int(m["minute"]), int(m["second"])
    try:
        # Checks the ranges, day of the month included; a leap second (60) is allowed.
        datetime.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return 0
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


# -- quoted strings (RFC 9110 section 5.6.4) ---------------------------------------

_OBS_TEXT = "\x80-\xff"
# qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
# quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
_QUOTED_STRING = re.compile(
    '"(?:[\t !#-\\[\\]-~' + _OBS_TEXT + "]|\\\\[\t \x21-\x7e" + _OBS_TEXT + '])*"'
)
_QUOTED_PAIR = re.compile("\\\\([\t \x21-\x7e" + _OBS_TEXT + "])")


def undquote(value: str) -> str:
    """``value`` without its double quotes if it is a valid quoted-string (escapes
    resolved), unchanged if it is not quoted at all; ValueError for broken quoting."""
    starts, ends = value.startswith('"'), value.endswith('"')
    if not starts and not ends:
        return value
    if starts and ends and _QUOTED_STRING.fullmatch(value):
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    raise ValueError("Invalid quoting in value")


# -- error responses ----------------------------------------------------------------


class Error:
    """An HTTP error the server answers itself; ``body`` is the message shown."""

    code = 500
    reason = "Internal Server Error"

    def __init__(self, body: str) -> None:
        self.body = body

    def to_response(self, ident: str | None = None) -> tuple[str, list, bytes]:
        """(status, headers, body bytes), in the format the engine sends on the wire."""
        tag = ident if ident else "server"
        text = f"{self.reason}\r\n\r\n{self.body}\r\n\r\n(generated by {tag})"
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        return f"{self.code} {self.reason}", headers, text.encode("utf-8")

    def wsgi_response(
        self, environ: dict, start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        """This error as a WSGI application's response (a generator, as in waitress:
        ``start_response`` is called when it is first iterated)."""
        status, headers, body = self.to_response()
        start_response(status, headers)
        yield body


class BadRequest(Error):
    code = 400
    reason = "Bad Request"


class RequestHeaderFieldsTooLarge(BadRequest):
    code = 431
    reason = "Request Header Fields Too Large"


class RequestEntityTooLarge(BadRequest):
    code = 413
    reason = "Request Entity Too Large"


class InternalServerError(Error):
    code = 500
    reason = "Internal Server Error"


class ServerNotImplemented(Error):
    code = 501
    reason = "Not Implemented"


def log_summary(adj: Any, processes: str, metrics_address: Any = None) -> None:
    """The line after "Serving on ..." (one process, or a master for its workers):
    version, processes, threads per process, access log, and where the metrics are."""
    from . import __version__

    logger.info(
        "maitre %s: %s, %d threads, access log %s",
        __version__,
        processes,
        adj.threads,
        adj.access_log or "off",
    )
    if metrics_address:
        logger.info("Metrics on http://%s:%s/metrics", *metrics_address)
