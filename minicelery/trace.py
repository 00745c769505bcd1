"""Running a task under a request: its states, result, hooks, signals, retries and
callbacks. Used by the worker's executor and by eager ``apply()`` alike (Celery's
``celery.app.trace``); it knows nothing of processes or the broker."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import traceback as tb_module
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import signals, states
from ._state import current_request, task_stack
from .canvas.callbacks import on_task_abandoned, on_task_failure, on_task_success
from .canvas.stamping import message_stamps
from .exceptions import EncodeError, Ignore, OperationalError, Reject, Retry
from .result import EagerResult, ResultBase
from .serialization import exception_to_dict
from .task import Context, Task, call_task_body
from .task_retry import ignores_result
from .utils import ExceptionInfo

if TYPE_CHECKING:
    from .app import Celery

logger = logging.getLogger("minicelery.worker.job")

STORE_RETRY_SECONDS = 30.0


@dataclass
class Outcome:
    """What happened to one message, for the pool to report and the consumer to ack."""

    state: str
    runtime: float = 0.0
    retval: Any = None
    exc: BaseException | None = None
    traceback: str | None = None
    requeue: bool = False
    dead_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def build_meta(
    task_id: str,
    state: str,
    result: Any,
    request: Context | None = None,
    traceback: str | None = None,
    app: Celery | None = None,
    task: Task[Any, Any] | None = None,
) -> dict[str, Any]:
    """A result record with Celery's fields (and the extended ones when configured)."""
    if isinstance(result, ResultBase):  # a task may return the result of what it sent
        result = result.as_tuple()
    children = getattr(request, "children", None) or ()
    meta: dict[str, Any] = {
        "status": state,
        "result": result,
        "traceback": traceback,
        "children": [child.as_tuple() for child in children],
        "date_done": utcnow().isoformat() if state in states.READY_STATES else None,
        "task_id": task_id,
    }
    if request is not None:
        if request.group:
            meta["group_id"] = request.group
        if request.parent_id:
            meta["parent_id"] = request.parent_id
        if app is not None and app.conf.result_extended:
            meta.update(
                name=request.task,
                args=list(request.args or ()),
                kwargs=request.kwargs,
                worker=request.hostname,
                retries=request.retries,
                queue=(request.delivery_info or {}).get("routing_key"),
            )
    return meta


def store_result(app: Celery, task_id: str, meta: dict[str, Any]) -> None:
    """Store a result, riding out a Redis outage of up to half a minute."""
    deadline = time.monotonic() + STORE_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            app.backend.store(task_id, meta)
            return
        except OperationalError:
            if time.monotonic() > deadline:
                logger.error("Could not store the result of %s: Redis unreachable", task_id)
                raise
            time.sleep(delay)  # backoff between reconnect attempts, not synchronisation
            delay = min(delay * 2, 2.0)


def run_task(app: Celery, task: Task[Any, Any], request: Context) -> Outcome:
    """Run a task under ``request``, recording its state and calling hooks and signals."""
    assert request.id is not None
    task_id, args, kwargs = request.id, request.args, request.kwargs
    ignore = ignores_result(task, request)
    if task.option("track_started") and not ignore:
        store_result(
            app,
            task_id,
            build_meta(
                task_id,
                states.STARTED,
                {"pid": os.getpid(), "hostname": request.hostname},
                request,
                app=app,
            ),
        )
    signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs)
    # The request stays current until after task_postrun, as in Celery: hooks and signal
    # receivers read ``task.request``.
    stack = task_stack()
    stack.append(request)
    try:
        outcome = _run(task, request)
        _finish(app, task, request, outcome, ignore)
        signals.task_postrun.send(
            sender=task,
            task_id=task_id,
            task=task,
            args=args,
            kwargs=kwargs,
            retval=outcome.retval if outcome.exc is None else outcome.exc,
            state=outcome.state,
        )
    finally:
        stack.pop()
    return outcome


def _run(task: Task[Any, Any], request: Context) -> Outcome:
    started = time.perf_counter()
    try:
        task.before_start(str(request.id), request.args, request.kwargs)
        outcome = Outcome(states.SUCCESS, retval=_call(task, request.args, request.kwargs))
    except Reject as exc:
        outcome = Outcome(
            states.REJECTED, exc=exc, requeue=exc.requeue, traceback=tb_module.format_exc()
        )
    except Retry as exc:
        outcome = Outcome(states.RETRY, exc=exc, traceback=tb_module.format_exc())
    except Ignore as exc:  # e.g. replaced: no state, no callbacks; what replaced it has them
        outcome = Outcome(states.IGNORED, exc=exc)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not request.is_eager:
            raise
        outcome = _maybe_autoretry(task, exc)
    outcome.runtime = time.perf_counter() - started
    return outcome


