"""The command line: ``maitre-serve [OPTIONS] MODULE:OBJECT`` (also
``python -m maitre``), with every flag of waitress-serve, generated from the settings
table so that no setting can be missing; ``--paste FILE[#section]`` serves a
PasteDeploy application instead. The settings may also come from ``MAITRE_*``
environment variables and a ``--config`` TOML file (``config.py`` says how they
combine); ``--check-config`` shows the result.

Usage errors (no application, two applications, an unknown option, a bad value, an
application that cannot be imported, with one process or several) exit with status
2 after a short usage message and the error (preceded by the traceback of the user's
code when importing the application raised); ``--help`` lists every option with its
default, ``--version`` prints the version. A server that cannot start (an address in
use, a pid file that cannot be written, a fork that fails) exits with 1.
"""

from __future__ import annotations

import getopt
import os
import pkgutil
import sys
import textwrap
import traceback
from typing import IO, Any, Callable, NamedTuple

from .adjustments import COMMAND_LINE_OPTIONS, SETTINGS, Adjustments, Setting, asbool
from .config import (
    ENV_PREFIX,
    StartError,
    describe,
    env_settings,
    file_settings,
    format_value,
    merge,
    paste_settings,
    split_paste,
    suggest,
)

USAGE = """\
Usage: {0} [OPTIONS] MODULE:OBJECT
       {0} [OPTIONS] --app=MODULE:OBJECT
       {0} [OPTIONS] --paste=FILE[#SECTION]
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

    --paste=FILE[#SECTION]
        Serve the application of a PasteDeploy ini file ([app:SECTION],
        default main), with the settings of its [server:SECTION] (else
        [server:main]) section; options given here win over the ini's.

    --config=FILE
        Read settings from a TOML file: top-level keys named as the settings
        (threads = 8, listen = ["*:8080"]).

    --check-config
        Print every setting's effective value and where it came from
        (default, file, paste, environment, command line), and exit.

Where settings come from, the strongest first: the command line, MAITRE_<NAME>
environment variables (MAITRE_THREADS=8), the --paste ini's server section, the
--config file, the defaults. Options may be shortened to any unambiguous prefix
(--thread=8), as in waitress-serve; scripts should spell them out.

Settings (each is also a keyword argument of maitre.serve(), a key of a
PasteDeploy [server:...] section and of a --config file, with the same name in
snake_case, and a MAITRE_<NAME> environment variable):

"""


def _format_default(setting: Setting) -> str:
    return format_value(setting, setting.default)


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
    """A frame of the import machinery, of PasteDeploy's loader or of this module,
    not of the user's code."""
    return (
        "importlib" in frame.filename
        or os.path.basename(frame.filename) == "pkgutil.py"
        or f"{os.sep}paste{os.sep}deploy{os.sep}" in frame.filename
        or frame.filename == __file__
    )


def _user_traceback(exc: BaseException | None) -> str:
    """The traceback of an exception raised by the user's code (importing the
    application, or calling its factory), without the frames of the import machinery;
    empty when no user code ran (a module or attribute that does not exist)."""
    if exc is None:
        return ""
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list(
        [frame for frame in tb.stack if not _in_machinery(frame)]
    )
    if not tb.stack and not isinstance(exc, SyntaxError):
        return ""
    return "".join(tb.format())


def _print_user_traceback(exc: BaseException | None) -> None:
    text = _user_traceback(exc)
    if text:
        print(text, file=sys.stderr)


def _option_names() -> list[str]:
    names = [o.rstrip("=") for o in COMMAND_LINE_OPTIONS]
    for s in SETTINGS:
        flag = s.name.replace("_", "-")
        names += [flag, "no-" + flag] if s.convert is asbool else [flag]
    return names


def _getopt_message(exc: getopt.GetoptError) -> str:
    """getopt's message, with the closest options to an unknown one, or the
    options an ambiguous prefix could mean."""
    message = str(exc)
    if not exc.opt or not message.startswith("option --"):
        return message
    names = _option_names()
    if message.endswith("not recognized"):
        return message + suggest(exc.opt, names, "--")
    if message.endswith("not a unique prefix"):
        could = sorted(n for n in names if n.startswith(exc.opt))
        return message + " (it could be " + ", ".join("--" + n for n in could) + ")"
    return message


def _program_name(argv: list[str]) -> str:
    if not argv:
        return "maitre-serve"
    name = os.path.basename(argv[0])
    if name in ("__main__.py", "-m", "-c", ""):
        return "python -m maitre"
    return name


class Command(NamedTuple):
    """What the command line asks for, the settings gathered from every source."""

    #: the settings, unconverted, from every source (``config.merge``)
    kw: dict
    #: where each setting in ``kw`` came from
    sources: dict
    #: loads the application (raises ``AppLoadError``); None with --check-config
    #: and no application
    load: Callable[[], Any] | None
    #: where --reload watches by default
    watch: str
    check: bool


