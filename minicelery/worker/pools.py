"""Which pool a worker runs its tasks in, and what each pool's slots run: the executor,
with the worker's name and accepted content types, logging each task's outcome."""

from __future__ import annotations

import logging
import pickle
from typing import TYPE_CHECKING, Any

from . import forkexec, forkserver, sharing
from .childintake import Limits
from .consume import ConsumeSettings
from .direct import ConsumingPool
from .executor import message_runner
from .options import WorkerOptions
from .pool import Done, Job, Pool, ThreadPool
from .prefork import PreforkPool

if TYPE_CHECKING:
    from ..app import Celery
    from .controller import WorkController

logger = logging.getLogger(__name__)


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
        async_concurrency=conf.worker_async_concurrency,
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
        consuming = ConsumingPool(app, size, consume, max_memory)
        plan = ("consume", consume, consuming.slots, consuming.buckets)
        loaded = _boot_by_exec(consuming, plan)
        if loaded is not None:  # the same pages, now in memory files a server can map
            _, _, consuming.slots, consuming.buckets = loaded
            consuming.shared_clock = consuming.slots.clock
        return consuming

    run_message = message_runner(app, hostname, accept)

    if options.pool == "prefork":
        pool = PreforkPool(
            app,
            options.autoscale[1] if options.autoscale else concurrency,
            run_message,
            max_tasks_per_child,
            max_memory,
        )
        _boot_by_exec(pool, ("classic", hostname, accept, max_memory))
        return pool

    def run_job(job: Job) -> Done:
        state, requeue, dead_reason, info = run_message(
            job.delivery.queue, job.delivery.data, job.event_fields
        )
        return Done(job, state, requeue, dead_reason, info=info)

    return ThreadPool(concurrency, run_job)


def _boot_by_exec(pool: PreforkPool, plan: tuple[Any, ...]) -> Any:
    """Have ``pool``'s children forked by exec'd fork servers when the app can be imported
    by name (the command line said how it loaded it): returns ``plan`` loaded back from its
    description (its shared memory now in memory files), or None for the forked server."""
    source = forkexec.source_of(pool.app)
    if source is None or not forkserver.supported():
        return None
    try:
        description, shared = sharing.describe(plan)
    except (pickle.PicklingError, TypeError, AttributeError, OSError) as exc:
        logger.warning("The pool cannot be described to a fork server started by exec (%s): "
                       "the worker keeps one forked from its main process", exc)  # fmt: skip
        return None
    pool.boot = forkexec.ExecForkServer(source, description, shared, [])
    loaded = sharing.load(description, shared)
    pool.boot.begin()  # it loads the app while this process builds the rest of the worker
    return loaded
