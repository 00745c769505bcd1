"""The one piece of process-wide state: the current app (plus the running task, per thread)."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Celery

_current_app: Celery | None = None
_apps: list[Celery] = []
_local = threading.local()
#: The request of the ``async def`` task running in this asyncio task (a worker's loop
#: runs many at once in one thread, so the per-thread stack cannot say which).
_async_request: ContextVar[Any] = ContextVar("async_request", default=None)


def set_current_app(app: Celery) -> None:
    global _current_app
    _current_app = app


def register_app(app: Celery) -> None:
    _apps.append(app)


def all_apps() -> list[Celery]:
    return list(_apps)


def get_current_app() -> Celery:
    """The most recently created (or explicitly set) app; a default one if there is none."""
    if _current_app is None:
        from .app import Celery

        Celery("default")  # becomes current as a side effect of construction
    assert _current_app is not None
    return _current_app


def task_stack() -> list[Any]:
    """The stack of requests of tasks running in this thread (innermost last)."""
    stack: list[Any] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def current_request() -> Any:
    stack = task_stack()
    return stack[-1] if stack else _async_request.get()


def set_async_request(request: Any) -> None:
    """Make ``request`` current in this context (an asyncio task's own copy)."""
    _async_request.set(request)
