"""The inspect commands a worker answers (``app.control.inspect()``), with the reply shapes of
Celery's: a task as ``Request.info()`` describes it, a queue as a kombu queue's dictionary,
the registered tasks with their attributes. Each handler runs in the worker's main loop."""

from __future__ import annotations

import collections
import logging
import os
import resource
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .commands import command

if TYPE_CHECKING:
    from .controller import WorkController
    from .pool import Job

logger = logging.getLogger("minicelery.worker")

#: What ``registered`` shows of each task when not asked for other attributes.
DEFAULT_TASK_INFO_ITEMS = ("exchange", "routing_key", "rate_limit")


# -- tasks --------------------------------------------------------------------------------
def _arguments(worker: WorkController, job: Job, safe: bool) -> tuple[Any, Any]:
    """The job's arguments as values (JSON-able, as Celery sends them), or as the sender's
    ``argsrepr``/``kwargsrepr`` with ``safe`` or when the body cannot be read here."""
    headers = job.message.headers
    if not safe:
        try:
            args, kwargs, _ = job.message.decode_body(worker.accept)
        except Exception:  # an undecodable body is the child's to report, not inspect's
            logger.debug("Cannot decode the arguments of %s", job.message.id, exc_info=True)
        else:
            return args, kwargs
    return headers.get("argsrepr"), headers.get("kwargsrepr")


def job_info(worker: WorkController, job: Job, safe: bool = False) -> dict[str, Any]:
    """A job as Celery's ``Request.info()`` describes it."""
    message = job.message
    args, kwargs = _arguments(worker, job, safe)
    started = bool(job.wall_started)
    return {
        "id": message.id,
        "name": message.task,
        "args": args,
        "kwargs": kwargs,
        "type": message.task,
        "hostname": worker.hostname,
        "time_start": job.wall_started if started else None,
        "acknowledged": started and not job.acks_late,
        "delivery_info": {
            "exchange": "",
            "routing_key": job.delivery.queue,
            "priority": message.properties.get("priority") or 0,
            "redelivered": bool(message.properties.get("redelivered")),
        },
        "worker_pid": _pid_of(job) if started else None,
    }


def _pid_of(job: Job) -> int:
    return job.slot if isinstance(job.slot, int) else os.getpid()


