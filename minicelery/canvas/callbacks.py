"""What happens after a task ends: its links, the next step of its chain, its errbacks.

The only canvas code a worker calls. Workflows travel inside the message, so nothing outside
the workers has to stay alive for them to advance.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .signature import Signature

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Context, Task

logger = logging.getLogger(__name__)


def _child_options(request: Context) -> dict[str, Any]:
    return {"parent_id": request.id, "root_id": request.root_id or request.id}


def on_task_success(app: Celery, task: Task[Any, Any], request: Context, retval: Any) -> None:
    """Send the link callbacks and the chain's next step with the task's return value."""
    for callback in request.callbacks or ():
        sig = Signature(callback, app=app)
        sig.apply_async((retval,), **_child_options(request))
    chain = list(request.chain or ())
    if chain:
        next_step = Signature(chain.pop(), app=app)
        options: dict[str, Any] = _child_options(request)
        if chain:
            options["chain"] = chain
        next_step.apply_async((retval,), **options)


def on_task_failure(
    app: Celery, task: Task[Any, Any], request: Context, exc: BaseException, traceback: str | None
) -> None:
    """Call the errbacks: new-style ones (taking request, exc, traceback) run here, in the
    worker, as Celery does; old-style ones are sent with the failed task's id."""
    for errback in request.errbacks or ():
        sig = Signature(errback, app=app)
        target = app.tasks.get(sig.task)
        if target is not None and _accepts_request(target):
            try:
                sig.type(request, exc, traceback, *sig.args, **sig.kwargs)
            except Exception:
                logger.exception("errback %s raised", sig.task)
        else:
            sig.apply_async((request.id,), **_child_options(request))


def _accepts_request(task: Task[Any, Any]) -> bool:
    import inspect

    try:
        params = list(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) >= 3 and params[0] in ("request", "req", "ctx", "context")
