"""What the tasks page and a task's page show, gathered from the history, the result backend
and the worker state (the templates only lay it out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .. import states
from ..events.view import SHOWN_STATES
from ..exceptions import MiniceleryError
from .queries import TaskQuery, select_tasks, task_info
from .records import timeline

if TYPE_CHECKING:
    from .service import Dashboard

PAGE_SIZE = 25
STATES = SHOWN_STATES


def tasks_page(dashboard: Dashboard, params: Mapping[str, str]) -> dict[str, Any]:
    """One page of the task table, filtered and sorted as the query asks."""
    page = max(int(params.get("page") or 1) if str(params.get("page") or "1").isdigit() else 1, 1)
    query = TaskQuery.from_params(params)
    query.sort_by = query.sort_by or None
    query.limit, query.offset = PAGE_SIZE + 1, (page - 1) * PAGE_SIZE
    found = select_tasks(dashboard.history, query)
    kept = {k: v for k, v in params.items() if k != "page" and v}
    return {
        "tasks": found[:PAGE_SIZE],
        "page": page,
        "has_next": len(found) > PAGE_SIZE,
        "query": kept,
        "query_string": urlencode(kept),
        "states": STATES,
        "task_names": sorted(dashboard.task_types()),
        "worker_names": sorted(dashboard.collector.state.workers),
        "sort_by": params.get("sort_by") or "",
    }


def task_page(dashboard: Dashboard, task_id: str) -> dict[str, Any] | None:
    """A task's page: its record, its timeline, what the result backend holds for it
    (result or exception and traceback, group), its parent and children."""
    info = task_info(dashboard.history, task_id)
    meta = _meta(dashboard, task_id)
    if info is None and meta.get("status") in (None, states.PENDING):
        return None
    record = dashboard.history.get(task_id) or {"uuid": task_id, "times": {}}
    children = list(dict.fromkeys([*(info or {}).get("children", []), *_children(meta)]))
    start = timeline(record)[0][1] if timeline(record) else None
    return {
        "task": info or {"uuid": task_id, "state": meta.get("status"), "name": meta.get("name")},
        "timeline": [
            (name, when, None if start is None else when - start) for name, when in timeline(record)
        ],
        "meta": meta,
        "children": children,
        "group_id": meta.get("group_id"),
        "parent_id": (info or {}).get("parent_id") or meta.get("parent_id"),
        "root_id": (info or {}).get("root_id"),
        "queue": (record.get("fields") or {}).get("queue") or (info or {}).get("routing_key"),
    }


def _meta(dashboard: Dashboard, task_id: str) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = dashboard.app.backend.get_meta(task_id)
    except MiniceleryError:
        return {}
    return meta


def _children(meta: Mapping[str, Any]) -> list[str]:
    """Child task ids from the result backend's ``children`` (result tuples)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str):
            found.append(value[0])
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for child in meta.get("children") or ():
        walk(child)
    return found
