"""Function helpers with Celery's module path (``celery.utils.functional``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def argument_checker(fun: Callable[..., Any]) -> Callable[..., None]:
    """A function that accepts exactly the arguments ``fun`` does and does nothing, so
    Python's own call checks them (Celery builds the same kind of stub): a fraction of
    ``inspect.Signature.bind``'s cost, which showed on every ``delay()``."""
    kind = inspect.Parameter
    params: list[str] = []
    positional_only = 0  # how many leading entries are positional-only
    for param in inspect.signature(fun).parameters.values():
        if param.kind is kind.KEYWORD_ONLY and not any(p.startswith("*") for p in params):
            params.append("*")
        if param.kind is kind.VAR_POSITIONAL:
            params.append(f"*{param.name}")
        elif param.kind is kind.VAR_KEYWORD:
            params.append(f"**{param.name}")
        else:
            params.append(param.name + ("" if param.default is param.empty else "=None"))
        if param.kind is kind.POSITIONAL_ONLY:
            positional_only = len(params)
    if positional_only:
        params.insert(positional_only, "/")
    namespace: dict[str, Any] = {}
    exec(f"def check({', '.join(params)}):\n    pass\n", namespace)  # parameter names only
    checker: Callable[..., None] = namespace["check"]
    return checker
