"""From a reserved delivery to a job the pool can run: decode it, find its task, check its
content type and settle its time limits and acknowledgement options. A message that cannot
run goes to the dead-letter store with its reason, never into the pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..broker import Delivery
from . import endings
from .childintake import Refused, first_limit, sent_limits, vet
from .pool import Job

if TYPE_CHECKING:
    from .controller import WorkController


def job_for(worker: WorkController, delivery: Delivery) -> Job | None:
    """The job for ``delivery``, or None when it was dead-lettered instead."""
    checked = vet(worker.app, delivery.data, worker.accept, sender=worker)
    if isinstance(checked, Refused):
        endings.dead_letter(
            worker, delivery, checked.reason, checked.task_id, checked.name, checked.exc
        )
        return None
    assert isinstance(checked, tuple)  # no ``running`` check here: never WAIT
    message, task = checked
    hard, soft = sent_limits(message.headers.get("timelimit"))
    options, conf = worker.options, worker.app.conf
    return Job(
        delivery,
        message,
        acks_late=bool(task.option("acks_late")),
        reject_on_worker_lost=bool(task.option("reject_on_worker_lost")),
        acks_on_failure=bool(task.option("acks_on_failure_or_timeout")),
        time_limit=first_limit(hard, task.time_limit, options.time_limit, conf.task_time_limit),
        soft_time_limit=first_limit(
            soft, task.soft_time_limit, options.soft_time_limit, conf.task_soft_time_limit
        ),
    )
