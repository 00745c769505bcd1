"""minicelery: a pure-Python, Celery-compatible distributed task queue on Redis."""

from __future__ import annotations

from . import states
from ._state import get_current_app as _get_current_app
from .app import Celery, shared_task
from .canvas import Signature, chain, chord, chunks, group, signature, subtask, xmap, xstarmap
from .result import AsyncResult, GroupResult
from .task import Task
from .utils import uuid

__version__ = "0.1.0"


class _CurrentApp:
    """``minicelery.current_app``: a proxy to whichever app is current when it is used."""

    def __getattr__(self, name: str) -> object:
        return getattr(_get_current_app(), name)

    def __repr__(self) -> str:
        return repr(_get_current_app())


current_app = _CurrentApp()

__all__ = [
    "AsyncResult",
    "Celery",
    "GroupResult",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "group",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]
