"""From ``apply_async`` options to the message's options: queue, times, limits, links, and
the parent/root ids of a task sent from inside another task."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from .._state import current_request
from ..message import MessageOptions
from ..utils import uuid
from .stamping import message_stamps

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Task


#: ``apply_async`` options that are message properties (AMQP's), which the worker gives the
#: task as ``request.properties`` as Celery's does.
MESSAGE_PROPERTIES = (
    "app_id", "user_id", "message_id", "timestamp", "type", "expiration", "cluster_id",
    "delivery_mode",
)  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.timedelta):
        return _now() + value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _now() + dt.timedelta(seconds=value)
    if isinstance(value, str):
        return _as_datetime(dt.datetime.fromisoformat(value))
    raise TypeError(f"expected seconds or a datetime, got {value!r}")


def _links(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items]


def _nesting(options: dict[str, Any]) -> dict[str, Any]:
    """The ``replaced_task_nesting`` header of a task sent by ``Task.replace()``."""
    nesting = options.get("replaced_task_nesting")
    return {"replaced_task_nesting": int(nesting)} if nesting else {}


def _pick(
    options: dict[str, Any],
    route: dict[str, Any],
    task: Task[Any, Any] | None,
    key: str,
    default: Any,
) -> Any:
    """Celery's precedence: the call's options, then the task, then the route, then default."""
    if options.get(key) is not None:
        return options[key]
    if task is not None and getattr(task, key, None) is not None:
        return getattr(task, key)
    if route.get(key) is not None:
        return route[key]
    return default


def _declared(options: dict[str, Any], task: Task[Any, Any] | None, key: str) -> Any:
    """A limit as Celery sends it: the call's (an explicit None clears it), else the task's
    declared one, so the worker and ``task.request`` see the limit the task runs under."""
    if key in options:
        return options[key]
    return getattr(task, key, None) if task is not None else None


def message_options(
    app: Celery,
    name: str,
    task: Task[Any, Any] | None,
    route: dict[str, Any],
    options: dict[str, Any],
) -> MessageOptions:
    conf = app.conf
    countdown = options.get("countdown")
    eta = (
        _as_datetime(options.get("eta"))
        if options.get("eta") is not None
        else (_now() + dt.timedelta(seconds=countdown) if countdown is not None else None)
    )
    expires = options.get("expires")
    if expires is None and task is not None:
        expires = task.expires
    parent = current_request()
    in_worker = parent is not None and not parent.called_directly
    task_id = options.get("task_id") or uuid()
    embed = dict(options.get("embed") or {})
    if options.get("link") is not None:
        embed["callbacks"] = _links(options["link"])
    if options.get("link_error") is not None:
        embed["errbacks"] = _links(options["link_error"])
    for key in ("chain", "chord"):
        if options.get(key) is not None:
            embed[key] = options[key]
    ignore_result = options.get("ignore_result")
    if ignore_result is None and task is not None:
        # Unknown here (sent by name): None, and the worker's own task decides, as in Celery.
        ignore_result = task.option("ignore_result")
    return MessageOptions(
        task_id=task_id,
        queue=_pick(options, route, task, "queue", conf.task_default_queue),
        serializer=options.get("serializer")
        or (task.option("serializer") if task else conf.task_serializer),
        eta=eta,
        expires=_as_datetime(expires),
        priority=_pick(options, route, task, "priority", conf.task_default_priority),
        retries=int(options.get("retries") or 0),
        root_id=options.get("root_id") or (parent.root_id if in_worker else None),
        parent_id=options.get("parent_id") or (parent.id if in_worker else None),
        group_id=options.get("group_id"),
        group_index=options.get("group_index"),
        time_limit=_declared(options, task, "time_limit"),
        soft_time_limit=_declared(options, task, "soft_time_limit"),
        ignore_result=None if ignore_result is None else bool(ignore_result),
        reply_to=options.get("reply_to"),
        shadow=options.get("shadow"),
        headers={
            **(options.get("headers") or {}),
            **message_stamps(options),
            **_nesting(options),
        },
        embed=embed,
        properties={k: options[k] for k in MESSAGE_PROPERTIES if options.get(k) is not None},
    )
