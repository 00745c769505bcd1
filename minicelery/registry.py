"""Task name → task, with Celery's ``NotRegistered`` for unknown names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry(dict[str, "Task[Any, Any]"]):
    """A dict of tasks by name whose missing keys raise :class:`NotRegistered`."""

    def __missing__(self, name: str) -> Task[Any, Any]:
        raise NotRegistered(name)

    def register(self, task: Task[Any, Any]) -> None:
        self[task.name] = task

    def unregister(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise NotRegistered(name) from None
