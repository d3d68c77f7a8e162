"""Where the settings come from besides the command line, and how they combine; and
how maitre sets up logging.

Sources, from the weakest to the strongest (``merge``):

1. the defaults of the settings table (``maitre.settings_table.SETTINGS``);
2. a TOML file (``--config FILE``): its top-level keys are setting names;
3. a PasteDeploy ini's ``[server:...]`` section (``--paste FILE[#section]``);
4. the environment: ``MAITRE_<SETTING>`` (the name in upper case, e.g.
   ``MAITRE_THREADS=8``);
5. the command line.

Every source gives values as the command line, a Paste ini or ``serve()`` would:
each is converted by its setting's own conversion, once, by ``Adjustments``; none has
a conversion of its own. Only the command line reads the environment and the files:
``serve(**kw)`` takes its keyword arguments as they are, so that a library call means
the same whatever the environment.

The address settings (``host``, ``port``, ``listen``, ``unix_socket``, ``sockets``)
exclude one another, so they move as a group: a source that sets any of them replaces
what weaker sources said about all of them (``--port=9000`` on the command line wins
over ``listen`` in a file instead of conflicting with it).

What must hold: one definition per setting (this module knows no setting by name
except the address group and ``log_config``); every value remembers its source, for
``--check-config``.
"""

from __future__ import annotations

import difflib
import json
import logging
import logging.config
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from .adjustments import SETTINGS, SETTINGS_BY_NAME, Adjustments, Setting, asbool

#: the prefix of the environment variables holding settings
ENV_PREFIX = "MAITRE_"

#: the settings that say where to listen: a source setting one replaces them all
ADDRESS_GROUP = frozenset(("host", "port", "listen", "unix_socket", "sockets"))

#: the format of log lines when maitre sets up logging itself
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"

#: the order of ``merge``'s sources, weakest first; ``--check-config`` names them
SOURCE_ORDER = ("default", "file", "paste", "environment", "command line")


class StartError(OSError):
    """The server cannot start for a reason other than its sockets: a pid file
    that cannot be written, a worker process that cannot be forked. Its message
    says which (not "cannot listen")."""


def create_pid_file(pid_file: Any) -> None:
    """``PidFile.create()``, its OSError reported as what it is (not as a socket's)."""
    try:
        pid_file.create()
    except OSError as exc:
        raise StartError(
            f"pid_file: cannot write {pid_file.path}: {exc.strerror or exc}"
        ) from None


def suggest(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean X?"`` (or ``X or Y``) with the choices closest to
    ``word``, by difflib's ratio; empty when none is close."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(prefix + c for c in close) + "?"


# ------------------------------------------------------------------ sources


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings in ``MAITRE_<SETTING>`` variables, as strings. A variable with
    the prefix that names no setting but is close to one gets a warning on stderr
    (a typo would otherwise be silently ignored); others are left alone (the
    prefix is not reserved)."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    names = [s.name.upper() for s in SETTINGS]
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in SETTINGS_BY_NAME:
            found[name] = value
        else:
            hint = difflib.get_close_matches(key[len(ENV_PREFIX) :], names, 1, 0.8)
            if hint:
                print(
                    f"Warning: {key} is not a setting (did you mean "
                    f"{ENV_PREFIX}{hint[0]}?); it is ignored",
                    file=sys.stderr,
                )
    return found


def _load_toml_module() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli  # the dependency maitre declares for Python < 3.11
    except ImportError:  # pragma: no cover - installed without its dependencies
        raise ValueError("--config needs the tomli package on Python < 3.11") from None
    return tomli


def file_settings(path: str) -> dict[str, Any]:
    """The settings of a TOML file: its top-level keys are setting names (with
    ``_`` or ``-``), its values TOML's strings, integers, booleans or arrays."""
    toml = _load_toml_module()
    try:
        with open(path, "rb") as f:
            data = toml.load(f)
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path}: {exc.strerror}") from None
    except toml.TOMLDecodeError as exc:
        raise ValueError(f"--config: {path} is not valid TOML: {exc}") from None
    settings: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in SETTINGS_BY_NAME:
            raise ValueError(
                f"--config: {path}: {key!r} is not a setting"
                + suggest(name, SETTINGS_BY_NAME)
            )
        if isinstance(value, dict):
            raise ValueError(
                f"--config: {path}: {key} is a table; settings are top-level keys"
            )
        settings[name] = value
    return settings


def split_paste(spec: str) -> tuple[str, str]:
    """``FILE[#section]`` to the absolute path and the section name (``main`` by
    default)."""
    path, _, section = spec.partition("#")
    return os.path.abspath(path), section or "main"


def paste_settings(spec: str) -> dict[str, Any]:
    """The ``[server:...]`` section of a PasteDeploy ini (``--paste``): the one
    named like the application's section, else ``[server:main]``, else none. With
    logging sections in the ini (``[loggers]``, as pserve reads them), also
    ``log_config`` naming the file."""
    path, section = split_paste(spec)
    if not os.path.isfile(path):
        raise ValueError(f"--paste: no such file: {path}")
    try:
        from paste.deploy.loadwsgi import SERVER, loadcontext
    except ImportError:
        raise ValueError("--paste needs the PasteDeploy package") from None
    import configparser

    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise ValueError(f"--paste: {path}: {exc}") from None
    servers = {
        s.split(":", 1)[1].strip() for s in parser.sections() if s.startswith("server:")
    }
    settings: dict[str, Any] = {}
    name = section if section in servers else "main" if "main" in servers else None
    if name is not None:
        try:
            local_conf = loadcontext(SERVER, "config:" + path, name=name).local_conf
        except Exception:  # PasteDeploy's errors have no common base
            # No ``use`` line, or one naming a server that is not installed: the
            # section's own keys, as PasteDeploy would give them.
            local_conf = _raw_section(path, f"server:{name}")
        for key, value in local_conf.items():
            if key not in SETTINGS_BY_NAME:
                raise ValueError(
                    f"--paste: {path} [server:{name}]: {key!r} is not a setting"
                    + suggest(key, SETTINGS_BY_NAME)
                )
            settings[key] = value
    if parser.has_section("loggers") and "log_config" not in settings:
        settings["log_config"] = path
    return settings


