"""The app's routes as one flat list, whatever FastAPI version: newer ones keep included routers as nested
branches (`app.routes` then holds `_IncludedRouter`s), older ones copy their routes into the app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastapi.routing
from starlette.routing import compile_path


def flat_routes(routes: Sequence[Any]) -> list[Any]:
    """Each route with its full `path`, `methods` and `endpoint`."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iter_contexts(routes)) if iter_contexts is not None else list(routes)


def methods_for(routes: Sequence[Any], path: str) -> set[str]:
    """Every method of every route whose path pattern matches `path` (several routes may share a path)."""
    methods: set[str] = set()
    for route in flat_routes(routes):
        pattern, route_methods = getattr(route, "path", None), getattr(route, "methods", None)
        if pattern and route_methods and compile_path(pattern)[0].match(path):
            methods.update(route_methods)
    return methods
