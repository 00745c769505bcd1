"""What happens after a task ends: its links, the next step of its chain, its errbacks, and
its part in a chord.

The only canvas code a worker calls. Workflows travel inside the message, so nothing outside
the workers has to stay alive for them to advance.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import ChordError, OperationalError
from ..serialization import exception_from_dict, exception_to_dict
from .signature import Signature, maybe_signature

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Context, Task

logger = logging.getLogger(__name__)

PUBLISH_RETRY_SECONDS = 30.0


def _child_options(request: Context) -> dict[str, Any]:
    return {"parent_id": request.id, "root_id": request.root_id or request.id}


def on_task_success(app: Celery, task: Task[Any, Any], request: Context, retval: Any) -> None:
    """Send the link callbacks and the chain's next step with the task's return value, and
    count the task's part of its chord."""
    for callback in request.callbacks or ():
        maybe_signature(callback, app).apply_async((retval,), **_child_options(request))
    chain = list(request.chain or ())
    if chain:
        next_step = maybe_signature(chain.pop(), app)
        options: dict[str, Any] = _child_options(request)
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


def call_errbacks(
    app: Celery, errbacks: Any, request: Context, exc: BaseException, traceback: str | None
) -> None:
    """New-style errbacks (taking request, exc, traceback) run here, in the worker, as
    Celery does; old-style ones are sent with the failed task's id."""
    for errback in errbacks or ():
        sig = maybe_signature(errback, app)
        target = app.tasks.get(sig.task)
        if target is not None and _accepts_request(target):
            try:
                sig.type(request, exc, traceback, *sig.args, **sig.kwargs)
            except Exception:
                logger.exception("errback %s raised", sig.task)
        else:
            sig.apply_async((request.id,), **_child_options(request))


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
        _store_failure(app, sig.options["task_id"], exc, traceback)
    # What was to follow it (a group that is a chord body carries the rest of its chain).
    for step in reversed(sig.options.get("chain") or ()):
        fail_workflow(app, maybe_signature(step, app), exc, traceback, request)
    if sig.options.get("chord") and kind != "chord":  # a group can be one chord part too
        _fail_chord_part(app, sig, exc, request)


def _fail_chord_part(app: Celery, sig: Signature, exc: BaseException, request: Context) -> None:
    failure = [states.FAILURE, exception_to_dict(exc), request.id]
    chord_part(app, _context_of(sig, request), sig.options["chord"], failure)


def _store_failure(app: Celery, task_id: str, exc: BaseException, traceback: str | None) -> None:
    meta: dict[str, Any] = {
        "status": states.FAILURE,
        "result": exception_to_dict(exc),
        "traceback": traceback,
        "children": [],
        "date_done": dt.datetime.now(dt.timezone.utc).isoformat(),
        "task_id": task_id,
    }
    try:
        app.backend.store(task_id, meta)
    except OperationalError:
        logger.error("Could not store the failure of %s (never run): Redis unreachable", task_id)


def _context_of(sig: Signature, request: Context) -> Context:
    """A request for a task that never ran (a chain step or chord body being failed)."""
    return type(request)(
        id=sig.options.get("task_id"),
        task=sig.task,
        args=sig.args,
        kwargs=sig.kwargs,
        group=sig.options.get("group_id"),
        group_index=sig.options.get("group_index"),
        root_id=request.root_id or request.id,
        parent_id=request.id,
        called_directly=False,
    )


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
            culprit = part[2] if part else "?"
            cause = exception_from_dict(part[1]) if part else None
            error = ChordError(f"Dependency {culprit} raised {cause!r}")
            fail_workflow(app, body, error, None, request)
            call_errbacks(app, _entry_errbacks(body), _context_of(body, request), error, None)
            return
    values = [part[1] for part in parts]
    # This call alone claimed the chord: ride out a Redis outage rather than lose the body.
    deadline, delay = time.monotonic() + PUBLISH_RETRY_SECONDS, 0.1
    while True:
        try:
            body.apply_async((values,), **_child_options(request))
            return
        except OperationalError:
            if time.monotonic() > deadline:
                logger.error("Could not send the body of chord %s: Redis unreachable", body.id)
                raise
            time.sleep(delay)  # backoff between reconnect attempts, not synchronisation
            delay = min(delay * 2, 2.0)


def _entry_errbacks(body: Signature) -> list[Any]:
    """The errbacks called when a chord's body never runs: its own, and for a chain body
    those of its first task (where Celery's chord calls them: ``chain.link_error`` puts
    them on every step)."""
    errbacks = list(body.options.get("link_error") or ())
    if body.subtask_type == "chain" and body.tasks:  # type: ignore[attr-defined]
        first = body.tasks[0]  # type: ignore[attr-defined]
        errbacks += [e for e in _entry_errbacks(first) if e not in errbacks]
    return errbacks


def _accepts_request(task: Task[Any, Any]) -> bool:
    try:
        params = list(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) >= 3 and params[0] in ("request", "req", "ctx", "context")