def _raw_section(path: str, section: str) -> dict[str, str]:
    """The keys of one section of an ini file, without [DEFAULT]'s and ``use``,
    with ``%(here)s`` and ``%(__file__)s`` interpolated as PasteDeploy does."""
    import configparser

    parser = configparser.ConfigParser(default_section="\0none")
    extra = {"here": os.path.dirname(path), "__file__": path}
    try:
        parser.read(path)
        items = parser.items(section, vars=extra)
    except configparser.Error as exc:
        raise ValueError(f"--paste: {path} [{section}]: {exc}") from None
    return {k: v for k, v in items if k not in extra and k != "use"}


# ------------------------------------------------------------------ merging


def merge(layers: list[tuple[str, Mapping[str, Any]]]) -> tuple[dict, dict]:
    """The keyword arguments of ``Adjustments`` from ``(source, settings)`` layers
    given weakest first, and the source of each setting given (those absent come
    from the defaults). A layer setting any address setting replaces every address
    setting of the layers before it."""
    kw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, settings in layers:
        if ADDRESS_GROUP & settings.keys():
            for name in ADDRESS_GROUP:
                kw.pop(name, None)
                sources.pop(name, None)
        for name, value in settings.items():
            kw[name] = value
            sources[name] = source
    return kw, sources


def describe(
    adj: Adjustments, kw: Mapping[str, Any], sources: Mapping[str, str]
) -> str:
    """``--check-config``'s report: every setting, its effective value and where
    it came from, one line each, in the table's order."""
    rows = []
    for s in SETTINGS:
        if s.name in ("host", "port") and "listen" in kw:
            source = "unused (listen is set)"
        else:
            source = sources.get(s.name, "default")
        value = format_value(s, getattr(adj, s.name))
        if s.name == "listen":
            value = " ".join(_listen_text(a) for a in adj.listen) or "none"
        if s.name == "ssl_private_key_password" and getattr(adj, s.name):
            value = "(hidden)"
        rows.append((s.name, value, source))
    width = max(len(r[0]) for r in rows)
    vwidth = min(max(len(r[1]) for r in rows), 40)
    return "\n".join(
        f"{name:<{width}}  {value:<{vwidth}}  {source}" for name, value, source in rows
    )


def format_value(setting: Setting, value: Any) -> str:
    """A setting's value as ``--help`` and ``--check-config`` show it."""
    if setting.convert is asbool:
        return "on" if value else "off"
    if setting.name == "unix_socket_perms" and isinstance(value, int):
        return format(value, "o")
    if value is None:
        return "unset"
    if isinstance(value, (list, set, tuple)):
        if not value:
            return "none"
        return " ".join(
            sorted(str(v.fileno()) if hasattr(v, "fileno") else str(v) for v in value)
        )
    if value == "":
        return "'' (empty)"
    return str(value)


def _listen_text(address: Any) -> str:
    host, port = address[3][0], address[3][1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ------------------------------------------------------------------ logging


def configure_logging(log_level: str | None, log_config: str | None) -> None:
    """Set up logging for the server: ``log_config``'s file when given; else, when
    neither the root logger nor the ``maitre`` logger has a handler (the
    application has not set logging up), a handler on stderr with ``LOG_FORMAT``.
    Then the ``maitre`` logger's level: ``log_level`` (``maitre.access``, the
    access log's, stays INFO unless set), else INFO unless it has one.
    Raises ``ValueError`` naming ``log_config`` for a file that cannot be used."""
    maitre_logger = logging.getLogger("maitre")
    if log_config:
        _apply_log_config(log_config)
    elif not logging.getLogger().handlers and not maitre_logger.handlers:
        logging.basicConfig(format=LOG_FORMAT)
    if log_level:
        maitre_logger.setLevel(log_level.upper())
        # The access log's lines (access_log = logging) are not the server's
        # messages: a quieter server log keeps them, as gunicorn's loglevel does.
        access = logging.getLogger("maitre.access")
        if access.level == logging.NOTSET:
            access.setLevel(logging.INFO)
    elif maitre_logger.level == logging.NOTSET:
        maitre_logger.setLevel(logging.INFO)


def _apply_log_config(path: str) -> None:
    try:
        if path.endswith(".json"):
            with open(path) as f:
                config = json.load(f)
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        else:
            logging.config.fileConfig(
                path,
                defaults={
                    "here": os.path.dirname(os.path.abspath(path)),
                    "__file__": path,
                },
                disable_existing_loggers=False,
            )
    except OSError as exc:
        raise ValueError(f"log_config: cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # json, configparser and logging.config errors alike
        raise ValueError(
            f"log_config: {path} is not a usable logging configuration: "
            f"{type(exc).__name__}: {exc}"
        ) from None
