"""The command line: ``maitre-serve [OPTIONS] MODULE:OBJECT`` (also
``python -m maitre``), with waitress-serve's flags, generated from the settings
table."""

from __future__ import annotations

import getopt
import os
import pkgutil
import sys
import textwrap
from typing import IO, Any

from .adjustments import SETTINGS, Adjustments, asbool

USAGE = """\
Usage:

    {0} [OPTIONS] MODULE:OBJECT

Serve the WSGI application OBJECT from MODULE (e.g. myapp:app or
pkg.module:factory with --call). The current directory is put on sys.path.

Standard options:

    --help
        Show this information.

    --call
        Call OBJECT to get the WSGI application (an application factory).

Settings (each is also a keyword of maitre.serve()):
"""


def _options_help() -> str:
    lines = []
    for s in SETTINGS:
        if s.name == "sockets":
            continue  # only meaningful from Python
        flag = s.name.replace("_", "-")
        if s.convert is asbool:
            head = f"    --{flag}, --no-{flag}"
        else:
            head = f"    --{flag}=VALUE"
        default = s.default
        if isinstance(default, int) and s.name == "unix_socket_perms":
            default = oct(default)[2:]
        lines.append(head)
        body = f"{s.help} Default: {default!r}."
        lines.extend(
            textwrap.wrap(body, 72, initial_indent=" " * 8, subsequent_indent=" " * 8)
        )
        lines.append("")
    return "\n".join(lines)


def show_help(stream: IO[str], name: str, error: str | None = None) -> None:
    if error is not None:
        print(f"Error: {error}\n", file=stream)
    print(USAGE.format(name) + "\n" + _options_help(), file=stream)


def run(argv: list[str] | None = None, _serve: Any = None) -> int:
    """Run the command line; returns the exit status (2 for usage errors)."""
    from . import serve

    argv = sys.argv if argv is None else argv
    _serve = _serve or serve
    name = os.path.basename(argv[0]) if argv else "maitre-serve"
    if name == "__main__.py":
        name = "python -m maitre"
    try:
        kw, args = Adjustments.parse_args(argv[1:])
    except getopt.GetoptError as exc:
        show_help(sys.stderr, name, str(exc))
        return 2
    if kw.pop("help"):
        show_help(sys.stdout, name)
        return 0
    call = kw.pop("call")
    if len(args) != 1:
        show_help(sys.stderr, name, "Specify one application only")
        return 2
    sys.path.insert(0, os.getcwd())
    try:
        app = pkgutil.resolve_name(args[0])
    except Exception as exc:  # the user's module may raise anything on import
        show_help(
            sys.stderr,
            name,
            f"cannot import {args[0]!r}: {type(exc).__name__}: {exc}",
        )
        return 2
    if call:
        app = app()
    try:
        _serve(app, **kw)
    except ValueError as exc:
        show_help(sys.stderr, name, str(exc))
        return 2
    return 0


def main() -> None:
    sys.exit(run())
