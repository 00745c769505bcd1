"""The Redis result backend at Celery's path (``celery.backends.redis``)."""

from ..backend.redis import RedisBackend

__all__ = ["RedisBackend"]
