"""Redis Sentinel: ``sentinel://`` URLs, spelled as kombu and Celery spell them.

``sentinel://[:password@]host:port[/db]`` names one sentinel; several are joined by ``;``.
The password and database of the first URL that gives them are the master's (as kombu reads
them); the sentinels' own password goes in ``sentinel_kwargs``. The master's name comes from
``broker_transport_options`` (or ``result_backend_transport_options``)::

    broker_url = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379"
    broker_transport_options = {"master_name": "mymaster",
                                "sentinel_kwargs": {"password": "s3cret"}}

The client is redis-py's, on a :class:`redis.sentinel.SentinelConnectionPool`: every new
connection asks the sentinels where the master is, and a connection to a demoted master
(READONLY, or a blocking read unblocked by the role change) is closed and reported as a
connection error, which every caller already retries. No failover logic of our own.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..exceptions import ImproperlyConfigured
from . import errors

SCHEME = "sentinel"
DEFAULT_PORT = 26379


class SentinelUrl(NamedTuple):
    """What a ``sentinel://`` URL list says: the sentinels, and the master's credentials."""

    sentinels: list[tuple[str, int]]
    username: str | None
    password: str | None
    db: int


def parse(url: str) -> SentinelUrl:
    """Split ``sentinel://a:26379;sentinel://b:26379/0`` into its parts."""
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for one in filter(None, (part.strip() for part in url.split(";"))):
        parts = urllib.parse.urlsplit(one)
        if parts.scheme != SCHEME or not parts.hostname:
            raise ImproperlyConfigured(f"not a sentinel URL: {one!r} (sentinel://host:port)")
        sentinels.append((parts.hostname, parts.port or DEFAULT_PORT))
        username = username or (urllib.parse.unquote(parts.username) if parts.username else None)
        password = password or (urllib.parse.unquote(parts.password) if parts.password else None)
        if parts.path.strip("/"):
            db = int(parts.path.strip("/"))
    return SentinelUrl(sentinels, username, password, db)


def master_name(options: Mapping[str, Any], setting: str) -> str:
    """The ``master_name`` transport option, or one clear error naming ``setting``."""
    name = options.get("master_name")
    if not name:
        raise ImproperlyConfigured(
            f"a sentinel:// URL needs the master's name: set {setting}="
            "{'master_name': '<name the sentinels monitor>'}"
        )
    return str(name)


def sentinel_client(
    url: str, options: Mapping[str, Any], setting: str, client_kwargs: Mapping[str, Any]
) -> Any:
    """A redis-py client on the master the sentinels of ``url`` name, following failovers.
    ``client_kwargs``: the connection settings every client of ours gets (timeouts, retry,
    TLS), applied to the master's connections."""
    from redis.sentinel import Sentinel

    errors.adopt_redis_py()
    name = master_name(options, setting)
    parsed = parse(url)
    sentinel_kwargs = dict(options.get("sentinel_kwargs") or {})
    sentinel_kwargs.setdefault("socket_timeout", 1.0)
    sentinel_kwargs.setdefault("socket_connect_timeout", 1.0)
    sentinel = Sentinel(
        parsed.sentinels,
        sentinel_kwargs=sentinel_kwargs,
        **client_kwargs,
    )
    return sentinel.master_for(
        name,
        redis_class=_redis_class(),
        username=parsed.username,
        password=parsed.password,
        db=parsed.db,
    )


def _redis_class() -> Any:
    """redis-py's client, whose PING (the start-up check) tells a sentinel that refuses
    the password of ``sentinel_kwargs`` from one that cannot find the master: redis-py's
    discovery takes both for "no master found", which would be retried for ever."""
    import redis
    from redis.sentinel import MasterNotFoundError

    class SentinelRedis(redis.Redis):
        def ping(self, **kwargs: Any) -> Any:
            try:
                return super().ping(**kwargs)
            except MasterNotFoundError:
                _raise_refusal(getattr(self.connection_pool, "sentinel_manager", None))
                raise

    return SentinelRedis


def _raise_refusal(manager: Any) -> None:
    import redis

    for sentinel in getattr(manager, "sentinels", ()):
        try:
            sentinel.ping()
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            raise redis.AuthenticationError(
                f"a sentinel refused the password of sentinel_kwargs ({exc})"
            ) from exc
        except redis.RedisError:
            continue
