"""What a retry sends again, as Celery works it out from the running request: the arguments
(when the retry switches between positional and keyword arguments) and the options it
carries over (custom headers, priority, the caller's ``ignore_result``, the shadow name)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import EagerResult
    from .task import Context, Task

_BY_NAME_OR_POSITION = inspect.Parameter.POSITIONAL_OR_KEYWORD
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, _BY_NAME_OR_POSITION)


def retry_arguments(
    run: Callable[..., Any], request: Context, args: Any, kwargs: Any
) -> tuple[Any, Any]:
    """``(args, kwargs)`` of the retry. What the retry does not give is inherited from the
    request, except what would now be passed twice: new positional arguments drop the
    inherited keywords they stand for, and new keywords replace the inherited positional
    arguments of the same name (so ``retry(args=...)`` of a task called with keywords does
    not fail with "got multiple values")."""
    if args is not None and kwargs is None and request.kwargs:
        kwargs = _kwargs_left(run, list(args), dict(request.kwargs))
    elif kwargs is not None and args is None and request.args:
        args, kwargs = _rebound(run, list(request.args), dict(kwargs))
    return (
        args if args is not None else request.args,
        kwargs if kwargs is not None else request.kwargs,
    )


def _parameters(run: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(run)
    except (TypeError, ValueError):
        return None  # the task's own argument check reports what is wrong


def _kwargs_left(run: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    signature = _parameters(run)
    if signature is None:
        return None
    positional = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    for parameter in positional[: len(args)]:
        if parameter.kind == _BY_NAME_OR_POSITION:
            kwargs.pop(parameter.name, None)
    return kwargs


def _rebound(run: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    signature = _parameters(run)
    if signature is None:
        return None, kwargs
    try:
        bound = signature.bind_partial(*args)
    except TypeError:
        return None, kwargs
    for name in list(kwargs):
        parameter = signature.parameters.get(name)
        if name in bound.arguments and parameter and parameter.kind == _BY_NAME_OR_POSITION:
            bound.arguments[name] = kwargs.pop(name)
    return list(bound.args), {**bound.kwargs, **kwargs}


def carried_options(request: Context, ignore_result: bool) -> dict[str, Any]:
    """The options of the running request a retry keeps (Celery's ``signature_from_request``):
    its custom headers, its priority, whether its caller ignored the result, its shadow."""
    options: dict[str, Any] = {"ignore_result": ignore_result}
    if request.headers:
        options["headers"] = dict(request.headers)
    priority = (request.delivery_info or {}).get("priority")
    if priority is not None:
        options["priority"] = priority
    if request.shadow:
        options["shadow"] = request.shadow
    return options


def ignores_result(task: Task[Any, Any], request: Context) -> bool:
    """Whether this run stores no result: the caller's ``ignore_result`` when the message
    said, else the task's (Celery's ``get_actual_ignore_result``)."""
    explicit = request.__dict__.get("ignore_result")
    return bool(task.option("ignore_result") if explicit is None else explicit)


def send_retry(
    task: Task[Any, Any], request: Context, args: Any, kwargs: Any, options: dict[str, Any]
) -> EagerResult | None:
    """Send the retry of the running ``request`` (``Task.retry`` decided it may): the same
    id, one more retry, its workflow, expiry, limits, stamps and carried options, unless
    ``options`` say otherwise. Eager mode runs it at once and returns its result."""
    args, kwargs = retry_arguments(task.run, request, args, kwargs)
    if request.is_eager:
        # Eager mode retries eagerly, at once, as Celery does; apply() reports its end.
        return task.apply(args, kwargs, task_id=request.id, retries=request.retries + 1)
    delivery_info = request.delivery_info or {}
    # As Celery: the retry keeps the original's absolute expiry and its time limits.
    hard, soft = request.timelimit or (None, None)
    options = {
        "expires": request.expires,
        "time_limit": hard,
        "soft_time_limit": soft,
        **carried_options(request, ignores_result(task, request)),
        **_stamps_of(request),
        **options,
    }
    task.app.send_task(
        task.name,
        args,
        kwargs,
        task_id=request.id,
        retries=request.retries + 1,
        root_id=request.root_id,
        parent_id=request.parent_id,
        group_id=request.group,
        group_index=request.group_index,
        queue=options.pop("queue", delivery_info.get("routing_key")),
        embed={
            "callbacks": request.callbacks,
            "errbacks": request.errbacks,
            "chain": request.chain,
            "chord": request.chord,
        },
        task=task,
        **options,
    )
    return None


def _stamps_of(request: Context) -> dict[str, Any]:
    """A running task's canvas stamps as ``apply_async`` options, so its retry carries them
    on, as in Celery."""
    names = request.stamped_headers
    if not names:
        return {}
    stamps = request.stamps or {}
    return {"stamped_headers": list(names), **{name: stamps.get(name) for name in names}}
