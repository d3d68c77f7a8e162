"""The command line: ``maitre-serve [OPTIONS] MODULE:OBJECT`` (also
``python -m maitre``), with every flag of waitress-serve, generated from the settings
table so that no setting can be missing.

Usage errors (no application, two applications, an unknown option, a bad value, an
application that cannot be imported) exit with status 2 after a short usage message
and the error; ``--help`` lists every option with its default.
"""

from __future__ import annotations

import getopt
import os
import pkgutil
import sys
import textwrap
import traceback
from typing import IO, Any

from .adjustments import SETTINGS, Adjustments, Setting, asbool

USAGE = """\
Usage: {0} [OPTIONS] MODULE:OBJECT
       {0} [OPTIONS] --app=MODULE:OBJECT
"""

HELP = """\
Serve the WSGI application OBJECT of MODULE, e.g. myapp:app or pkg.module:obj.attr.
The current directory is put on sys.path first, so a module there is found.

Options:

    --help
        Show this help and exit.

    --app=MODULE:OBJECT
        The application, instead of the MODULE:OBJECT argument.

    --call
        Call OBJECT (with no arguments) to get the WSGI application: for
        application factories.

    --mount=PREFIX=MODULE:OBJECT
        Serve another application under the path PREFIX (e.g.
        --mount=/api=pkg.api:app); repeat for more. The MODULE:OBJECT
        argument, if given, is mounted at /. The longest matching prefix wins
        (maitre.dispatch.PathDispatcher).

Settings (each is also a keyword argument of maitre.serve() and a key of a
PasteDeploy [server:...] section, with the same name in snake_case):

"""


def _format_default(setting: Setting) -> str:
    value = setting.default
    if setting.convert is asbool:
        return "on" if value else "off"
    if setting.name == "unix_socket_perms":
        return format(value, "o")
    if value is None:
        return "unset"
    if isinstance(value, (list, set, tuple)):
        return " ".join(sorted(map(str, value))) if value else "none"
    if value == "":
        return "'' (empty)"
    return str(value)


def _options_help() -> str:
    lines = []
    for s in SETTINGS:
        flag = s.name.replace("_", "-")
        if s.convert is asbool:
            lines.append(f"    --{flag}, --no-{flag}")
        else:
            lines.append(f"    --{flag}={s.metavar}")
        lines.extend(
            textwrap.wrap(
                s.help,
                80,
                initial_indent=" " * 8,
                subsequent_indent=" " * 8,
                break_on_hyphens=False,
            )
        )
        lines.append(f"        Default: {_format_default(s)}")
        lines.append("")
    return "\n".join(lines)


def show_help(stream: IO[str], name: str, error: str | None = None) -> None:
    """The whole help text; with ``error``, the short usage and the error instead
    (one screen, the error last where it is seen)."""
    if error is None:
        print(USAGE.format(name) + "\n" + HELP + _options_help(), file=stream)
        return
    print(USAGE.format(name), file=stream)
    print(f"Run '{name} --help' for every option.\n", file=stream)
    print(f"Error: {error}", file=stream)


def _describe_exception(exc: BaseException) -> str:
    """``Type: message``, and where it was raised when that is in the user's code
    (not in the import machinery)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return text  # its message already names the file and line
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename
        and os.path.basename(f.filename) != "pkgutil.py"
        and f.filename != __file__
    ]
    if frames:
        text += f" (at {frames[-1].filename}, line {frames[-1].lineno})"
    return text


def _program_name(argv: list[str]) -> str:
    if not argv:
        return "maitre-serve"
    name = os.path.basename(argv[0])
    if name in ("__main__.py", "-m", "-c", ""):
        return "python -m maitre"
    return name


def run(argv: list[str] | None = None, _serve: Any = None) -> int:
    """Run the command line (``argv`` is ``sys.argv`` by default); returns the exit
    status: 0 after serving, 2 for a usage error, 1 if the server could not start
    (e.g. the address is in use)."""
    if argv is None:
        argv = sys.argv
    if _serve is None:
        from . import serve as _serve
    name = _program_name(argv)

    def usage_error(message: str) -> int:
        show_help(sys.stderr, name, message)
        return 2

    try:
        kw, args = Adjustments.parse_args(list(argv[1:]))
    except getopt.GetoptError as exc:
        return usage_error(str(exc))
    if kw.pop("help"):
        show_help(sys.stdout, name)
        return 0
    call = kw.pop("call")
    mounts = kw.pop("mount", [])
    if "app" in kw:
        args.insert(0, kw.pop("app"))
    if not args and not mounts:
        return usage_error("no application given: specify one as MODULE:OBJECT")
    if len(args) > 1:
        return usage_error(
            "specify one application only, not " + " and ".join(map(repr, args))
        )
    # The settings first: a bad value is reported before any user code runs.
    try:
        adj = Adjustments(**kw)
    except ValueError as exc:
        return usage_error(str(exc))
    if "sockets" in kw:
        kw["sockets"] = adj.sockets  # socket objects now owning the descriptors

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    paths = []
    for mount in mounts:
        prefix, sep, where = mount.partition("=")
        if not sep or not prefix.startswith("/") or ":" not in where:
            return usage_error(
                f"--mount={mount}: expected PREFIX=MODULE:OBJECT, e.g. /api=pkg.api:app"
            )
        paths.append((prefix, where))
    if args:
        paths.append(("/", args[0]))
    apps = []
    for prefix, target in paths:
        app = _load(target, call)
        if isinstance(app, str):
            return usage_error(app)
        apps.append((prefix, app))
    if mounts:
        from .dispatch import PathDispatcher

        try:
            app = PathDispatcher(apps)
        except ValueError as exc:
            return usage_error(f"--mount: {exc}")
    else:
        app = apps[0][1]

    try:
        _serve(app, **kw)
    except ValueError as exc:
        # a bad setting value or combination: refused before anything is served
        return usage_error(str(exc))
    except OSError as exc:
        print(f"Error: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _load(target: str, call: bool) -> Any:
    """The WSGI application ``target`` names, or the usage error (a str)."""
    try:
        app = pkgutil.resolve_name(target)
    except Exception as exc:  # the user's module may raise anything on import
        return f"cannot import the application {target!r}: {_describe_exception(exc)}"
    if call:
        if not callable(app):
            return f"--call: {target!r} is not callable"
        try:
            app = app()
        except Exception as exc:
            return f"--call: calling {target!r} failed: {_describe_exception(exc)}"
    if not callable(app):
        return (
            f"{target!r} is not a WSGI application: a {type(app).__name__} "
            "is not callable"
        )
    return app


def main() -> None:
    """Entry point of the ``maitre-serve`` console script."""
    try:
        code = run()
    except BrokenPipeError:  # e.g. --help | head: not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)
