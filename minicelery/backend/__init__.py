"""Result backends by URL; without one, results are disabled (as in Celery)."""

from __future__ import annotations

from ..broker import redis_client
from .base import DisabledBackend, Meta, ResultBackend
from .redis import RedisBackend


def backend_from_url(
    url: str | None, prefix: str, serializer: str, expires: float | None
) -> ResultBackend:
    """The result backend for ``url``, or a disabled one when ``url`` is None."""
    if url is None:
        return DisabledBackend()
    return RedisBackend(redis_client(url), prefix, serializer, expires)


__all__ = ["DisabledBackend", "Meta", "RedisBackend", "ResultBackend", "backend_from_url"]
