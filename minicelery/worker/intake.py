"""From a reserved delivery to a job the pool can run: decode it, find its task, check its
content type and settle its time limits and acknowledgement options. A message that cannot
run goes to the dead-letter store with its reason, never into the pool."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import signals
from ..broker import Delivery
from ..exceptions import ContentDisallowed, MessageError, NotRegistered
from ..message import decode_message
from . import endings
from .pool import Job

if TYPE_CHECKING:
    from .controller import WorkController

logger = logging.getLogger("minicelery.worker")


def job_for(worker: WorkController, delivery: Delivery) -> Job | None:
    """The job for ``delivery``, or None when it was dead-lettered instead."""
    try:
        message = decode_message(delivery.data)
    except MessageError as error:
        endings.dead_letter(worker, delivery, str(error), task_id=None, task="?")
        return None
    task = worker.app.tasks.get(message.task)
    if task is None:
        logger.error(
            "Received unregistered task of type %r. The message has been moved "
            "to the dead-letter store.",
            message.task,
        )
        exc: Exception = NotRegistered(message.task)
        signals.task_unknown.send(
            sender=worker, message=message, exc=exc, name=message.task, id=message.id
        )
        reason = f"unknown task {message.task!r}"
        endings.dead_letter(worker, delivery, reason, message.id, message.task, exc)
        return None
    if message.content_type not in worker.accept:
        exc = ContentDisallowed(f"content type {message.content_type!r} is not accepted")
        endings.dead_letter(worker, delivery, str(exc), message.id, message.task, exc)
        return None
    hard, soft = _sent_limits(message.headers.get("timelimit"))
    options = worker.options
    return Job(
        delivery,
        message,
        acks_late=bool(task.option("acks_late")),
        reject_on_worker_lost=bool(task.option("reject_on_worker_lost")),
        acks_on_failure=bool(task.option("acks_on_failure_or_timeout")),
        time_limit=_limit(worker, hard, task.time_limit, options.time_limit, "task_time_limit"),
        soft_time_limit=_limit(
            worker, soft, task.soft_time_limit, options.soft_time_limit, "task_soft_time_limit"
        ),
    )


def _limit(
    worker: WorkController,
    sent: float | None,
    of_task: float | None,
    of_worker: float | None,
    setting: str,
) -> float | None:
    """Celery's precedence: the call's limit, the task's own, the worker's command line, and
    only then the setting (the worker's default)."""
    for value in (sent, of_task, of_worker, worker.app.conf[setting]):
        if value:
            return float(value)
    return None


def _sent_limits(value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None, None
