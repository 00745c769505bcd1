"""What happens after a task ends: its links, the next step of its chain, its errbacks, and
its part in a chord.

The only canvas code a worker calls. Workflows travel inside the message, so nothing outside
the workers has to stay alive for them to advance.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import ChordError, OperationalError
from ..serialization import exception_from_dict, exception_to_dict
from .errbacks import (
    call_errbacks,
    child_options,
    context_of,
    fail_group_body,
    result_errbacks,
    store_failure,
)
from .signature import Signature, maybe_signature

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Context, Task

logger = logging.getLogger(__name__)

PUBLISH_RETRY_SECONDS = 30.0


def on_task_success(app: Celery, task: Task[Any, Any], request: Context, retval: Any) -> None:
    """Send the link callbacks and the chain's next step with the task's return value, and
    count the task's part of its chord."""
    for callback in request.callbacks or ():
        maybe_signature(callback, app).apply_async((retval,), **child_options(request))
    chain = list(request.chain or ())
    if chain:
        next_step = maybe_signature(chain.pop(), app)
        options: dict[str, Any] = child_options(request)
        if chain:
            options["chain"] = chain
        next_step.apply_async((retval,), **options)
    if request.chord:
        chord_part(app, request, request.chord, [states.SUCCESS, retval])


def on_task_failure(
    app: Celery,
    task: Task[Any, Any] | None,
    request: Context,
    exc: BaseException,
    traceback: str | None,
    state: str = states.FAILURE,
) -> None:
    """Call the errbacks, fail the rest of the chain (so waiting on its last result raises
    this error, as in Celery) and count the failure as the task's part of its chord."""
    call_errbacks(app, request.errbacks, request, exc, traceback)
    if request.chord:
        chord_part(app, request, request.chord, [state, exception_to_dict(exc), request.id])
    for step in reversed(request.chain or ()):
        fail_workflow(app, maybe_signature(step, app), exc, traceback, request)


def on_task_abandoned(app: Celery, request: Context, exc: BaseException, state: str) -> None:
    """A task that ended without running to completion: revoked, expired, or lost with
    its worker (``state`` REVOKED or FAILURE). Its workflow moves on as after a failure:
    errbacks, the rest of its chain failed, its chord part counted, so no chord waits
    forever for it. For the worker to call wherever it stores such an end itself."""
    on_task_failure(app, None, request, exc, None, state)


def fail_workflow(
    app: Celery, sig: Signature, exc: BaseException, traceback: str | None, request: Context
) -> None:
    """Mark what ``sig`` would have produced as failed with ``exc`` (it will never run),
    including its part in a chord, so nobody waits on it forever."""
    kind = sig.subtask_type
    if kind in ("chain", "group"):
        for task in sig.tasks:  # type: ignore[attr-defined]
            fail_workflow(app, task, exc, traceback, request)
    elif kind == "chord":
        if sig.body is not None:  # type: ignore[attr-defined]
            fail_workflow(app, sig.body, exc, traceback, request)  # type: ignore[attr-defined]
    elif sig.options.get("task_id"):
        store_failure(app, sig.options["task_id"], exc, traceback)
    # What was to follow it (a group that is a chord body carries the rest of its chain).
    for step in reversed(sig.options.get("chain") or ()):
        fail_workflow(app, maybe_signature(step, app), exc, traceback, request)
    if sig.options.get("chord") and kind != "chord":  # a group can be one chord part too
        failure = [states.FAILURE, exception_to_dict(exc), request.id]
        chord_part(app, context_of(sig, request), sig.options["chord"], failure)


def chord_part(app: Celery, request: Context, body: Any, part: list[Any]) -> None:
    """Record this task's part of its chord; the one that completes the chord calls the
    body (once: the count is kept atomically in Redis, by header index, so a task that
    runs twice is counted once). The chord is settled only once the body is sent: if this
    process dies first, the same task asking again (run again, or ended as lost by its
    worker) gets the parts again and sends the body."""
    if request.group is None or request.group_index is None:
        logger.error("Task %s has a chord but no group id/index: ignored", request.id)
        return
    if body.get("chord_size") is None:
        logger.error("Task %s has a chord without a header size: ignored", request.id)
        return
    size = int(body["chord_size"])  # 0: a header read from a generator, sized by its last
    group_index = int(request.group_index)
    parts = app.backend.chord_part_return(request.group, group_index, size, part, request.id or "")
    if parts is not None:
        _call_body(app, request, maybe_signature(body, app), parts)
        app.backend.chord_settle(request.group)


def _call_body(app: Celery, request: Context, body: Signature, parts: list[Any]) -> None:
    for part in parts:
        if part is None or part[0] != states.SUCCESS:
            _header_failed(app, request, body, part)
            return
    values = [part[1] for part in parts]
    # This call alone claimed the chord: ride out a Redis outage rather than lose the body.
    deadline, delay = time.monotonic() + PUBLISH_RETRY_SECONDS, 0.1
    while True:
        try:
            body.apply_async((values,), **child_options(request))
            return
        except OperationalError:
            if time.monotonic() > deadline:
                logger.error("Could not send the body of chord %s: Redis unreachable", body.id)
                raise
            time.sleep(delay)  # backoff between reconnect attempts, not synchronisation
            delay = min(delay * 2, 2.0)


def _header_failed(app: Celery, request: Context, body: Signature, part: list[Any] | None) -> None:
    """The body will never run: fail what it would have produced and call its errbacks,
    as Celery does. A single body (or chain, or chord) fails with a ``ChordError`` naming
    the header task; the tasks of a group body fail with the header task's own error."""
    culprit = part[2] if part else "?"
    cause = exception_from_dict(part[1]) if part else None
    error = ChordError(f"Dependency {culprit} raised {cause!r}")
    error.__cause__ = cause
    if body.subtask_type == "group":
        fail_group_body(app, body, request, cause if cause is not None else error)
        for step in reversed(body.options.get("chain") or ()):
            fail_workflow(app, maybe_signature(step, app), error, None, request)
        return
    final, errbacks = result_errbacks(body, app)
    fail_workflow(app, body, error, None, request)
    call_errbacks(app, errbacks, context_of(final, request), error, None)
