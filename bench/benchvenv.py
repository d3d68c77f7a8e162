"""What the bench scripts that install their own peers share (``h2.py``,
``rollout.py``): the progress line, the virtualenv's Python and what is installed in
it, and a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def installed(venv: Path, module: str) -> bool:
    """Whether ``module`` imports in the virtualenv (run from ``/``, so that this
    checkout's own directories do not count)."""
    probe = [python(venv), "-c", f"import {module}"]
    return subprocess.run(probe, capture_output=True, cwd="/").returncode == 0


def version(venv: Path, module: str) -> str:
    """The installed distribution's version, ``?`` when there is none."""
    code = f"from importlib.metadata import version; print(version({module!r}))"
    out = subprocess.run(
        [python(venv), "-c", code], capture_output=True, text=True, cwd="/"
    )
    return out.stdout.strip() or "?"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
