"""Clients of ``redis.asyncio`` (redis-py's asyncio client) for the asyncio API: one place
that knows which URLs it can reach, so the asyncio package above never imports redis-py."""

from __future__ import annotations

from typing import Any

from ..exceptions import ImproperlyConfigured
from . import errors

SERVER_SCHEMES = ("redis", "rediss", "unix")
POOL_SIZE = 32  # connections a client opens at most (sends are coalesced: few are used)


def async_client(url: str, *, max_connections: int | None = None) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` (``redis://``, ``rediss://``, ``unix://``,
    or ``memory://`` through fakeredis; not yet the embedded Redis, Sentinel or Cluster).

    ``max_connections=1`` gives a client of one connection: what a blocking reader needs
    to be told apart (``CLIENT ID``) and woken (``CLIENT UNBLOCK``)."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        from .memory import memory_async_client

        return memory_async_client(url)
    if scheme not in SERVER_SCHEMES:
        raise ImproperlyConfigured(f"the asyncio client does not support {url.split(':')[0]}://")
    import redis.asyncio

    errors.adopt_redis_py()
    if scheme == "redis":
        url = numeric_host(url)
    # A blocking pool: a burst of commands beyond its size waits for a connection instead
    # of failing ("Too many connections"), as a thousand timed-out awaits at once would.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections or POOL_SIZE,
        timeout=None,
        protocol=2,
        socket_connect_timeout=4.0,
    )
    return redis.asyncio.Redis.from_pool(pool)


def script_sha(source: str) -> str:
    """The SHA1 Redis names a script by (what EVALSHA takes)."""
    import hashlib

    return hashlib.sha1(source.encode()).hexdigest()


def numeric_host(url: str) -> str:
    """``url`` with its host name resolved to an address, here and now. asyncio resolves a
    name in a thread of the loop's executor, and the asyncio client starts no thread; an
    address needs no resolving. (Not for ``rediss://``: TLS checks the name.)"""
    import ipaddress
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        return url
    try:
        ipaddress.ip_address(host)
        return url  # an address already
    except ValueError:
        pass
    port = parts.port or 6379
    family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    shown = f"[{address[0]}]" if family == socket.AF_INET6 else str(address[0])
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{shown}:{port}" if userinfo else f"{shown}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
