"""What the integration test apps share: a per-process Redis client for tasks that record
their runs (prefork children have no connection of minicelery's to borrow, and must not
use their parent's)."""

from __future__ import annotations

import os

import redis

from tests.cluster_mode import client_for_test_url

_clients: dict[tuple[int, str], redis.Redis] = {}


def redis_client(url: str) -> redis.Redis:
    """This process's own client for ``url``; a forked child opens its own."""
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = client_for_test_url(url)
    return _clients[key]