@command
def active(worker: WorkController, safe: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    jobs = list(worker.pool.busy_jobs())
    async_jobs = getattr(worker.pool, "async_jobs", None)  # async def tasks of children
    if async_jobs is not None:
        jobs += async_jobs()
    return [job_info(worker, job, bool(safe)) for job in jobs]


@command
def reserved(worker: WorkController, safe: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    return [job_info(worker, job, bool(safe)) for job in worker.waiting_jobs()]


@command
def scheduled(worker: WorkController, **kwargs: Any) -> list[dict[str, Any]]:
    # ETA messages wait in Redis, not in a worker's memory, so no worker holds any.
    return []


def _ids(value: str | Iterable[str] | None) -> set[str]:
    if value is None:
        return set()
    return {value} if isinstance(value, str) else {str(item) for item in value}


@command
def query_task(
    worker: WorkController, ids: str | Sequence[str] | None = None, **kwargs: Any
) -> dict[str, list[Any]]:
    """Where each of ``ids`` is on this worker: ``{id: [state, info]}`` with state
    ``active`` or ``reserved``; ids this worker does not hold are left out."""
    wanted = _ids(ids)
    found: dict[str, list[Any]] = {}
    for where, jobs in (("active", worker.pool.busy_jobs()), ("reserved", worker.waiting_jobs())):
        for job in jobs:
            if job.message.id in wanted and job.message.id not in found:
                found[job.message.id] = [where, job_info(worker, job)]
    return found


@command
def revoked(worker: WorkController, **kwargs: Any) -> list[str]:
    ids: list[str] = worker.revoked.ids()
    return ids


def _task_line(task: Any, items: Sequence[str]) -> str:
    fields = [
        f"{item}={getattr(task, item)}" for item in items if getattr(task, item, None) is not None
    ]
    return f"{task.name} [{' '.join(fields)}]" if fields else str(task.name)


@command
def registered(
    worker: WorkController,
    taskinfoitems: Sequence[str] | None = None,
    builtins: bool = False,
    **kwargs: Any,
) -> list[str]:
    """The task names, sorted; each with ``[attr=value ...]`` for the attributes asked for
    (by default exchange, routing key and rate limit) that the task has set."""
    items = [i for i in taskinfoitems or DEFAULT_TASK_INFO_ITEMS if not i.startswith("_")]
    tasks = worker.app.tasks
    names = sorted(n for n in tasks if builtins or not n.startswith("celery."))
    return [_task_line(tasks[name], items) for name in names]


# -- the worker ---------------------------------------------------------------------------
def queue_info(name: str) -> dict[str, Any]:
    """A queue as Celery describes a kombu queue: on Redis a queue is a name, bound to a
    direct exchange of the same name with the name as routing key."""
    exchange = {
        "name": name,
        "type": "direct",
        "arguments": None,
        "auto_delete": False,
        "delivery_mode": None,
        "durable": True,
        "no_declare": False,
        "passive": False,
    }
    return {
        "name": name,
        "exchange": exchange,
        "routing_key": name,
        "alias": None,
        "auto_delete": False,
        "binding_arguments": None,
        "bindings": [],
        "consumer_arguments": None,
        "durable": True,
        "exclusive": False,
        "expires": None,
        "max_length": None,
        "max_length_bytes": None,
        "max_priority": None,
        "message_ttl": None,
        "no_ack": False,
        "no_declare": None,
        "queue_arguments": None,
    }


@command
def active_queues(worker: WorkController, **kwargs: Any) -> list[dict[str, Any]]:
    return [queue_info(name) for name in worker.queues]


@command
def clock(worker: WorkController, **kwargs: Any) -> dict[str, int]:
    """The worker's logical clock (every command it receives moves it on)."""
    return {"clock": worker.clock.value}


@command
def report(worker: WorkController, **kwargs: Any) -> dict[str, str]:
    """The app's bug report, after a line about this worker: its process, pool and tasks."""
    node = (
        f"node     -> {worker.hostname} pid:{os.getpid()} "
        f"uptime:{int(time.time() - worker.started_at)}s "
        f"max-concurrency:{worker.pool.info().get('max-concurrency', '')} "
        f"tasks:{dict(worker.totals + collections.Counter(worker.pool.task_totals()))}"
    )
    return {"ok": f"{node}\n{worker.app.bugreport()}"}


@command
def hello(
    worker: WorkController, from_node: str, revoked: Iterable[str] | None = None, **kwargs: Any
) -> dict[str, Any] | None:
    """Another worker says hello with the ids it has revoked: they are taken here as ids
    (stamped with this worker's clocks, never with the sender's stamps, which another host's
    clock made), and the reply carries this worker's revoked ids."""
    if from_node == worker.hostname:
        return None
    logger.info("sync with %s", from_node)
    if revoked:
        expires = time.time() + float(worker.app.conf.worker_revoke_expires)
        worker.revoked.add(list(_ids(revoked)), expires)
    return {"revoked": worker.revoked.ids(), "clock": worker.clock.forward()}


@command
def conf(worker: WorkController, with_defaults: bool = False, **kwargs: Any) -> dict[str, Any]:
    """The settings the worker's app was given (all of them ``with_defaults``), secrets
    hidden, as Celery replies."""
    settings = worker.app.conf
    table: dict[str, Any] = settings.table(with_defaults=bool(with_defaults))
    table["deprecated_settings"] = sorted(settings.deprecated_settings)
    return table


@command
def stats(worker: WorkController, **kwargs: Any) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pid": os.getpid(),
        "clock": str(worker.clock.value),
        "uptime": int(time.time() - worker.started_at),
        "total": dict(worker.totals + collections.Counter(worker.pool.task_totals())),
        "pool": {**worker.pool.info(), "max-tasks-per-child": worker.max_tasks_per_child},
        "prefetch_count": worker.prefetch,
        "broker": {"transport": worker.app.resolved_urls()[0].split("://", 1)[0]},
        "rusage": {
            "utime": usage.ru_utime,
            "stime": usage.ru_stime,
            "maxrss": usage.ru_maxrss,
            "minflt": usage.ru_minflt,
            "majflt": usage.ru_majflt,
            "nvcsw": usage.ru_nvcsw,
            "nivcsw": usage.ru_nivcsw,
        },
    }


__all__ = ["DEFAULT_TASK_INFO_ITEMS", "job_info", "queue_info"]
