"""The tasks every app has for the canvas: ``celery.map``, ``celery.starmap``,
``celery.chunks`` and ``celery.accumulate`` (Celery's names, so their signatures read the
same on the wire)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .mapping import chunked
from .signature import maybe_signature

if TYPE_CHECKING:
    from ..app import Celery


def accumulate(*args: Any, index: int | None = None) -> Any:
    """Its arguments (or the one at ``index``): the body of the chord a group becomes when
    it replaces a task, whose results it passes on as one list."""
    return args[index] if index is not None else args


def add_builtin_tasks(app: Celery) -> None:
    """Register the builtin tasks in ``app`` (done when the app is finalized)."""

    def xmap(task: Any, it: Any) -> list[Any]:
        fun = maybe_signature(task, app).type
        return [fun(item) for item in it]

    def xstarmap(task: Any, it: Any) -> list[Any]:
        fun = maybe_signature(task, app).type
        return [fun(*item) for item in it]

    def chunks(task: Any, it: Any, n: int) -> list[list[Any]]:
        fun = maybe_signature(task, app).type
        return [[fun(*item) for item in part] for part in chunked(it, n)]

    builtins: dict[str, Callable[..., Any]] = {
        "celery.map": xmap,
        "celery.starmap": xstarmap,
        "celery.chunks": chunks,
        "celery.accumulate": accumulate,
    }
    for name, fun in builtins.items():
        app._create_task(fun, name=name, shared=False)
