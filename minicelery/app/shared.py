"""Shared tasks: ``@shared_task`` and the registry of task functions every app of the
process learns when it is finalized."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _state
from ..task import Task as BaseTask


def task_name_for(fun: Callable[..., Any]) -> str:
    """``module.function``, with ``__main__`` kept as Celery does."""
    module = fun.__module__
    return f"{module}.{fun.__name__}"


class SharedTaskProxy:
    """What ``@shared_task`` returns: the task of that name in whichever app is current at
    each use, as Celery's proxy does (so a library's tasks follow the user's app)."""

    def __init__(self, name: str) -> None:
        self.__dict__["name"] = name

    def _resolve(self) -> BaseTask[Any, Any]:
        app = _state.get_current_app()
        app.finalize()
        return app.tasks[self.__dict__["name"]]

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._resolve(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@task: {self.__dict__['name']} of {_state.get_current_app().main}>"


def shared_task(*args: Any, **options: Any) -> Any:
    """Define a task for whichever app is current when it is used (``@shared_task``)."""

    def create(fun: Callable[..., Any]) -> Any:
        task = _state.get_current_app()._create_task(fun, **options)
        return SharedTaskProxy(task.name)

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    return create


shared_functions: list[tuple[Callable[..., Any], dict[str, Any]]] = []
"""Every task function defined with ``shared=True`` (the default), with its options."""
