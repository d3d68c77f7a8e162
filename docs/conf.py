"""Sphinx configuration of maitre's documentation: ``bash scripts/docs`` builds it into
docs/_build/html with warnings as errors. The pages are Markdown (MyST); the settings
and metrics references are generated at build time by docs/_ext/maitre_docs.py from
the installed maitre, so they cannot drift from the code."""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "maitre"
author = "the maitre authors"
release = _version("maitre")
version = release

extensions = ["myst_parser", "maitre_docs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

myst_heading_anchors = 3
# "--listen" and '*' stay as typed (no dashes or curly quotes in flags)
smartquotes = False
myst_enable_extensions = ["deflist"]

html_theme = "alabaster"
html_title = f"maitre {release}"
html_theme_options = {
    "description": "A WSGI server with its HTTP engine in Rust",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
