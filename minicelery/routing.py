"""Which queue a task goes to: ``task_routes`` (dicts with exact names or globs, functions,
or a list of them), as Celery's router reads them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

Route = dict[str, Any]


def _normalise(route: Any) -> Route | None:
    if route is None:
        return None
    if isinstance(route, str):
        return {"queue": route}
    if isinstance(route, Mapping):
        return dict(route)
    raise TypeError(f"a route must be a queue name or a mapping, got {route!r}")


def _match_mapping(routes: Mapping[Any, Any], name: str) -> Route | None:
    if name in routes:
        return _normalise(routes[name])
    for pattern, route in routes.items():
        if isinstance(pattern, re.Pattern):
            if pattern.match(name):
                return _normalise(route)
        elif (
            isinstance(pattern, str)
            and any(c in pattern for c in "*?[")
            and fnmatch.fnmatchcase(name, pattern)
        ):
            return _normalise(route)
    return None


def _expand(routes: Any) -> list[Any]:
    if routes is None:
        return []
    if isinstance(routes, (list, tuple)):
        return list(routes)
    return [routes]


def lookup_route(
    routes: Any, name: str, args: Any, kwargs: Any, options: Mapping[str, Any], task: Any = None
) -> Route:
    """The first route that matches ``name``; ``{}`` when none does."""
    for router in _expand(routes):
        route: Route | None
        if isinstance(router, Mapping):
            route = _match_mapping(router, name)
        elif callable(router):
            route = _normalise(_call_router(router, name, args, kwargs, options, task))
        else:
            raise TypeError(f"unsupported entry in task_routes: {router!r}")
        if route:
            return route
    return {}


def _call_router(
    router: Callable[..., Any],
    name: str,
    args: Any,
    kwargs: Any,
    options: Mapping[str, Any],
    task: Any,
) -> Any:
    try:
        return router(name, args, kwargs, options, task=task)
    except TypeError:
        return router(name, args, kwargs, options)
