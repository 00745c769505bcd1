"""How a message ends when its task did not simply run to completion: revoked before it
started or terminated while running, lost with its process (killed, crashed, past its hard
time limit), or unrunnable and kept in the dead-letter store. Each stores the result and
moves the task's workflow on (its chord part, the rest of its chain, its errbacks).

What these write to Redis goes out as errands (:mod:`.errands`), in order and retried, so
the main loop decides and logs at once and never waits on Redis."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..broker import DeadLetter, Delivery
from ..exceptions import (
    MiniceleryError,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from ..serialization import exception_to_dict
from ..trace import workflow_abandoned
from .executor import build_meta, make_request
from .pool import Done, Job, Lost, Released
from .prefork import _describe

if TYPE_CHECKING:
    from .controller import WorkController

logger = logging.getLogger("minicelery.worker")
job_logger = logging.getLogger("minicelery.worker.job")

LOSS_MEMORY = 86400  # seconds a message's count of killed workers is remembered


def dead_letter(
    worker: WorkController,
    delivery: Delivery,
    reason: str,
    task_id: str | None,
    task: str,
    exc: BaseException | None = None,
) -> None:
    """Keep the message with its reason; its result, when it has an id, is FAILURE."""
    logger.error("Dead-lettered a message from queue %r: %s", delivery.queue, reason)
    worker.errands.add(
        f"dead-letter {delivery.tag}",
        lambda: _dead_letter_now(worker, delivery, reason, task_id, task, exc),
        holds=1,
    )


def _dead_letter_now(
    worker: WorkController,
    delivery: Delivery,
    reason: str,
    task_id: str | None,
    task: str,
    exc: BaseException | None,
    holder: str | None = None,
) -> None:
    letter = DeadLetter(
        task_id or f"tag-{delivery.tag}", task, reason, time.time(), delivery.queue, delivery.data
    )
    worker.app.broker.dead_letter(holder or worker.consumer_id, delivery, letter)
    if task_id is not None and exc is not None:
        _store(worker, task_id, states.FAILURE, exc)


def _store(worker: WorkController, task_id: str, state: str, exc: BaseException) -> None:
    worker.app.backend.store(task_id, build_meta(task_id, state, exception_to_dict(exc)))


def discard_revoked(worker: WorkController, job: Job, terminated: int | None = None) -> None:
    """Never run (or stopped by ``terminated``, a signal): the result is REVOKED and the
    message acknowledged."""
    task_id, name = job.message.id, job.message.task
    reason = "terminated" if terminated is not None else "revoked"
    exc = TaskRevokedError(reason)
    job_logger.info("Discarding revoked task: %s[%s] (%s)", name, task_id, reason)
    signals.task_revoked.send(
        sender=worker.app.tasks.get(name),
        request=job.message,
        terminated=terminated is not None,
        signum=terminated,
        expired=False,
    )
    if worker.events is not None:
        worker.events.revoked(job.message, terminated)
    _end(worker, job, exc, states.REVOKED)


def _end(worker: WorkController, job: Job, exc: BaseException, state: str) -> None:
    """Store the final record, move the workflow on, then acknowledge: one errand."""

    def run() -> None:
        _store(worker, job.message.id, state, exc)
        abandon(worker, job, exc, state)
        worker.app.broker.ack(job.hold or worker.consumer_id, [job.delivery.tag])

    worker.errands.add(f"end {job.message.id} {state}", run, holds=1)


def give_back(worker: WorkController, tags: list[str]) -> None:
    """Reserved but not started (shutting down): back to the front of their queues."""
    if not tags:
        return
    broker, consumer_id = worker.app.broker, worker.consumer_id

    def run() -> None:
        count = broker.requeue(consumer_id, tags)
        logger.info("Gave %d reserved message(s) back to their queues", count)

    worker.errands.add("give back reserved messages", run, holds=len(tags))


def release_hold(worker: WorkController, event: Released) -> None:
    """A consuming child is gone: after its task's ending (already queued as errands) and
    the results and acks it had not settled, what it still holds goes back to the front of
    its queues, and it is forgotten. Or only the unstarted rest of its batch goes back (an
    idle sibling can run it, or the worker stops), or nothing (``tags == []``)."""
    broker = worker.app.broker

    def run() -> None:
        if event.records:  # what the child finished and had not stored yet
            worker.app.backend.store_encoded(event.records)  # type: ignore[attr-defined]
        broker.ack(event.consumer, event.ack)
        if event.tags is not None:  # [] when the main process only settles for a child
            count = broker.requeue(event.consumer, event.tags)
        else:
            count = broker.unregister(event.consumer)
        if count:
            logger.info("Gave %d message(s) held by %s back to their queues", count, event.consumer)

    worker.errands.add(f"release {event.consumer}", run)


def reconcile_hold(worker: WorkController) -> None:
    """After a reserve whose reply was lost, give back whatever the hold has that this
    worker does not know about (reserved, reply lost), so nothing sits there unseen while
    the worker lives. Known: buffered, waiting, running, or acknowledged but not
    confirmed. No reserve is sent until this is done (``hold_suspect``), so the hold can
    only lose known tags meanwhile; it runs as an errand, off the main loop."""
    known = {j.delivery.tag for j in worker.pool.busy_jobs()}
    known.update(delivery.tag for delivery in worker.admission.buffer)
    known.update(job.delivery.tag for job in worker.admission.waiting_jobs())
    known.update(worker.outbox.acks)
    known.update(worker.outbox.unconfirmed_acks())
    broker, consumer_id, consumer = worker.app.broker, worker.consumer_id, worker.consumer

    def run() -> None:
        unknown = [tag for tag in broker.held(consumer_id) if tag not in known]
        if unknown:
            count = broker.requeue(consumer_id, unknown)
            logger.warning("Gave back %d message(s) reserved by a lost reply", count)
        consumer.hold_suspect = worker.reconciling = False

    worker.errands.add("check the hold", run)


def finished(worker: WorkController, event: Done) -> None:
    """A job ran to an outcome: its results go out, then its message is acknowledged,
    requeued (``Reject(requeue=True)``) or kept in the dead-letter store."""
    job = event.job
    tag = job.delivery.tag
    worker.outbox.add_results(event.results)
    if event.state == states.SUCCESS:
        worker.outbox.succeeded.append(job.message.id)
    if worker.events is not None and job.event_fields:
        # Only for a job started with task events on: one started before they were switched
        # on sent no task-received or task-started, and carries no result fields.
        worker.events.finished(job.message, event.state, event.info, event.requeue)
    if event.dead_reason:
        dead_letter(worker, job.delivery, event.dead_reason, None, job.message.task)
    elif event.state == states.REJECTED and event.requeue:
        broker, consumer_id, data = worker.app.broker, worker.consumer_id, job.message.redelivered()
        worker.errands.add("requeue", lambda: broker.redeliver(consumer_id, tag, data), holds=1)
    elif job.acks_late and event.state == states.FAILURE and not job.acks_on_failure:
        # Celery rejects the message without requeueing it: here it is kept, dead-lettered.
        reason = "failed, and acks_on_failure_or_timeout is off"
        dead_letter(worker, job.delivery, reason, None, job.message.task)
    elif job.acks_late or event.state == states.REJECTED:
        worker.outbox.add_ack(tag)


def handle_lost(worker: WorkController, event: Lost, shutting_down: bool) -> None:
    """The process running ``event.job`` died. A cold shutdown stopped an acks_late task on
    purpose: it goes back to its queue, as in Celery; a crash requeues only with
    ``reject_on_worker_lost``, and a hard time limit only with ``acks_late`` and
    ``acks_on_failure_or_timeout`` off."""
    job = event.job
    if event.timed_out:
        exc: Exception = TimeLimitExceeded(job.time_limit)
    else:
        exc = WorkerLostError(f"Worker exited prematurely: {_describe(event.exitcode)} Job: 0.")
    requeue = shutting_down or job.reject_on_worker_lost
    # Celery stores the failure of a timed-out acks_late task that it sends back to run again.
    store_first = event.timed_out and job.acks_late and not job.acks_on_failure
    requeue = requeue or store_first
    if job.acks_late and requeue and (not event.timed_out or not job.acks_on_failure):
        _requeue_lost(worker, job, exc, shutting_down, store_first)
        return
    job_logger.error("Task handler raised error: %r", exc)
    if worker.events is not None:
        worker.events.failed(job.message, exc)
    if job.acks_late:
        _end(worker, job, exc, states.FAILURE)
        return

    def run() -> None:  # acknowledged when it started
        _store(worker, job.message.id, states.FAILURE, exc)
        abandon(worker, job, exc, states.FAILURE)

    worker.errands.add(f"end {job.message.id} FAILURE", run)


def _requeue_lost(
    worker: WorkController, job: Job, exc: BaseException, shutting_down: bool, store_first: bool
) -> None:
    task_id, tag = job.message.id, job.delivery.tag

    def run() -> None:
        if store_first:
            _store(worker, task_id, states.FAILURE, exc)
        if not shutting_down and killed_too_often(worker, job):
            reason = f"killed its worker process {worker.app.conf.task_max_worker_lost} times"
            _dead_letter_now(worker, job.delivery, reason, task_id, job.message.task, exc, job.hold)
            logger.error("Dead-lettered a message from queue %r: %s", job.delivery.queue, reason)
            abandon(worker, job, exc, states.FAILURE)
            return
        worker.app.broker.requeue(job.hold or worker.consumer_id, [tag])
        logger.warning(
            "Task %s[%s] stopped with its process; message requeued", job.message.task, task_id
        )
        if worker.events is not None:
            worker.events.rejected(job.message, requeue=True)

    worker.errands.add(f"requeue {task_id}", run, holds=1)


def killed_too_often(worker: WorkController, job: Job) -> bool:
    """Beyond Celery: a message that keeps killing its worker (a segfault, the OOM killer)
    goes to the dead-letter store after ``task_max_worker_lost`` losses instead of looping
    forever, which makes ``reject_on_worker_lost`` safe to turn on."""
    limit = worker.app.conf.task_max_worker_lost
    if not limit:
        return False
    losses = worker.app.broker.bump(f"lost:{job.message.id}", LOSS_MEMORY)
    return bool(losses >= limit)


def abandon(worker: WorkController, job: Job, exc: BaseException, state: str) -> None:
    """The task will not finish: count its chord part, fail the rest of its chain and call
    its errbacks, so no workflow waits for it forever. Costs nothing for a plain task."""
    task = worker.app.tasks.get(job.message.task)
    if task is None:
        return
    try:
        args, kwargs, embed = job.message.decode_body(worker.accept)
    except MiniceleryError:
        return  # an undecodable body carries no workflow we could read
    if not (embed.get("chord") or embed.get("chain") or embed.get("errbacks")):
        return
    request: Any = make_request(
        task, job.message, args, kwargs, embed, worker.hostname, job.delivery.queue
    )
    workflow_abandoned(worker.app, request, exc, state, retry=True)
