"""Remote control and inspect commands, as Celery's worker answers them. Each handler runs in
the worker's main loop with the worker as its first argument and returns the reply."""

from __future__ import annotations

import logging
import signal as signal_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .revoking import mark_revoked
from .state import matching_stamps, parse_rate, revoke_stamps

if TYPE_CHECKING:
    from .controller import WorkController

logger = logging.getLogger("minicelery.worker")

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}


def command(func: Handler) -> Handler:
    HANDLERS[func.__name__] = func
    return func


@dataclass(frozen=True)
class CommandInfo:
    """What a registered command declares about itself (Celery's ``Panel.meta``): whether it
    is a ``control`` or an ``inspect`` command, its typed arguments for the command line, and
    whether ``--list`` shows it."""

    name: str
    kind: str = "control"
    args: tuple[tuple[str, Any], ...] = ()
    signature: str | None = None
    visible: bool = True
    help: str | None = None


COMMANDS: dict[str, CommandInfo] = {}


def register(info: CommandInfo, handler: Handler) -> None:
    """Add (or replace) a command the worker answers: user commands registered with
    ``control_command`` / ``inspect_command`` go through the same dispatcher as built-ins."""
    HANDLERS[info.name] = handler
    COMMANDS[info.name] = info


def run_command(worker: WorkController, method: str, arguments: dict[str, Any]) -> Any:
    """Run one command; an unknown one or a handler's error becomes an error reply."""
    handler = HANDLERS.get(method)
    if handler is None:
        return {"error": f"unknown command {method!r}"}
    try:
        return handler(worker, **(arguments or {}))
    except Exception as exc:
        logger.exception("Remote control command %s failed", method)
        return {"error": f"{type(exc).__name__}: {exc}"}


def signal_number(name: str | int | None) -> int:
    """``'SIGTERM'``, ``'TERM'``, ``'term'`` or a number; SIGTERM when not given."""
    if name is None or name == "":
        return int(signal_module.SIGTERM)
    if isinstance(name, int) or name.isdigit():
        return int(name)
    upper = name.upper()
    found = getattr(signal_module, upper if upper.startswith("SIG") else f"SIG{upper}", None)
    if not isinstance(found, signal_module.Signals):
        raise ValueError(f"unknown signal {name!r}")
    return int(found)


# -- control ------------------------------------------------------------------------------
@command
def ping(worker: WorkController) -> dict[str, str]:
    return {"ok": "pong"}


@command
def revoke(
    worker: WorkController,
    task_id: str | list[str],
    terminate: bool = False,
    signal: str | int | None = None,
    until: float | None = None,
    **kwargs: Any,
) -> dict[str, str]:
    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    worker.revoked.add(ids, until or time.time() + worker.app.conf.worker_revoke_expires)
    mark_revoked(worker, ids)
    if terminate:
        signum = signal_number(signal)
        for job in worker.pool.busy_jobs():
            if job.message.id in ids:
                worker.terminate(job, signum)
        terminate_async = getattr(worker.pool, "terminate_async", None)
        if terminate_async is not None:  # async def tasks: cancelled by their child
            terminate_async(ids, signum)
    idstr = ", ".join(ids)
    logger.info("Tasks flagged as revoked: %s", idstr)
    return {"ok": f"tasks {idstr} flagged as revoked"}


@command
def revoke_by_stamped_headers(
    worker: WorkController,
    headers: dict[str, Any] | list[str],
    terminate: bool = False,
    signal: str | int | None = None,
    **kwargs: Any,
) -> dict[str, str]:
    """Never run tasks stamped with any of ``headers`` (``{stamp name: value or values}``;
    ``["name=value", ...]`` from the command line); with ``terminate``, also stop the
    running ones that carry them."""
    if isinstance(headers, list):
        headers = dict(item.split("=", 1) for item in headers)
    revoke_stamps(headers)
    worker.pool.forward_stamps(headers, kwargs.get("news_id"))
    if not terminate:
        return {"ok": f"headers {headers} flagged as revoked, but not terminated"}
    signum = signal_number(signal)
    terminated: dict[str, set[Any]] = {}
    for job in worker.pool.busy_jobs():
        found = matching_stamps(job.message.stamps, headers)
        if found:
            worker.terminate(job, signum)
            for name, values in found.items():
                terminated.setdefault(name, set()).update(values)
    if not terminated:
        return {"ok": f"headers {headers} were not terminated"}
    return {"ok": f"headers {terminated} revoked"}


