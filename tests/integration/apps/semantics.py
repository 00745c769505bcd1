"""The app the task-semantics tests run workers with (acks, progress, result options, the
request context, hooks, signals and task logging); settings come from the environment the
test fixtures set, as in ``basic``. Two more switches, off unless set to ``1``:

* ``MC_TEST_RESULT_EXTENDED`` turns on ``result_extended``;
* ``MC_TEST_TRACK_STARTED`` turns on ``task_track_started``.

Tasks, hooks and signal receivers record what they see into Redis lists (JSON entries), so a
test can observe from outside what happened inside the worker's children. Every list name
contains the test's key prefix, so the fixtures delete them afterwards.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from minicelery import Celery, Task, signals
from minicelery.utils.log import get_task_logger
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://semantics")


def _flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"


app = Celery(
    "semantics",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
    result_extended=_flag("MC_TEST_RESULT_EXTENDED"),
    task_track_started=_flag("MC_TEST_TRACK_STARTED"),
)

logger = get_task_logger(__name__)


def _redis() -> redis.Redis:
    return redis_client(str(app.conf.broker_url))


def _rpush(key: str, value: Any) -> int:
    """Append ``value`` as JSON to the Redis list ``key``; returns the list's new length."""
    return int(_redis().rpush(key, json.dumps(value)))


def signals_key() -> str:
    """Where the signal receivers below record (one list per test: the prefix is per test)."""
    return f"{app.conf.key_prefix}:signals"


# --------------------------------------------------------------------------- acks


def _run_once_slowly(key: str, seconds: float) -> int:
    """Record this process's PID; the first execution then runs for ``seconds`` (long enough
    to be killed), a later one returns at once. Returns how many executions there were."""
    executions = _rpush(key, os.getpid())
    if executions == 1:
        time.sleep(seconds)
    return executions


@app.task
def slow_early(key: str, seconds: float) -> int:
    """Acknowledged when it starts (the default)."""
    return _run_once_slowly(key, seconds)


@app.task(acks_late=True)
def slow_late(key: str, seconds: float) -> int:
    """Acknowledged after it ends; a lost worker still fails it."""
    return _run_once_slowly(key, seconds)


@app.task(acks_late=True, reject_on_worker_lost=True)
def slow_late_requeued(key: str, seconds: float) -> int:
    """Acknowledged after it ends; a lost worker sends the message back."""
    return _run_once_slowly(key, seconds)


@app.task
def record(key: str, value: Any) -> int:
    """Append ``value`` to ``key``: a marker task, and a side effect to wait for."""
    return _rpush(key, value)


# --------------------------------------------------------------------------- progress


@app.task(bind=True)
def progress(self: Task[Any, Any], steps: int, pause: float, state: str = "PROGRESS") -> int:
    """Report ``{'current': i, 'total': steps}`` as ``state`` for each step, then finish."""
    for current in range(steps):
        self.update_state(state=state, meta={"current": current, "total": steps})
        time.sleep(pause)
    return steps


# --------------------------------------------------------------------------- result options


def _record_then_sleep(key: str, seconds: float) -> int:
    pid = os.getpid()
    _rpush(key, pid)
    time.sleep(seconds)
    return pid


@app.task(track_started=True)
def tracked(key: str, seconds: float) -> int:
    """``track_started`` as a task option: records its PID, then runs for ``seconds``."""
    return _record_then_sleep(key, seconds)


@app.task
def untracked(key: str, seconds: float) -> int:
    """No task option: STARTED only with the ``task_track_started`` setting."""
    return _record_then_sleep(key, seconds)


@app.task(ignore_result=True)
def ignored(key: str) -> int:
    _rpush(key, "ignored ran")
    return 42


@app.task(ignore_result=True)
def ignored_failure(key: str) -> None:
    _rpush(key, "ignored_failure ran")
    raise ValueError("ignored and not stored")


@app.task(ignore_result=True, store_errors_even_if_ignored=True)
def ignored_failure_stored(key: str) -> None:
    _rpush(key, "ignored_failure_stored ran")
    raise ValueError("ignored but stored")


@app.task
def plain(key: str) -> int:
    """A task without options (callers may pass ``ignore_result`` to ``apply_async``)."""
    _rpush(key, "plain ran")
    return 7


@app.task(bind=True)
def extended(
    self: Task[Any, Any], x: int, y: int, retry: bool = False, flag: str | None = None
) -> int:
    """Retries once when asked, then returns ``x + y``."""
    if retry and self.request.retries == 0:
        raise self.retry(countdown=0)
    return x + y


# --------------------------------------------------------------------------- request context