def _call(task: Task[Any, Any], args: Any, kwargs: Any) -> Any:
    # Through a base class's own __call__ when there is one, as Celery does.
    return call_task_body(task, args, kwargs)


def _maybe_autoretry(task: Task[Any, Any], exc: BaseException) -> Outcome:
    """``autoretry_for``: turn a matching exception into a retry with optional backoff."""
    trace = tb_module.format_exc()
    if task.autoretry_for and isinstance(exc, task.autoretry_for):
        options = dict(task.retry_kwargs)
        if task.retry_backoff and "countdown" not in options:
            options["countdown"] = backoff_countdown(task, task.request.retries)
        try:
            task.retry(exc=exc, **options)
        except Retry as retry:
            return Outcome(states.RETRY, exc=retry, traceback=trace)
        except BaseException as final:
            return Outcome(states.FAILURE, exc=final, traceback=tb_module.format_exc())
    return Outcome(states.FAILURE, exc=exc, traceback=trace)


def backoff_countdown(task: Task[Any, Any], retries: int) -> float:
    """Exponential backoff as Celery computes it: base * 2**retries, capped, with full jitter."""
    base = 1.0 if task.retry_backoff is True else float(task.retry_backoff)
    countdown = min(task.retry_backoff_max, base * (2**retries))
    if task.retry_jitter:
        import random  # only autoretry's backoff needs it, in every worker process otherwise

        countdown = random.randrange(int(countdown) + 1) if countdown >= 1 else countdown
    return float(countdown)


def _finish(
    app: Celery, task: Task[Any, Any], request: Context, outcome: Outcome, ignore: bool
) -> None:
    """Record the outcome, then run hooks, signals and callbacks. A hook that raises is
    logged (``task_internal_error``) and never turns into the task's outcome."""
    assert request.id is not None
    if outcome.state == states.IGNORED:
        logger.info("Task %s[%s] ignored", task.name, request.id)
        return
    einfo = ExceptionInfo(outcome.exc, outcome.traceback) if outcome.exc is not None else None
    if outcome.state == states.SUCCESS and not _stored_success(app, request, outcome, ignore):
        assert outcome.exc is not None
        einfo = ExceptionInfo(outcome.exc, outcome.traceback)
    if outcome.state == states.SUCCESS:
        _finish_success(app, task, request, outcome)
    elif outcome.state == states.RETRY:
        _finish_retry(app, task, request, outcome, einfo, ignore)
    elif outcome.state == states.FAILURE:
        _finish_failure(app, task, request, outcome, ignore, einfo)
    elif outcome.state == states.REJECTED:
        signals.task_rejected.send(sender=task, message=None, exc=outcome.exc)
        if not outcome.requeue:
            _finish_failure(app, task, request, outcome, ignore, einfo, call_on_failure=False)
    retval = outcome.retval if outcome.exc is None else outcome.exc
    _guarded(
        task,
        request,
        task.after_return,
        outcome.state,
        retval,
        request.id,
        request.args,
        request.kwargs,
        einfo,
    )


def _guarded(task: Task[Any, Any], request: Context, hook: Any, *args: Any) -> None:
    try:
        hook(*args)
    except Exception as exc:
        logger.exception(
            "Task %s[%s] %s raised", task.name, request.id, getattr(hook, "__name__", hook)
        )
        signals.task_internal_error.send(
            sender=task,
            task_id=request.id,
            args=request.args,
            kwargs=request.kwargs,
            request=request,
            exception=exc,
            traceback=None,
            einfo=None,
        )


def _store(
    app: Celery, request: Context, state: str, result: Any, traceback: str | None = None
) -> None:
    assert request.id is not None
    store_result(
        app, request.id, build_meta(request.id, state, result, request, traceback, app=app)
    )


def _stored_success(app: Celery, request: Context, outcome: Outcome, ignore: bool) -> bool:
    """Store a success; a return value the result serializer cannot encode turns the
    outcome into a FAILURE with ``EncodeError`` (as in Celery), so the worker lives on and
    the caller learns why instead of waiting forever."""
    if ignore:
        return True
    try:
        _store(app, request, states.SUCCESS, outcome.retval)
    except EncodeError as exc:
        outcome.state, outcome.retval, outcome.exc = states.FAILURE, None, exc
        outcome.traceback = tb_module.format_exc()
        return False
    return True


def _finish_success(
    app: Celery, task: Task[Any, Any], request: Context, outcome: Outcome
) -> None:
    _guarded(
        task, request, task.on_success, outcome.retval, request.id, request.args, request.kwargs
    )
    signals.task_success.send(sender=task, result=outcome.retval)
    _guarded(task, request, on_task_success, app, task, request, outcome.retval)