@command
def rate_limit(
    worker: WorkController, task_name: str, rate_limit: str | float | None = None, **kwargs: Any
) -> dict[str, str]:
    task = worker.app.tasks.get(task_name)
    if task is None:
        return {"error": f"unknown task {task_name!r}"}
    parse_rate(rate_limit)  # a bad rate is an error reply, not a silent no-op
    task.rate_limit = str(rate_limit) if rate_limit else None
    worker.limiter.forget(task_name)
    if not rate_limit:
        return {"ok": "rate limit disabled successfully"}
    return {"ok": "new rate limit set successfully"}


@command
def time_limit(
    worker: WorkController,
    task_name: str,
    soft: float | None = None,
    hard: float | None = None,
    **kwargs: Any,
) -> dict[str, str]:
    task = worker.app.tasks.get(task_name)
    if task is None:
        return {"error": f"unknown task {task_name!r}"}
    task.soft_time_limit, task.time_limit = soft, hard
    worker.pool.reconfigure({"limits": {task_name: [soft, hard]}})
    return {"ok": "time limits set successfully"}


@command
def shutdown(worker: WorkController, **kwargs: Any) -> dict[str, str]:
    logger.warning("Got shutdown from remote")
    worker.request_stop()
    return {"ok": "shutting down"}


# -- the pool and the queues ----------------------------------------------------------------
@command
def pool_grow(worker: WorkController, n: int = 1, **kwargs: Any) -> dict[str, str]:
    if worker.autoscaler is not None:
        worker.autoscaler.update(worker.autoscaler.max_procs + n, worker.autoscaler.min_procs + n)
    size = worker.pool.grow(int(n))
    return {"ok": f"pool will grow to {size} processes"}


@command
def pool_shrink(worker: WorkController, n: int = 1, **kwargs: Any) -> dict[str, str]:
    if worker.autoscaler is not None:
        scaler = worker.autoscaler
        scaler.update(max(scaler.max_procs - n, 1), max(scaler.min_procs - n, 1))
    size = worker.pool.shrink(int(n))
    return {"ok": f"pool will shrink to {size} processes"}


@command
def autoscale(worker: WorkController, max: int, min: int, **kwargs: Any) -> dict[str, str]:
    if worker.autoscaler is None:
        return {"error": "autoscale is not enabled on this worker (start it with --autoscale)"}
    worker.autoscaler.update(int(max), int(min))
    scaler = worker.autoscaler
    return {"ok": f"autoscale now max={scaler.max_procs} min={scaler.min_procs}"}


@command
def pool_restart(
    worker: WorkController, modules: list[str] | None = None, reload: bool = False, **kwargs: Any
) -> dict[str, str]:
    """Replace every child; with ``reload``, re-import the task modules first (children are
    forked from the main process, so they start with the new code)."""
    if not worker.app.conf.worker_pool_restarts:
        return {"error": "Pool restarts not enabled (set worker_pool_restarts = True)"}
    import importlib
    import sys

    names = list(modules or ()) or [*worker.app.conf.imports, *worker.app.conf.include]
    for name in names:
        if reload and name in sys.modules:
            importlib.reload(sys.modules[name])
        elif name not in sys.modules:
            importlib.import_module(name)
    worker.pool.restart(names, reload)
    return {"ok": "reload started"}


@command
def enable_events(worker: WorkController, **kwargs: Any) -> dict[str, str]:
    if worker.set_task_events(True):
        return {"ok": "task events enabled"}
    return {"ok": "task events already enabled"}


@command
def disable_events(worker: WorkController, **kwargs: Any) -> dict[str, str]:
    if worker.set_task_events(False):
        return {"ok": "task events disabled"}
    return {"ok": "task events already disabled"}


@command
def add_consumer(worker: WorkController, queue: str, **kwargs: Any) -> dict[str, str]:
    if queue in worker.queues:
        return {"ok": f"already consuming from {queue!r}"}
    worker.set_queues([*worker.queues, queue])
    return {"ok": f"add consumer {queue}"}


@command
def cancel_consumer(worker: WorkController, queue: str, **kwargs: Any) -> dict[str, str]:
    if queue not in worker.queues:
        return {"error": f"not consuming from {queue!r}"}
    if len(worker.queues) == 1:
        return {"error": f"{queue!r} is the last queue this worker reads: not cancelled"}
    worker.set_queues([q for q in worker.queues if q != queue])
    return {"ok": f"no longer consuming from {queue}"}
