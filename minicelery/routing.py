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
        return [_resolve(router) for router in routes]
    return [_resolve(routes)]


def _resolve(router: Any) -> Any:
    """A router named by its import path (``'proj.routers.route_task'``), as Celery allows;
    a class is instantiated. Objects with Celery's old ``route_for_task`` method work too."""
    if isinstance(router, str):
        import importlib

        module_name, _, attr = router.rpartition(".")
        try:
            router = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise TypeError(f"task_routes: cannot import router {router!r} ({exc})") from exc
        if isinstance(router, type):
            router = router()
    route_for_task = getattr(router, "route_for_task", None)
    if route_for_task is not None and not isinstance(router, Mapping):
        return lambda name, args, kwargs, options, task=None: route_for_task(name, args, kwargs)
    return router


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