def read_command(argv: list[str]) -> Command:
    """The options after the program name to a ``Command``; raises
    ``getopt.GetoptError`` or ``ValueError`` (usage errors)."""
    kw, args = Adjustments.parse_args(list(argv))
    for name in ("help", "version"):
        kw.pop(name, None)
    call = kw.pop("call")
    mounts = kw.pop("mount", [])
    paste = kw.pop("paste", None)
    config = kw.pop("config", None)
    check = kw.pop("check_config", False)
    if "app" in kw:
        args.insert(0, kw.pop("app"))
    if paste is not None and (args or mounts or call):
        raise ValueError(
            "--paste names the application: not together with MODULE:OBJECT, "
            "--app, --mount or --call"
        )
    if not args and not mounts and paste is None and not check:
        raise ValueError("no application given: specify one as MODULE:OBJECT")
    if len(args) > 1:
        raise ValueError(
            "specify one application only, not " + " and ".join(map(repr, args))
        )
    layers: list[tuple[str, dict]] = []
    if config is not None:
        layers.append((f"file {config}", file_settings(config)))
    if paste is not None:
        layers.append((f"paste {split_paste(paste)[0]}", paste_settings(paste)))
    layers.append(("environment", env_settings()))
    layers.append(("command line", kw))
    merged, sources = merge(layers)
    load: Callable[[], Any] | None = None
    watch = os.getcwd()
    if paste is not None:
        load = lambda: load_paste(paste)  # noqa: E731
        watch = os.path.dirname(split_paste(paste)[0])
    elif args or mounts:
        mounted = _app_paths(mounts, args)
        load = lambda: load_mounted(mounted, call)  # noqa: E731
        watch = _app_directory(mounted if isinstance(mounted, str) else mounted[-1][1])
    return Command(merged, sources, load, watch, check)


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
        options, _ = Adjustments.parse_args(list(argv[1:]))
    except getopt.GetoptError as exc:
        return usage_error(_getopt_message(exc))
    if options["help"]:
        show_help(sys.stdout, name)
        return 0
    if options.get("version"):
        from . import __version__

        print(f"maitre {__version__}")
        return 0
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        command = read_command(argv[1:])
        # The settings first: a bad value is reported before any user code runs.
        adj = Adjustments(**command.kw)
    except ValueError as exc:
        return usage_error(str(exc))
    kw = command.kw
    if command.check:
        print(describe(adj, kw, _sources_in_full(command.sources)))
        return 0
    if "sockets" in kw:
        kw["sockets"] = adj.sockets  # socket objects now owning the descriptors
    assert command.load is not None  # read_command refuses no application
    if adj.workers > 1 or adj.reload:
        return _run_master(argv, command, adj, usage_error)
    try:
        app = command.load()
    except AppLoadError as exc:
        _print_user_traceback(exc.__cause__)
        return usage_error(str(exc))

    try:
        _serve(app, **kw)
    except ValueError as exc:
        # a bad setting value or combination: refused before anything is served
        return usage_error(str(exc))
    except StartError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Error: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _sources_in_full(sources: dict) -> dict:
    """The sources as --check-config names them: with the variable or option."""
    full = {}
    for name, source in sources.items():
        if source == "environment":
            source = f"environment ({ENV_PREFIX}{name.upper()})"
        elif source == "command line":
            source = f"command line (--{name.replace('_', '-')})"
        full[name] = source
    return full


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


def load_paste(spec: str) -> Any:
    """The application of ``--paste FILE[#section]``: PasteDeploy's ``loadapp``."""
    path, section = split_paste(spec)
    try:
        from paste.deploy import loadapp

        return loadapp("config:" + path, name=section)
    except Exception as exc:  # the user's factory may raise anything
        raise AppLoadError(
            f"--paste: cannot load the application [app:{section}] of {path}: "
            f"{_describe_exception(exc)}"
        ) from exc


def _in_worker(load: Callable[[], Any]) -> Callable[[], Any]:
    """``load`` for a worker: its error carries the report the master shows, the
    same as a single process's (``worker_process.boot_report``)."""

    def load_in_worker() -> Any:
        try:
            return load()
        except AppLoadError as exc:
            exc.boot_report = (_user_traceback(exc.__cause__), str(exc))  # type: ignore[attr-defined]
            raise

    return load_in_worker


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


def _run_master(argv: list[str], command: Command, adj: Any, usage_error: Any) -> int:
    """Serve with a master process and ``adj.workers`` worker processes."""
    from .master import Master
    from .worker_process import BootError

    def reread() -> tuple[dict, Any]:
        # Every source again, as at start (a SIGHUP re-reads the settings).
        new = read_command(argv[1:])
        assert new.load is not None
        return new.kw, _in_worker(new.load)

    assert command.load is not None
    try:
        master = Master(
            command.kw,
            load_app=_in_worker(command.load),
            reread=reread,
            watch_dirs=adj.reload_dirs or [command.watch],
        )
        return master.run()
    except BootError as exc:  # the workers cannot import the application
        if exc.traceback:  # as _print_user_traceback prints it
            print(exc.traceback + "\n", file=sys.stderr)
        return usage_error(exc.message)
    except AppLoadError as exc:  # preload_app: loaded in the master
        _print_user_traceback(exc.__cause__)
        return usage_error(str(exc))
    except ValueError as exc:
        return usage_error(str(exc))
    except StartError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
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
