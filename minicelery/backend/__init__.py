"""Result backends by URL; without one, results are disabled (as in Celery)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import DisabledBackend, Meta, ResultBackend

CACHE_MEMORY = "cache+memory://"

if TYPE_CHECKING:
    from .redis import RedisBackend


def backend_from_url(
    url: str | None,
    prefix: str,
    serializer: str,
    expires: float | None,
    client: Any = None,
    failure_expires: float | None = None,
) -> ResultBackend:
    """The result backend for ``url``, or a disabled one when ``url`` is None."""
    if url is None:
        return DisabledBackend()
    from ..redislayer.connect import client_for_url

    if url.startswith(CACHE_MEMORY):  # Celery's in-process cache backend: memory:// here
        url = "memory://" + url[len(CACHE_MEMORY) :]
    from ..redislayer.cluster import is_cluster
    from .redis import RedisBackend

    client = client if client is not None else client_for_url(url)
    backend_class = RedisBackend
    if is_cluster(client):
        from .cluster import ClusterBackend as backend_class
    return backend_class(
        client,
        prefix,
        serializer,
        expires,
        failure_expires,
    )


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        from .redis import RedisBackend

        return RedisBackend
    raise AttributeError(name)


__all__ = ["DisabledBackend", "Meta", "RedisBackend", "ResultBackend", "backend_from_url"]
