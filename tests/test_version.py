"""One version everywhere: ``maitre-serve --version``, ``python -m maitre --version``,
``maitre.__version__``, the installed distribution's metadata and, in a checkout,
``version`` in Cargo.toml (the one place it is written; maturin copies it into the
wheel's metadata)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import maitre_only

pytestmark = maitre_only("maitre's own version")

CARGO_TOML = Path(__file__).resolve().parent.parent / "Cargo.toml"


@pytest.fixture(scope="module")
def installed():
    import maitre

    return maitre.__version__


def test_dunder_version_is_the_metadata(installed):
    assert installed == version("maitre")
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", installed), installed


def test_cargo_toml_is_the_source(installed):
    if not CARGO_TOML.exists():
        pytest.skip("not run from a checkout")
    text = CARGO_TOML.read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    cargo = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)
    assert installed == cargo


def test_pyproject_does_not_write_it_again():
    pyproject = CARGO_TOML.with_name("pyproject.toml")
    if not pyproject.exists():
        pytest.skip("not run from a checkout")
    text = pyproject.read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M)
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, re.M)


@pytest.mark.parametrize(
    "command",
    [
        [str(Path(sys.executable).with_name("maitre-serve")), "--version"],
        [sys.executable, "-m", "maitre", "--version"],
    ],
    ids=["maitre-serve", "python-m-maitre"],
)
def test_command_line_version(installed, command):
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == f"maitre {installed}"
