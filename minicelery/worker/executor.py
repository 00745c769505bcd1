"""Run one task from its message: decode it, build the request, refuse expired ones, then
hand over to :mod:`minicelery.trace`. No processes, no signals: pools call this, and unit
tests call it directly."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..events.worker import outcome_fields
from ..exceptions import MessageError, SerializationError, TaskRevokedError
from ..message import TaskMessage, decode_message, parse_iso
from ..serialization import exception_to_dict
from ..task import Context, Task, custom_headers
from ..trace import Outcome, build_meta, run_task, store_result, utcnow, workflow_abandoned

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger("minicelery.worker.job")

__all__ = [
    "Outcome", "build_meta", "execute_message", "make_request", "message_runner", "run_task",
    "store_result",
]  # fmt: skip


def make_request(
    task: Task[Any, Any],
    message: TaskMessage,
    args: list[Any],
    kwargs: dict[str, Any],
    embed: dict[str, Any],
    hostname: str | None,
    queue: str | None,
) -> Context:
    h = message.headers
    return Context(
        id=h["id"],
        task=task.name,
        args=args,
        kwargs=kwargs,
        retries=int(h.get("retries") or 0),
        is_eager=False,
        eta=h.get("eta"),
        expires=h.get("expires"),
        hostname=hostname,
        delivery_info={
            "exchange": "",
            "routing_key": queue,
            "priority": message.properties.get("priority"),
            "redelivered": bool(message.properties.get("redelivered")),
        },
        root_id=h.get("root_id"),
        parent_id=h.get("parent_id"),
        group=h.get("group"),
        group_index=h.get("group_index"),
        correlation_id=message.properties.get("correlation_id"),
        origin=h.get("origin"),
        headers=custom_headers(h),
        properties=message.properties,
        reply_to=message.properties.get("reply_to"),
        callbacks=embed.get("callbacks"),
        errbacks=embed.get("errbacks"),
        chain=embed.get("chain"),
        chord=embed.get("chord"),
        timelimit=h.get("timelimit"),
        ignore_result=h.get("ignore_result"),
        called_directly=False,
        shadow=h.get("shadow"),
        stamped_headers=h.get("stamped_headers"),
        stamps=h.get("stamps"),
        replaced_task_nesting=int(h.get("replaced_task_nesting") or 0),
    )


def execute_message(
    app: Celery,
    message: TaskMessage,
    hostname: str | None,
    queue: str | None,
    accept: frozenset[str],
) -> Outcome:
    """Decode and run one message whose task is registered here."""
    task = app.tasks[message.task]
    try:
        args, kwargs, embed = message.decode_body(accept)
    except (SerializationError, MessageError) as exc:
        reason = f"undecodable body: {exc}"
        store_result(
            app, message.id, build_meta(message.id, states.FAILURE, exception_to_dict(exc))
        )
        return Outcome(states.REJECTED, dead_reason=reason, exc=exc)
    request = make_request(task, message, args, kwargs, embed, hostname, queue)
    expires = parse_iso(message.headers.get("expires"))
    if expires is not None and expires < utcnow():
        return _revoke(app, task, request, "expired")
    return run_task(app, task, request)


def _revoke(app: Celery, task: Task[Any, Any], request: Context, reason: str) -> Outcome:
    assert request.id is not None
    exc = TaskRevokedError(reason)
    store_result(
        app,
        request.id,
        build_meta(request.id, states.REVOKED, exception_to_dict(exc), request, app=app),
    )
    logger.info("Discarding revoked task: %s[%s] (%s)", task.name, request.id, reason)
    signals.task_revoked.send(
        sender=task, request=request, terminated=False, signum=None, expired=reason == "expired"
    )
    workflow_abandoned(app, request, exc, states.REVOKED)
    return Outcome(states.REVOKED, exc=exc)


def run_logged(
    app: Celery,
    queue: str,
    data: bytes,
    hostname: str | None,
    accept: frozenset[str],
    with_event_fields: bool = False,
    message: TaskMessage | None = None,
) -> tuple[str, bool, str | None, dict[str, Any] | None]:
    """Run one message (in a child process or a pool thread) and log its outcome as Celery's
    worker does; returns what the pool reports: state, requeue, dead-letter reason, and the
    fields of the task's final event when events are on. ``message``: ``data`` already
    decoded (a consuming child decodes it to admit it)."""
    if message is None:
        message = decode_message(data)
    outcome = execute_message(app, message, hostname, queue, accept)
    name, task_id = message.task, message.id
    if outcome.state == states.SUCCESS:
        logger.info(
            "Task %s[%s] succeeded in %.6fs: %r", name, task_id, outcome.runtime, outcome.retval
        )
    elif outcome.state == states.FAILURE:
        logger.error(
            "Task %s[%s] raised unexpected: %r\n%s",
            name, task_id, outcome.exc, outcome.traceback or "",
        )  # fmt: skip
    elif outcome.state == states.RETRY:
        logger.info("Task %s[%s] retry: %s", name, task_id, outcome.exc)
    info = None
    if with_event_fields:  # the fields of the event the main process will send
        info = outcome_fields(outcome.state, outcome.runtime, outcome.retval, outcome.exc,
                              outcome.traceback)  # fmt: skip
    return outcome.state, outcome.requeue, outcome.dead_reason, info


def message_runner(
    app: Celery, hostname: str | None, accept: frozenset[str]
) -> Callable[[str, bytes, bool], tuple[str, bool, str | None, dict[str, Any] | None]]:
    """:func:`run_logged` for one worker's messages: what a pool calls with a message's
    queue, its data and whether task events are on (a classic prefork child's runner)."""

    def run(queue: str, data: bytes, event_fields: bool) -> Any:
        return run_logged(app, queue, data, hostname, accept, with_event_fields=event_fields)

    return run
