"""``Task`` and its request ``Context`` at Celery's path (``celery.app.task``)."""

from ..task import Context, Task

__all__ = ["Context", "Task"]
