"""Which pool a worker runs its tasks in, and what each pool's slots run: the executor,
with the worker's name and accepted content types, logging each task's outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .executor import run_logged
from .options import WorkerOptions
from .pool import Done, Job, Pool, ThreadPool
from .prefork import PreforkPool

if TYPE_CHECKING:
    from ..app import Celery


def make_pool(
    app: Celery,
    options: WorkerOptions,
    concurrency: int,
    hostname: str,
    accept: frozenset[str],
    max_tasks_per_child: int | None,
) -> Pool:
    """The prefork pool (processes), or threads (``-P threads``, and ``-P solo`` with one)."""

    def run_message(
        queue: str, data: bytes, event_fields: bool
    ) -> tuple[str, bool, str | None, dict[str, Any] | None]:
        return run_logged(app, queue, data, hostname, accept, with_event_fields=event_fields)

    if options.pool == "prefork":
        return PreforkPool(
            app,
            options.autoscale[1] if options.autoscale else concurrency,
            run_message,
            max_tasks_per_child,
            options.max_memory_per_child or app.conf.worker_max_memory_per_child,
        )

    def run_job(job: Job) -> Done:
        state, requeue, dead_reason, info = run_message(
            job.delivery.queue, job.delivery.data, job.event_fields
        )
        return Done(job, state, requeue, dead_reason, info=info)

    return ThreadPool(concurrency, run_job)
