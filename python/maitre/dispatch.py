"""Several applications in one server, by path: CherryPy's ``WSGIPathInfoDispatcher``.

    from maitre.dispatch import PathDispatcher
    app = PathDispatcher({"/": site, "/api": api})

The longest prefix that matches wins; a prefix matches a whole path segment only
(``/api`` takes ``/api`` and ``/api/x``, not ``/apiary``); the matched prefix moves
from ``PATH_INFO`` to the end of ``SCRIPT_NAME``, so it composes with ``url_prefix``
(which put its own prefix there first). A path no prefix matches gets a 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

__all__ = ["PathDispatcher"]


class PathDispatcher:
    """A WSGI application that hands each request to the application mounted at the
    longest matching path prefix."""

    def __init__(
        self, apps: Mapping[str, Callable] | Iterable[tuple[str, Callable]]
    ) -> None:
        items = list(apps.items()) if hasattr(apps, "items") else list(apps)
        mounts = []
        for prefix, app in items:
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ValueError(f"mount prefix must start with '/': {prefix!r}")
            if not callable(app):
                raise ValueError(
                    f"the application mounted at {prefix!r} is not callable"
                )
            # "/" is stored as "": it matches every path.
            mounts.append((prefix.rstrip("/"), app))
        seen = set()
        for prefix, _ in mounts:
            if prefix in seen:
                raise ValueError(f"two applications mounted at {prefix or '/'!r}")
            seen.add(prefix)
        # Longest first: the first match is the longest.
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        self.apps = mounts

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        path = environ.get("PATH_INFO") or "/"
        for prefix, app in self.apps:
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return app(environ, start_response)
        body = b"Not Found\n"
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]
