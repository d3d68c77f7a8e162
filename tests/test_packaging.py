"""What the installed package carries: the tests run against the wheel that
scripts/build-dist made (scripts/test installs it), so a file or an entry point
missing from the wheel fails here, not on a user's machine.

With ``MAITRE_TEST_WHEEL`` (set by scripts/test to the wheel it installed), the
installed files are also compared with the wheel's, and the package must not be
imported from the source tree."""

from __future__ import annotations

import os
import zipfile
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest
from helpers import maitre_only

pytestmark = maitre_only("maitre's own packaging")

ROOT = Path(__file__).resolve().parent.parent


def _group(name):
    eps = entry_points()
    if hasattr(eps, "select"):
        return eps.select(group=name)
    return eps.get(name, [])  # Python 3.9


def test_typing_files_are_installed():
    import maitre

    package = Path(maitre.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_maitre.pyi").is_file()


def test_every_module_imports():
    import importlib

    import maitre

    for path in Path(maitre.__file__).parent.glob("*.py"):
        if path.stem != "__main__":
            importlib.import_module(
                f"maitre.{path.stem}" if path.stem != "__init__" else "maitre"
            )
    importlib.import_module("maitre._maitre")


def test_console_script_entry_point():
    (ep,) = [ep for ep in _group("console_scripts") if ep.name == "maitre-serve"]
    from maitre.runner import main

    assert ep.value == "maitre.runner:main"
    assert ep.load() is main


def test_paste_server_runner_entry_point():
    (ep,) = [ep for ep in _group("paste.server_runner") if ep.dist.name == "maitre"]
    import maitre

    assert ep.name == "main"
    assert ep.load() is maitre.serve_paste


@pytest.mark.skipif(
    not os.environ.get("MAITRE_TEST_WHEEL"), reason="MAITRE_TEST_WHEEL not set"
)
def test_installed_from_the_wheel():
    import maitre

    here = Path(maitre.__file__).resolve()
    assert ROOT / "python" not in here.parents, f"imported from the tree: {here}"
    wheel = Path(os.environ["MAITRE_TEST_WHEEL"])
    dist = distribution("maitre")
    assert wheel.name.startswith(f"maitre-{dist.version}-")
    in_wheel = {
        n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("/RECORD")
    }
    installed = {str(f) for f in dist.files or ()}
    missing = {n for n in in_wheel if n.startswith("maitre/")} - installed
    assert not missing
    for name in in_wheel:
        if name.startswith("maitre/"):
            assert Path(dist.locate_file(name)).is_file(), name
