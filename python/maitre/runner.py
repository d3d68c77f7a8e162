"""The command line: ``maitre-serve [OPTIONS] MODULE:OBJECT`` (also
``python -m maitre``), with every flag of waitress-serve, generated from the settings
table so that no setting can be missing.

Usage errors (no application, two applications, an unknown option, a bad value, an
application that cannot be imported) exit with status 2 after a short usage message
and the error (preceded by the traceback of the user's code when importing the
application raised); ``--help`` lists every option with its default, ``--version``
prints the version. A server that cannot start (an address in use) exits with 1.
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

    --version
        Show the version of maitre and exit.

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


def _in_machinery(frame: traceback.FrameSummary) -> bool:
    """A frame of the import machinery or of this module, not of the user's code."""
    return (
        "importlib" in frame.filename
        or os.path.basename(frame.filename) == "pkgutil.py"
        or frame.filename == __file__
    )


def _print_user_traceback(exc: BaseException) -> None:
    """The traceback of an exception raised by the user's code (importing the
    application, or calling its factory), without the frames of the import machinery;
    nothing when no user code ran (a module or attribute that does not exist)."""
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list(
        [frame for frame in tb.stack if not _in_machinery(frame)]
    )
    if not tb.stack and not isinstance(exc, SyntaxError):
        return
    print("".join(tb.format()), file=sys.stderr)


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
    if kw.pop("version", False):
        from . import __version__

        print(f"maitre {__version__}")
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
    try:
        mounted = _app_paths(mounts, args)
    except ValueError as exc:
        return usage_error(str(exc))
    if adj.workers > 1 or adj.reload:
        return _run_master(argv, kw, mounted, call, adj, usage_error)
    try:
        app = load_mounted(mounted, call)
    except AppLoadError as exc:
        if exc.__cause__ is not None:
            _print_user_traceback(exc.__cause__)
        return usage_error(str(exc))

    try:
        _serve(app, **kw)
    except ValueError as exc:
        # a bad setting value or combination: refused before anything is served
        return usage_error(str(exc))
    except OSError as exc:
        print(f"Error: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


class AppLoadError(Exception):
    """The application named on the command line cannot be had; the message says
    why (the original exception is its cause)."""


def load_application(target: str, call: bool) -> Any:
    """Import ``MODULE:OBJECT`` (and call it with ``--call``): the WSGI app."""
    try:
        app = pkgutil.resolve_name(target)
    except Exception as exc:  # the user's module may raise anything on import
        raise AppLoadError(
            f"cannot import the application {target!r}: {_describe_exception(exc)}"
        ) from exc
    if call:
        if not callable(app):
            raise AppLoadError(f"--call: {target!r} is not callable")
        try:
            app = app()
        except Exception as exc:
            raise AppLoadError(
                f"--call: calling {target!r} failed: {_describe_exception(exc)}"
            ) from exc
    if not callable(app):
        raise AppLoadError(
            f"{target!r} is not a WSGI application: a {type(app).__name__} "
            "is not callable"
        )
    return app


def _app_paths(mounts: list[str], args: list[str]) -> list[tuple[str, str]] | str:
    """``(prefix, MODULE:OBJECT)`` for each ``--mount`` and the positional app (at
    ``/``); just the positional app's ``MODULE:OBJECT`` when nothing is mounted."""
    if not mounts:
        return args[0]
    paths = []
    for mount in mounts:
        prefix, sep, where = mount.partition("=")
        if not sep or not prefix.startswith("/") or ":" not in where:
            raise ValueError(
                f"--mount={mount}: expected PREFIX=MODULE:OBJECT, e.g. /api=pkg.api:app"
            )
        paths.append((prefix, where))
    if args:
        paths.append(("/", args[0]))
    return paths


def load_mounted(mounted: list[tuple[str, str]] | str, call: bool) -> Any:
    """The application: ``load_application`` of a target, or a ``PathDispatcher``
    over the ``(prefix, target)`` mounts."""
    if isinstance(mounted, str):
        return load_application(mounted, call)
    from .dispatch import PathDispatcher

    apps = [(prefix, load_application(target, call)) for prefix, target in mounted]
    try:
        return PathDispatcher(apps)
    except ValueError as exc:
        raise AppLoadError(f"--mount: {exc}") from None


def _load_in_worker(mounted: list[tuple[str, str]] | str, call: bool) -> Any:
    """``load_mounted`` for a worker, whose error the master shows as a
    traceback: the user's exception itself (once), not wrapped."""
    try:
        return load_mounted(mounted, call)
    except AppLoadError as exc:
        if exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise


def _app_directory(target: str) -> str:
    """Where ``--reload`` watches by default: the directory holding the module's
    top-level package (found without importing it), else the current one."""
    import importlib.util

    top = target.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isabs(spec.origin):
        return os.getcwd()
    path = os.path.dirname(spec.origin)
    if spec.submodule_search_locations:  # a package: its parent directory
        path = os.path.dirname(path)
    return path


def _run_master(
    argv: list[str],
    kw: dict,
    mounted: list[tuple[str, str]] | str,
    call: bool,
    adj: Any,
    usage_error: Any,
) -> int:
    """Serve with a master process and ``adj.workers`` worker processes."""
    from .master import Master

    def reread() -> tuple[dict, Any]:
        # The command line again, as at start (a SIGHUP re-reads the settings).
        new_kw, new_args = Adjustments.parse_args(list(argv[1:]))
        new_call = new_kw.pop("call")
        new_kw.pop("help")
        new_kw.pop("version", None)
        new_mounts = new_kw.pop("mount", [])
        if "app" in new_kw:
            new_args.insert(0, new_kw.pop("app"))
        new_mounted = _app_paths(new_mounts, new_args)
        return new_kw, lambda: _load_in_worker(new_mounted, new_call)

    first = mounted if isinstance(mounted, str) else mounted[-1][1]
    try:
        master = Master(
            kw,
            load_app=lambda: _load_in_worker(mounted, call),
            reread=reread,
            watch_dirs=adj.reload_dirs or [_app_directory(first)],
        )
        return master.run()
    except AppLoadError as exc:  # preload_app: loaded in the master
        return usage_error(str(exc))
    except ValueError as exc:
        return usage_error(str(exc))
    except OSError as exc:
        print(f"Error: cannot listen: {exc}", file=sys.stderr)
        return 1


def main() -> None:
    """Entry point of the ``maitre-serve`` console script."""
    try:
        code = run()
    except BrokenPipeError:  # e.g. --help | head: not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:  # Ctrl-C while the application was being imported
        code = 130
    _exit(code)


def _exit(code: int) -> None:
    """sys.exit, unless a stop left worker threads in the application (requests
    abandoned at shutdown_timeout or by an immediate stop): the interpreter cannot
    stop them, and one taking the GIL back while it finalizes would abort the
    process. Then flush what is buffered and leave at once."""
    from .server import threads_left_running

    if threads_left_running():
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed or broken stream: nothing left to flush
                pass
        os._exit(code)
    sys.exit(code)