def _context(task: Task[Any, Any]) -> dict[str, Any]:
    request = task.request
    return {
        "id": request.id,
        "args": list(request.args),
        "kwargs": dict(request.kwargs or {}),
        "retries": request.retries,
        "hostname": request.hostname,
        "routing_key": (request.delivery_info or {}).get("routing_key"),
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "correlation_id": request.correlation_id,
        "origin": request.origin,
        "is_eager": request.is_eager,
        "pid": os.getpid(),
    }


@app.task(bind=True)
def context(self: Task[Any, Any], a: Any, b: Any = None, retry: bool = False) -> dict[str, Any]:
    """Return the request context (of the second execution when ``retry``)."""
    if retry and self.request.retries == 0:
        raise self.retry(countdown=0)
    return _context(self)


@app.task(bind=True)
def spawn(self: Task[Any, Any], depth: int) -> dict[str, Any]:
    """Return the request context and the id of the task this one sent (``depth - 1``)."""
    child = spawn.delay(depth - 1).id if depth > 0 else None
    return {"context": _context(self), "child": child}


# --------------------------------------------------------------------------- hooks


class Hooked(Task[Any, Any]):
    """Records each hook call (with its arguments, and the request it sees) into the list
    named by the task's ``key`` keyword argument."""

    def _record(self, hook: str, task_kwargs: dict[str, Any], /, **fields: Any) -> None:
        _rpush(
            task_kwargs["key"],
            {"hook": hook, "request_id": self.request.id, "pid": os.getpid(), **fields},
        )

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        self._record("before_start", kwargs, task_id=task_id, args=list(args), kwargs=kwargs)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self._record(
            "on_success", kwargs, retval=retval, task_id=task_id, args=list(args), kwargs=kwargs
        )

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self._record(
            "on_failure",
            kwargs,
            exc=[type(exc).__name__, str(exc)],
            task_id=task_id,
            args=list(args),
            kwargs=kwargs,
            einfo=None
            if einfo is None
            else {
                "type": einfo.type.__name__,
                "exception": repr(einfo.exception),
                "traceback": str(einfo),
            },
        )

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if isinstance(retval, BaseException):
            retval = [type(retval).__name__, str(retval)]
        self._record(
            "after_return",
            kwargs,
            status=status,
            retval=retval,
            task_id=task_id,
            args=list(args),
            kwargs=kwargs,
            einfo_is_none=einfo is None,
        )


@app.task(base=Hooked)
def hooked_ok(x: int, key: str) -> int:
    return x * 2


@app.task(base=Hooked)
def hooked_fail(x: int, key: str) -> None:
    raise ValueError(f"bad {x}")


# --------------------------------------------------------------------------- signals & logs


@app.task
def signalled(x: int) -> int:
    return x + 1


@app.task
def signalled_fail(x: int) -> None:
    raise KeyError(f"missing {x}")


@app.task
def chatty(message: str) -> str:
    logger.info("chatty says: %s", message)
    return message


def _ours(sender: Any) -> bool:
    return str(getattr(sender, "name", "")).startswith(f"{__name__}.signalled")


@signals.task_prerun.connect
def _on_prerun(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    if _ours(sender):
        _rpush(
            signals_key(),
            {
                "signal": "task_prerun",
                "task": sender.name,
                "task_id": task_id,
                "args": list(kwargs["args"]),
                "pid": os.getpid(),
            },
        )


@signals.task_postrun.connect
def _on_postrun(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    if _ours(sender):
        retval = kwargs["retval"]
        _rpush(
            signals_key(),
            {
                "signal": "task_postrun",
                "task": sender.name,
                "task_id": task_id,
                "state": kwargs["state"],
                "retval": retval if not isinstance(retval, BaseException) else repr(retval),
                "pid": os.getpid(),
            },
        )


@signals.task_success.connect
def _on_success(sender: Any = None, result: Any = None, **kwargs: Any) -> None:
    if _ours(sender):
        _rpush(
            signals_key(),
            {
                "signal": "task_success",
                "task": sender.name,
                # Celery's documented way to know which call succeeded: the task's request.
                "request_id": sender.request.id,
                "result": result,
                "pid": os.getpid(),
            },
        )


@signals.task_failure.connect
def _on_failure(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **kwargs: Any
) -> None:
    if _ours(sender):
        _rpush(
            signals_key(),
            {
                "signal": "task_failure",
                "task": sender.name,
                "task_id": task_id,
                "exception": [type(exception).__name__, str(exception)],
                "args": list(kwargs["args"]),
                "pid": os.getpid(),
            },
        )
