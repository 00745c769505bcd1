"""Redis Cluster: ``rediscluster://[user:password@]host:port[,host:port...]``, the spelling
of the Celery result backends that support a cluster, on redis-py's own ``RedisCluster``.

The URL lists some of the cluster's nodes (any will do: the client asks one of them for the
slot map). redis-py routes each command by its keys' hash slot, follows MOVED and ASK while
slots move, and finds a promoted replica after a master fails; there is no cluster logic of
ours beyond choosing keys that share a slot where one script must touch them together
(:mod:`.keys`). Redis Cluster has one database: a URL naming another is refused.

:class:`.clusterwire.ClusterWire` gives the rest of the package :class:`.wire.FastPath`'s
interface on a cluster client.
"""

from __future__ import annotations

import contextlib
import sys
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..exceptions import ImproperlyConfigured
from . import errors

SCHEME = "rediscluster"
DEFAULT_PORT = 6379


class ClusterUrl(NamedTuple):
    """What a ``rediscluster://`` URL says: some nodes, and the credentials."""

    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None


def parse(url: str) -> ClusterUrl:
    """Split ``rediscluster://a:7000,b:7001/0`` into its parts (one clear error if bad)."""
    if not url.startswith(f"{SCHEME}://"):
        raise ImproperlyConfigured(f"not a cluster URL: {url!r} ({SCHEME}://host:port,...)")
    rest = url[len(SCHEME) + 3 :]
    credentials, _, hosts = rest.rpartition("@")
    hosts, _, db = hosts.partition("/")
    if db.strip("/") not in ("", "0"):
        raise ImproperlyConfigured(
            f"{SCHEME}:// URLs have database 0 only (Redis Cluster has one), got /{db}"
        )
    nodes = [_node(part, url) for part in hosts.split(",") if part.strip()]
    if not nodes:
        raise ImproperlyConfigured(f"a {SCHEME}:// URL needs at least one host:port")
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if secret else None
    return ClusterUrl(nodes, username, password)


def _node(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host:
        return text.strip(), DEFAULT_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ImproperlyConfigured(f"bad port {port!r} in cluster URL {redact(url)!r}") from None


def redact(url: str) -> str:
    """``url`` with its password hidden."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("://", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}:**@{tail}"


def cluster_client(
    url: str, ssl: Mapping[str, Any] | None, client_kwargs: Mapping[str, Any]
) -> Any:
    """redis-py's ``RedisCluster`` for ``url``; ``client_kwargs`` are the connection
    settings every client of ours gets (timeouts, retry); ``ssl`` Celery's
    ``broker_use_ssl`` keys, which turn TLS on for every node."""
    from redis.cluster import ClusterNode, RedisCluster

    from .tls import tls_on

    errors.adopt_redis_py()
    parsed = parse(url)
    kwargs = {k: v for k, v in client_kwargs.items() if k not in ("health_check_interval",)}
    kwargs.update(tls_on(ssl))
    try:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],  # type: ignore[no-untyped-call]
            username=parsed.username,
            password=parsed.password,
            **kwargs,
        )
    except errors.RedisError as exc:
        raise _reason(parsed, kwargs, exc) from exc


def _reason(parsed: ClusterUrl, kwargs: Mapping[str, Any], exc: Exception) -> Exception:
    """The error behind redis-py's "cannot be connected": the nodes' own answer to the
    CLUSTER SLOTS it asked (a refused password or permission, a server not in cluster
    mode), so that it can be told in one line; ``exc`` itself when no node answers."""
    import redis

    options = {k: v for k, v in kwargs.items() if k.startswith("ssl") or k == "protocol"}
    for host, port in parsed.nodes:
        probe = redis.Redis(host, port, username=parsed.username, password=parsed.password,
                            socket_timeout=2.0, socket_connect_timeout=2.0, **options)  # fmt: skip
        try:
            probe.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as refused:
            return refused
        except redis.ResponseError as other:
            return ImproperlyConfigured(
                f"{host}:{port} is not a Redis Cluster node ({other}): a single Redis server "
                "takes a redis:// URL"
            )
        except redis.RedisError:
            continue
        finally:
            probe.close()
    return exc


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a redis-py cluster client (never imports redis-py)."""
    module = sys.modules.get("redis.cluster")
    return module is not None and isinstance(client, module.RedisCluster)


def node_client(client: Any, key: str) -> Any:
    """The redis-py client of the master that serves ``key``'s slot now."""
    return client.get_redis_connection(client.get_node_from_key(key))


def get_connection_of(pool: Any) -> Any:
    """A connection of ``pool``, kept by its taker until released."""
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.1 wants a command name
        return pool.get_connection("_")


def refresh_slots(client: Any) -> None:
    """On a cluster client, ask for the slot map again now, after a failed call (a MOVED
    our own connection got, or a master gone): redis-py may have refreshed it once inside
    a failover window, the dead master still named, and keep sending there. A cluster that
    no node answers yet leaves it to the next failure. Nothing for another client."""
    if is_cluster(client):
        with contextlib.suppress(Exception):
            client.nodes_manager.initialize()
