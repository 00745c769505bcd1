"""Rebuilding result handles from their ``as_tuple()`` form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celery
    from ..result import ResultBase


def result_from_tuple(value: Any, app: Celery) -> ResultBase:
    """``[[id, parent], None]`` → AsyncResult; ``[[id, parent], [children...]]`` → GroupResult."""
    from ..result import AsyncResult, GroupResult

    (task_id, parent_tuple), nodes = value
    parent = result_from_tuple(parent_tuple, app) if parent_tuple else None
    if nodes is not None:
        children = [result_from_tuple(node, app) for node in nodes]
        return GroupResult(
            task_id, [c for c in children if isinstance(c, AsyncResult)], parent, app
        )
    return AsyncResult(task_id, app=app, parent=parent)
