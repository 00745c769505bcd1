"""A task's record as the dashboard keeps it: the events module's ``Task`` (latest state by
Celery's precedence, every field seen, the time of each event), as a plain dict that can be
stored, merged again after a restart, and shown in Flower's JSON shape."""

from __future__ import annotations

from typing import Any

from ..events.state import Task

# Flower's (Celery's ``Task.as_dict``) keys, in its order; what the API always answers with.
FLOWER_FIELDS = (
    "uuid",
    "name",
    "state",
    "received",
    "sent",
    "started",
    "rejected",
    "succeeded",
    "failed",
    "retried",
    "revoked",
    "args",
    "kwargs",
    "eta",
    "expires",
    "retries",
    "worker",
    "result",
    "exception",
    "timestamp",
    "runtime",
    "traceback",
    "exchange",
    "routing_key",
    "clock",
    "client",
    "root_id",
    "parent_id",
    "children",
)
# The order a task's life is drawn in on its page.
TIMELINE = ("sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected")


def to_task(record: dict[str, Any]) -> Task:
    """The ``Task`` a stored record describes, ready for more events."""
    return Task(
        uuid=record["uuid"],
        name=record.get("name"),
        state=record.get("state") or "PENDING",
        worker=record.get("worker"),
        client=record.get("client"),
        timestamp=record.get("timestamp"),
        fields=dict(record.get("fields") or {}),
        times=dict(record.get("times") or {}),
    )


def to_record(task: Task) -> dict[str, Any]:
    return {
        "uuid": task.uuid,
        "name": task.name,
        "state": task.state,
        "worker": task.worker,
        "client": task.client,
        "timestamp": task.timestamp,
        "fields": task.fields,
        "times": task.times,
    }


def merge(task: Task, event: dict[str, Any]) -> None:
    """Apply one task event; the event's logical clock is kept, as Celery's task has one."""
    task.event(event)
    clock = event.get("clock")
    if isinstance(clock, int):
        task.fields["clock"] = max(clock, int(task.fields.get("clock") or 0))


def flower_dict(record: dict[str, Any], children: list[str] | None = None) -> dict[str, Any]:
    """The record as Flower's API shows a task: every key of Celery's ``Task.as_dict``,
    None where nothing is known, ``worker`` as the worker's host name."""
    fields, times = record.get("fields") or {}, record.get("times") or {}
    out: dict[str, Any] = {}
    for key in FLOWER_FIELDS:
        if key in ("uuid", "name", "state", "worker", "client", "timestamp"):
            out[key] = record.get(key)
        elif key in times:
            out[key] = times[key]
        else:
            out[key] = fields.get(key)
    out["children"] = list(children or [])
    if out["retries"] is None:
        out["retries"] = 0
    return out


def first_seen(record: dict[str, Any]) -> float:
    """When the task was first seen: the earliest of its event times."""
    times = [value for value in (record.get("times") or {}).values() if value]
    return min(times) if times else float(record.get("timestamp") or 0.0)


def timeline(record: dict[str, Any]) -> list[tuple[str, float]]:
    """``(event, time)`` of each step of the task's life that was seen, in time order."""
    times = record.get("times") or {}
    steps = [(name, float(times[name])) for name in TIMELINE if times.get(name)]
    return sorted(steps, key=lambda step: step[1])
