"""The application package, at Celery's path: ``Celery`` and ``shared_task``; ``app.task``
holds ``Task`` and its request ``Context``."""

from .base import Celery
from .shared import SharedTaskProxy, shared_task, task_name_for

__all__ = ["Celery", "SharedTaskProxy", "shared_task", "task_name_for"]
