"""Which pool a worker runs its tasks in, and what each pool's slots run: the executor,
with the worker's name and accepted content types, logging each task's outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .childintake import Limits
from .consume import ConsumeSettings
from .direct import ConsumingPool
from .executor import run_logged
from .options import WorkerOptions
from .pool import Done, Job, Pool, ThreadPool
from .prefork import PreforkPool

if TYPE_CHECKING:
    from ..app import Celery
    from .controller import WorkController


def consume_settings(worker: WorkController, multiplier: int) -> ConsumeSettings | None:
    """What prefork children that consume by themselves share, when they do
    (``worker_children_consume``, a prefork pool, a broker they can each connect to)."""
    conf, options = worker.app.conf, worker.options
    if not conf.worker_children_consume or options.pool != "prefork":
        return None
    if worker.app.resolved_urls()[0].startswith("memory"):
        return None  # an in-process broker: children cannot share it
    return ConsumeSettings(
        worker.consumer_id, list(worker.queues), multiplier, worker.hostname, worker.accept,
        Limits(options.time_limit, options.soft_time_limit),
        options.max_tasks_per_child or conf.worker_max_tasks_per_child,
    )  # fmt: skip


def make_pool(
    app: Celery,
    options: WorkerOptions,
    concurrency: int,
    hostname: str,
    accept: frozenset[str],
    max_tasks_per_child: int | None,
    consume: ConsumeSettings | None = None,
) -> Pool:
    """The prefork pool (processes), or threads (``-P threads``, and ``-P solo`` with one).
    With ``consume`` (``worker_children_consume``), prefork children reserve by themselves."""
    max_memory = options.max_memory_per_child or app.conf.worker_max_memory_per_child
    if options.pool == "prefork" and consume is not None:
        size = options.autoscale[1] if options.autoscale else concurrency
        return ConsumingPool(app, size, consume, max_memory)

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
            max_memory,
        )

    def run_job(job: Job) -> Done:
        state, requeue, dead_reason, info = run_message(
            job.delivery.queue, job.delivery.data, job.event_fields
        )
        return Done(job, state, requeue, dead_reason, info=info)

    return ThreadPool(concurrency, run_job)
