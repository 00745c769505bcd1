"""What a revoke writes, as Celery 5.7's worker does on receiving it: a task that has not
started anywhere is REVOKED in the result backend at once (so its caller learns it without
waiting for a worker to pick up its message); a task that started elsewhere, or already
ended, keeps the state its own worker gives it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import states
from ..backend import DisabledBackend
from ..exceptions import MiniceleryError, OperationalError

if TYPE_CHECKING:
    from .controller import WorkController

logger = logging.getLogger("minicelery.worker")

#: States a revoke may turn into REVOKED: not started (or waiting to run again).
NOT_STARTED = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})


def mark_revoked(worker: WorkController, task_ids: Sequence[str]) -> None:
    """Queue the REVOKED records of ``task_ids`` that do not run here, on the worker's
    writer: it runs errands in order, so the reply to the revoke (queued after) goes once
    they are written, and the main loop never waits on Redis."""
    backend = worker.app.backend
    if isinstance(backend, DisabledBackend):
        return
    running = {job.message.id for job in worker.pool.busy_jobs()}
    idle = [task_id for task_id in task_ids if task_id not in running]
    if not idle:
        return

    def run() -> None:
        for task_id in idle:
            try:
                if backend.get_state(task_id) in NOT_STARTED:
                    backend.mark_as_revoked(task_id, reason="revoked")
            except OperationalError:
                raise  # the writer tries the whole errand again: every step may repeat
            except MiniceleryError as exc:
                logger.warning("Could not mark task %s as revoked: %s", task_id, exc)

    worker.errands.add("mark revoked tasks", run)
