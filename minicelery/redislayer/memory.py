"""``memory://``: an in-process Redis (fakeredis), for fast tests with the real broker code."""

from __future__ import annotations

import threading
from typing import Any

from ..exceptions import ImproperlyConfigured
from .errors import adopt_redis_py

_servers: dict[str, Any] = {}
_lock = threading.Lock()


def memory_client(url: str) -> Any:
    """A fakeredis client; clients of the same ``memory://name`` share one server."""
    try:
        import fakeredis
    except ImportError as exc:
        raise ImproperlyConfigured("memory:// needs the 'fakeredis[lua]' package") from exc
    adopt_redis_py()  # fakeredis raises redis-py's errors
    name = url.split("://", 1)[1]
    with _lock:
        server = _servers.get(name)
        if server is None:
            server = _servers[name] = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=server)


def forget_memory_server(name: str) -> None:
    """Drop the in-process server of ``memory://name`` and all it holds (a test app's)."""
    with _lock:
        _servers.pop(name, None)


def memory_async_client(url: str) -> Any:
    """A fakeredis asyncio client of the same server as :func:`memory_client`'s."""
    memory_client(url)  # makes the server when it is the first, and adopts the errors
    import fakeredis

    with _lock:
        server = _servers[url.split("://", 1)[1]]
    return fakeredis.FakeAsyncRedis(server=server)