def _finish_retry(
    app: Celery,
    task: Task[Any, Any],
    request: Context,
    outcome: Outcome,
    einfo: ExceptionInfo | None,
    ignore: bool,
) -> None:
    retry = outcome.exc
    assert isinstance(retry, Retry)
    reason = retry.exc if retry.exc is not None else retry
    if not ignore or task.option("store_errors_even_if_ignored"):
        _store(app, request, states.RETRY, exception_to_dict(reason), outcome.traceback)
    _guarded(task, request, task.on_retry, reason, request.id, request.args, request.kwargs, einfo)
    signals.task_retry.send(sender=task, request=request, reason=reason, einfo=einfo)


def _finish_failure(
    app: Celery,
    task: Task[Any, Any],
    request: Context,
    outcome: Outcome,
    ignore: bool,
    einfo: ExceptionInfo | None,
    call_on_failure: bool = True,
) -> None:
    """Store the FAILURE, call ``on_failure`` and send ``task_failure``, then fail the
    workflow. A ``Reject(requeue=False)`` ends this way too (the task will never run again,
    so it does not stay PENDING), but without ``on_failure``: it did not fail, it refused."""
    exc = outcome.exc
    assert exc is not None
    if not ignore or task.option("store_errors_even_if_ignored"):
        _store(app, request, states.FAILURE, exception_to_dict(exc), outcome.traceback)
    if call_on_failure:
        _guarded(
            task, request, task.on_failure, exc, request.id, request.args, request.kwargs, einfo
        )
    signals.task_failure.send(
        sender=task,
        task_id=request.id,
        exception=exc,
        args=request.args,
        kwargs=request.kwargs,
        traceback=outcome.traceback,
        einfo=einfo,
    )
    _guarded(task, request, on_task_failure, app, task, request, exc, outcome.traceback)


def workflow_abandoned(
    app: Celery, request: Context, exc: BaseException, state: str, retry: bool = False
) -> None:
    """For a task the worker ends without running it (revoked, expired, lost with its
    worker): its chord part is counted and the rest of its chain failed, as Celery does,
    so no workflow waits forever for it. Call after storing its REVOKED/FAILURE record.
    With ``retry`` an unreachable Redis raises ``OperationalError`` for the caller to try
    again (every step is safe to repeat), instead of being logged and given up."""
    try:
        on_task_abandoned(app, request, exc, state)
    except OperationalError:
        if retry:
            raise
        logger.exception("Could not move on the workflow of %s[%s]", request.task, request.id)
    except Exception:
        logger.exception("Could not move on the workflow of %s[%s]", request.task, request.id)


def run_eager(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    task_id: str,
    options: dict[str, Any],
) -> EagerResult:
    """``apply()``: run the task in this process, as Celery's eager mode does."""
    app = task.app
    parent_id, root_id = _eager_lineage(task_id)
    request = Context(
        id=task_id,
        task=task.name,
        args=list(args),
        kwargs=kwargs,
        retries=int(options.get("retries") or 0),
        is_eager=True,
        called_directly=False,
        root_id=root_id or task_id,
        parent_id=parent_id,
        timelimit=_declared_limits(task),
        hostname="eager",
        callbacks=_as_list(options.get("link")),
        errbacks=_as_list(options.get("link_error")),
        chain=options.get("chain"),
        delivery_info={"routing_key": None},
        ignore_result=not (task.option("store_eager_result")),
        replaced_task_nesting=int(options.get("replaced_task_nesting") or 0),
        **message_stamps(options),
    )
    outcome = run_task(app, task, request)
    if outcome.state == states.RETRY:
        return _eager_after_retry(task, task_id, outcome)
    if outcome.state == states.FAILURE and options.get("throw") and outcome.exc is not None:
        raise outcome.exc
    value = outcome.retval if outcome.exc is None else outcome.exc
    return EagerResult(task_id, value, outcome.state, outcome.traceback, name=task.name, app=app)


def _eager_lineage(task_id: str) -> tuple[str | None, str | None]:
    """``(parent_id, root_id)`` of an eager run: applied from inside another task, it is
    that task's child, as in Celery; an eager retry keeps its own."""
    parent = current_request()
    if parent is None or not parent.id:
        return None, None
    if parent.id == task_id:
        return parent.parent_id, parent.root_id
    return parent.id, parent.root_id or parent.id


def _declared_limits(task: Task[Any, Any]) -> list[float | None] | None:
    if task.time_limit is None and task.soft_time_limit is None:
        return None
    return [task.time_limit, task.soft_time_limit]


def _eager_after_retry(task: Task[Any, Any], task_id: str, outcome: Outcome) -> EagerResult:
    # The retry already ran synchronously inside Task.retry(); report what it ended as.
    retry = outcome.exc
    eager = getattr(retry, "eager_result", None)
    if isinstance(eager, EagerResult):
        return eager
    final = getattr(retry, "exc", None)
    return EagerResult(
        task_id, final or retry, states.RETRY, outcome.traceback, name=task.name, app=task.app
    )


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return [dict(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
