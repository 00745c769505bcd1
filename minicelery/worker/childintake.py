"""What a consuming prefork child checks before it runs a message (the main process's
intake runs the same checks in the classic pool): that it decodes, that its task is
registered here and its content type accepted, that it was not revoked; and the task's
acknowledgement options and time limits, in Celery's order of precedence."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..broker import Delivery
from ..exceptions import ContentDisallowed, MessageError, NotRegistered, TaskRevokedError
from ..message import TaskMessage, decode_message
from ..serialization import exception_to_dict
from ..trace import build_meta, workflow_abandoned
from .executor import make_request
from .state import matching_stamps

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Task

logger = logging.getLogger("minicelery.worker")
job_logger = logging.getLogger("minicelery.worker.job")


@dataclass(frozen=True)
class Limits:
    """The worker's command-line time limits (``--time-limit``, ``--soft-time-limit``)."""

    hard: float | None = None
    soft: float | None = None


@dataclass
class Admitted:
    """A message cleared to run, with what its ending depends on."""

    message: TaskMessage
    acks_late: bool
    acks_on_failure: bool
    reject_on_worker_lost: bool
    hard: float | None
    soft: float | None


@dataclass
class Refused:
    """A message that cannot run: dead-lettered with ``reason`` (its result FAILURE with
    ``exc`` when it has an id)."""

    reason: str
    task_id: str | None
    name: str
    exc: BaseException | None


class Wait:
    """A retry whose last attempt still runs (in a sibling): it is admitted after that
    attempt ends, so the task's states and events stay in order (RETRY, then STARTED)."""


WAIT = Wait()


def vet(
    app: Celery,
    data: bytes,
    accept: frozenset[str],
    sender: Any = None,
    running: Callable[[str], bool] = lambda task_id: False,
) -> tuple[TaskMessage, Task[Any, Any]] | Refused | Wait:
    """The message and its task, if it can run here: it decodes, its task is registered
    and its content type accepted (Refused otherwise); WAIT while ``running(its id)``.
    Both the main process's intake and a consuming child check messages this way."""
    try:
        message = decode_message(data)
    except MessageError as error:
        return Refused(str(error), None, "?", None)
    if running(message.id):
        return WAIT
    task = app.tasks.get(message.task)
    if task is None:
        logger.error(
            "Received unregistered task of type %r. The message has been moved "
            "to the dead-letter store.",
            message.task,
        )
        exc: Exception = NotRegistered(message.task)
        signals.task_unknown.send(
            sender=sender, message=message, exc=exc, name=message.task, id=message.id
        )
        return Refused(f"unknown task {message.task!r}", message.id, message.task, exc)
    if message.content_type not in accept:
        exc = ContentDisallowed(f"content type {message.content_type!r} is not accepted")
        return Refused(str(exc), message.id, message.task, exc)
    return message, task


def admit(app: Celery, delivery: Delivery, accept: frozenset[str], limits: Limits,
          revoked: set[str], running: Callable[[str], bool] = lambda task_id: False,
          received: Callable[[Delivery], None] = lambda delivery: None,
          stamps: Mapping[str, Any] | None = None,
          ) -> Admitted | Refused | Wait | None:  # fmt: skip
    """Admitted, Refused, WAIT (``running(task id)`` is true), or None for a revoked
    message, by its id or by one of its ``stamps`` (discarded here: REVOKED).
    ``received`` has ``task_received`` sent, where Celery sends it: in the worker's main
    process."""
    checked = vet(app, delivery.data, accept, running=running)
    if not isinstance(checked, tuple):
        return checked
    message, task = checked
    job_logger.info("Task %s[%s] received", message.task, message.id)
    received(delivery)
    if message.id in revoked or revoked_by_stamp(message, stamps):
        discard_revoked(app, task, message, delivery.queue, accept)
        return None
    hard, soft = sent_limits(message.headers.get("timelimit"))
    return Admitted(
        message,
        acks_late=bool(task.option("acks_late")),
        acks_on_failure=bool(task.option("acks_on_failure_or_timeout")),
        reject_on_worker_lost=bool(task.option("reject_on_worker_lost")),
        hard=first_limit(hard, task.time_limit, limits.hard, app.conf.task_time_limit),
        soft=first_limit(soft, task.soft_time_limit, limits.soft, app.conf.task_soft_time_limit),
    )


def revoked_by_stamp(message: TaskMessage, stamps: Mapping[str, Any] | None) -> bool:
    """Whether ``message`` carries a revoked stamp (``revoke_by_stamped_headers``), as the
    main process's gate checks it."""
    if not stamps or not message.stamped_headers:
        return False
    return bool(matching_stamps(message.stamps, stamps))


def discard_revoked(
    app: Celery, task: Task[Any, Any], message: TaskMessage, queue: str, accept: frozenset[str]
) -> None:
    """Never run: the result is REVOKED (stored with the child's next round trip, before
    the message's ack) and the task's workflow moves on."""
    exc = TaskRevokedError("revoked")
    job_logger.info("Discarding revoked task: %s[%s] (revoked)", message.task, message.id)
    signals.task_revoked.send(
        sender=task, request=message, terminated=False, signum=None, expired=False
    )
    app.backend.store(message.id, build_meta(message.id, states.REVOKED, exception_to_dict(exc)))
    try:
        args, kwargs, embed = message.decode_body(accept)
    except MessageError:
        return
    if embed.get("chord") or embed.get("chain") or embed.get("errbacks"):
        request: Any = make_request(task, message, args, kwargs, embed, None, queue)
        workflow_abandoned(app, request, exc, states.REVOKED, retry=True)


def first_limit(*values: Any) -> float | None:
    """Celery's precedence: the call's limit, the task's own, the worker's command line, and
    only then the setting (the worker's default)."""
    for value in values:
        if value:
            return float(value)
    return None


def sent_limits(value: Any) -> tuple[float | None, float | None]:
    """The message's ``timelimit`` header as (hard, soft)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None, None
