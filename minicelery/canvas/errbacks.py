"""Errbacks: calling them (new style in the worker, old style sent as tasks), finding those
linked to what a workflow produces, and failing results that will never be produced.

Used by :mod:`minicelery.canvas.callbacks` after a task fails and when a chord's header
failed, so its body never runs but its errbacks must (Celery 5.7's rules).
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import OperationalError
from ..serialization import exception_to_dict
from .signature import Signature, maybe_signature

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Context, Task

logger = logging.getLogger(__name__)


def as_list(value: Any) -> list[Any]:
    """An option that holds one signature or a list of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def child_options(request: Context) -> dict[str, Any]:
    return {"parent_id": request.id, "root_id": request.root_id or request.id}


def call_errbacks(
    app: Celery, errbacks: Any, request: Context, exc: BaseException, traceback: str | None
) -> None:
    """New-style errbacks (taking request, exc, traceback) run here, in the worker, as
    Celery does; old-style ones are sent with the failed task's id. An errback that raises
    or cannot be sent is logged and skipped: the workflow (the rest of the chain, the chord)
    must still move on after it."""
    for errback in as_list(errbacks):
        sig = maybe_signature(errback, app)
        target = app.tasks.get(sig.task)
        try:
            if target is not None and _accepts_request(target):
                sig.type(request, exc, traceback, *sig.args, **sig.kwargs)
            else:
                sig.apply_async((request.id,), **child_options(request))
        except Exception:
            logger.exception("errback %s of task %s failed", sig.task, request.id)


def _accepts_request(task: Task[Any, Any]) -> bool:
    try:
        params = list(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) >= 3 and params[0] in ("request", "req", "ctx", "context")


def store_failure(app: Celery, task_id: str, exc: BaseException, traceback: str | None) -> None:
    """Store ``exc`` as the result of ``task_id``, a task that will never run."""
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


def context_of(sig: Signature, request: Context) -> Context:
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


def result_errbacks(sig: Signature, app: Celery) -> tuple[Signature, list[Any]]:
    """The signature whose result ``sig`` gives, and the errbacks linked on the way to it:
    a chord's and its body's, a chain's and its last step's, a group's and its tasks'."""
    errbacks = as_list(sig.options.get("link_error"))
    kind = sig.subtask_type
    if kind == "chord" and sig.body is not None:  # type: ignore[attr-defined]
        final, inner = result_errbacks(maybe_signature(sig.body, app), app)  # type: ignore[attr-defined]
        return final, [*errbacks, *inner]
    if kind == "chain" and sig.tasks:  # type: ignore[attr-defined]
        final, inner = result_errbacks(maybe_signature(sig.tasks[-1], app), app)  # type: ignore[attr-defined]
        return final, [*errbacks, *inner]
    if kind == "group":
        for task in sig.tasks:  # type: ignore[attr-defined]
            errbacks.extend(result_errbacks(maybe_signature(task, app), app)[1])
    return sig, errbacks


def fail_group_body(app: Celery, body: Signature, request: Context, exc: BaseException) -> None:
    """A group that was a chord's body and will never run: each of its tasks calls its own
    errbacks and the group's, each once, with the header's error, which becomes its
    result. (Celery 5.7 does the same, so ``get()`` on the group raises that error.)"""
    own = as_list(body.options.get("link_error"))
    for task in body.tasks:  # type: ignore[attr-defined]
        final, errbacks = result_errbacks(maybe_signature(task, app), app)
        unique: list[Any] = []
        for errback in (*errbacks, *own):
            if errback not in unique:
                unique.append(errback)
        call_errbacks(app, unique, context_of(final, request), exc, None)
        task_id = final.options.get("task_id")
        if task_id:
            store_failure(app, task_id, exc, None)


def link_error_to_body(body: Signature, errback: Signature) -> None:
    """Link an errback given as the ``link_error`` option of a chord to its body, as Celery
    does: a group body links it to each task (to the body of a chord among them), unless
    the group has its own ``link_error``, which replaces its tasks' when it runs: then it
    goes there. A chord body keeps it in its own option (it reaches that chord's body, never
    its header); any other body links it."""
    kind = body.subtask_type
    if kind == "chord" or (kind == "group" and body.options.get("link_error") is not None):
        own = as_list(body.options.get("link_error"))
        if errback not in own:
            own.append(errback.clone())
        body.options["link_error"] = own
    elif kind == "group":
        for task in body.tasks:  # type: ignore[attr-defined]
            if task.subtask_type == "chord" and task.body is not None:
                link_error_to_body(task.body, errback)
            else:
                task.link_error(errback.clone())
    else:
        body.link_error(errback)
