"""An ``async def`` task's run in two halves around its coroutine (the worker's part of
``celery.app.trace`` for them): :func:`begin` does what :func:`~minicelery.trace.run_task`
does before the body (STARTED, ``task_prerun``, ``before_start``) and makes the coroutine;
an event loop awaits it, many at once; :func:`finish` classifies how it ended and does the
rest (result, hooks, signals, retries, callbacks) outside the loop's turn."""

from __future__ import annotations

import os
import traceback as tb_module
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import signals, states
from ._state import set_async_request, task_stack
from .exceptions import Ignore, Reject, Retry, TaskRevokedError
from .serialization import exception_to_dict
from .task import Task, _traced_call
from .task_retry import ignores_result
from .trace import (
    Outcome,
    _finish,
    _maybe_autoretry,
    build_meta,
    store_result,
    workflow_abandoned,
)  # fmt: skip

if TYPE_CHECKING:
    from .app import Celery
    from .task import Context


@dataclass
class Begun:
    """An async task whose coroutine is made, not yet awaited."""

    task: Task[Any, Any]
    request: Context
    ignore: bool
    coro: Coroutine[Any, Any, Any]
    terminated: int | None = None  # the signal of a revoke(terminate=True) that cancelled it


def begin(app: Celery, task: Task[Any, Any], request: Context) -> Begun:
    """The first half: what run_task does before the body, then the coroutine, which makes
    ``request`` current (``task.request``) in its own context when it is awaited."""
    assert request.id is not None
    args, kwargs, hostname = request.args, request.kwargs, request.hostname
    ignore = ignores_result(task, request)
    if task.option("track_started") and not ignore:
        started = {"pid": os.getpid(), "hostname": hostname}
        store_result(app, request.id,
                     build_meta(request.id, states.STARTED, started, request, app=app))  # fmt: skip
    signals.task_prerun.send(sender=task, task_id=request.id, task=task, args=args,
                             kwargs=kwargs)  # fmt: skip
    stack = task_stack()
    stack.append(request)
    try:
        task.before_start(request.id, args, kwargs)
        coro = _body(task, args, kwargs)
    except BaseException as exc:
        coro = _raising(exc)
    finally:
        stack.pop()
    return Begun(task, request, ignore, _in_context(request, coro))


async def _in_context(request: Context, coro: Coroutine[Any, Any, Any]) -> Any:
    set_async_request(request)  # this asyncio task's own context: many run in one thread
    return await coro


def _body(task: Task[Any, Any], args: Any, kwargs: Any) -> Coroutine[Any, Any, Any]:
    """The coroutine, through a base class's own ``__call__`` when there is one."""
    if type(task).__call__ is Task.__call__:
        result = task.run(*args, **kwargs)
    else:
        token = _traced_call.set(task)
        try:
            result = task(*args, **kwargs)
        finally:
            _traced_call.reset(token)
    if isinstance(result, Coroutine):
        return result
    return _value(result)


async def _value(value: Any) -> Any:
    return value


async def _raising(exc: BaseException) -> Any:
    raise exc


def finish(
    app: Celery, begun: Begun, value: Any, exc: BaseException | None, runtime: float
) -> Outcome:
    """The second half, once the coroutine ended."""
    task, request = begun.task, begun.request
    stack = task_stack()
    stack.append(request)  # current for hooks, receivers and autoretry, as in run_task
    try:
        outcome = _outcome(task, value, exc)
        outcome.runtime = runtime
        _finish(app, task, request, outcome, begun.ignore)
        signals.task_postrun.send(
            sender=task, task_id=request.id, task=task, args=request.args,
            kwargs=request.kwargs, state=outcome.state,
            retval=outcome.retval if outcome.exc is None else outcome.exc,
        )  # fmt: skip
    finally:
        stack.pop()
    return outcome


def _outcome(task: Task[Any, Any], value: Any, exc: BaseException | None) -> Outcome:
    """As :func:`~minicelery.trace.run_task` classifies what a body raised; the exception
    is raised again here so that its traceback (from the loop thread) is the one kept."""
    if exc is None:
        return Outcome(states.SUCCESS, retval=value)
    try:
        raise exc
    except Reject as rejected:
        return Outcome(states.REJECTED, exc=rejected, requeue=rejected.requeue,
                       traceback=tb_module.format_exc())  # fmt: skip
    except Retry as retry:
        return Outcome(states.RETRY, exc=retry, traceback=tb_module.format_exc())
    except Ignore as ignored:
        return Outcome(states.IGNORED, exc=ignored)
    except BaseException as error:
        return _maybe_autoretry(task, error)



def terminated(app: Celery, begun: Begun) -> None:
    """A coroutine cancelled by ``revoke(terminate=True)``: REVOKED, ``task_revoked`` with
    the signal named, its workflow told, as for a sync task its signal stopped."""
    task, request = begun.task, begun.request
    assert request.id is not None
    exc = TaskRevokedError("terminated")
    store_result(app, request.id, build_meta(request.id, states.REVOKED,
                                             exception_to_dict(exc), request, app=app))  # fmt: skip
    signals.task_revoked.send(sender=task, request=request, terminated=True,
                              signum=begun.terminated, expired=False)  # fmt: skip
    workflow_abandoned(app, request, exc, states.REVOKED)
