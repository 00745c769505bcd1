"""Finding tasks in the history: Flower's ``/api/tasks`` parameters (``limit``, ``offset``,
``state``, ``workername``, ``taskname``, ``sort_by``, ``search``), shared by the tasks page."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .history import History
from .records import flower_dict

SORT_KEYS = frozenset(
    {"name", "state", "received", "started", "succeeded", "runtime", "timestamp", "worker"}
)
SEARCHED = ("uuid", "name", "args", "kwargs", "result", "exception")


@dataclass
class TaskQuery:
    limit: int | None = None
    offset: int = 0
    state: str | None = None
    worker: str | None = None
    name: str | None = None
    search: str | None = None
    sort_by: str | None = None
    received_start: float | None = None
    received_end: float | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TaskQuery:
        """From query parameters; Flower's ``All`` means no filter."""

        def pick(name: str) -> str | None:
            value = params.get(name)
            return None if value in (None, "", "All") else value

        limit = pick("limit")
        sort_by = pick("sort_by")
        if sort_by and sort_by.lstrip("-") not in SORT_KEYS:
            sort_by = None
        return cls(
            limit=int(limit) if limit and limit.isdigit() else None,
            offset=max(int(params.get("offset") or 0), 0)
            if (params.get("offset") or "0").isdigit()
            else 0,
            state=pick("state"),
            worker=pick("workername"),
            name=pick("taskname"),
            search=pick("search"),
            sort_by=sort_by,
            received_start=_minute(pick("received_start")),
            received_end=_minute(pick("received_end")),
        )

    def matches(self, record: dict[str, Any]) -> bool:
        if self.state and record.get("state") != self.state:
            return False
        if self.worker and record.get("worker") != self.worker:
            return False
        if self.name and record.get("name") != self.name:
            return False
        if self.received_start is not None or self.received_end is not None:
            received = (record.get("times") or {}).get("received")
            if received is None or not self._in_range(float(received)):
                return False
        return not self.search or self._found(record)

    def _in_range(self, when: float) -> bool:
        start, end = self.received_start, self.received_end
        return (start is None or when >= start) and (end is None or when <= end)

    def _found(self, record: dict[str, Any]) -> bool:
        needle = (self.search or "").lower()
        fields = record.get("fields") or {}
        for key in SEARCHED:
            value = record.get(key) if key in ("uuid", "name") else fields.get(key)
            if value is not None and needle in str(value).lower():
                return True
        return False


def _minute(value: str | None) -> float | None:
    """Flower's ``received_start``/``received_end``: ``YYYY-MM-DD HH:MM``, local time."""
    if value is None:
        return None
    try:
        return time.mktime(dt.datetime.strptime(value, "%Y-%m-%d %H:%M").timetuple())
    except ValueError:
        return None


def select_tasks(history: History, query: TaskQuery) -> list[dict[str, Any]]:
    """Matching tasks in Flower's shape, newest first unless sorted; ``limit`` of them
    after ``offset``. Without sorting, the scan stops as soon as the page is full."""
    end = None if query.limit is None else query.offset + query.limit
    found: list[dict[str, Any]] = []
    for record in history.newest():
        if query.matches(record):
            found.append(record)
            if query.sort_by is None and end is not None and len(found) >= end:
                break
    shown = [flower_dict(record) for record in found]
    if query.sort_by:
        key = query.sort_by.lstrip("-")
        shown.sort(key=lambda task: _sort_key(task.get(key)), reverse=query.sort_by.startswith("-"))
    return shown[query.offset : end]


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    return (1, value) if isinstance(value, (int, float)) else (2, str(value))


def task_info(history: History, task_id: str) -> dict[str, Any] | None:
    """``/api/task/info``: the task in Flower's shape, with the tasks it sent."""
    record = history.get(task_id)
    if record is None:
        return None
    return flower_dict(record, history.children(task_id))
