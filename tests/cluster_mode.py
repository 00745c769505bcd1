"""The suite's Redis as a Redis Cluster: with ``MC_TEST_CLUSTER=1`` (or ``--redis-cluster``)
the session's ``redis_server`` is a 3-master cluster started for the session, and the
integration tests that use it run with ``rediscluster://`` URLs, workers and all.
``MC_TEST_CLUSTER_URL`` points them at a cluster that runs already instead."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from minicelery.redislayer.cluster import parse

ENABLE = "MC_TEST_CLUSTER"
URL = "MC_TEST_CLUSTER_URL"


def cluster_wanted() -> bool:
    return bool(os.environ.get(URL)) or os.environ.get(ENABLE, "") not in ("", "0")


class ClusterServer:
    """What the tests use of :class:`tests.helpers.RedisServer`, on a cluster: ``.url``,
    ``.client()``, ``.host``/``.port`` (a master), and key clean-up on every master.
    A cluster is not stopped and restarted by tests: those that do are skipped."""

    restartable = False

    def __init__(self, url: str, topology: Any = None) -> None:
        self.url = url
        self.topology = topology
        self.nodes = parse(url).nodes
        self.host, self.port = self.nodes[0]
        self.workdir = Path(".")

    @property
    def pid(self) -> int:
        raise RuntimeError("a test cluster has no single PID")

    def client(self, db: int = 0, **kwargs: Any) -> RedisCluster:
        kwargs.setdefault("socket_connect_timeout", 2.0)
        kwargs.setdefault("socket_timeout", 5.0)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes], **kwargs
        )

    def masters(self) -> list[redis.Redis]:
        with self.client() as client:
            return [
                redis.Redis(node.host, node.port, socket_timeout=5.0)
                for node in client.get_primaries()
            ]

    def delete_matching(self, pattern: str) -> int:
        deleted = 0
        for master in self.masters():
            with master:
                for key in list(master.scan_iter(match=pattern, count=1000)):
                    deleted += int(master.delete(key))
        return deleted

    def is_running(self) -> bool:
        return True

    def ensure_running(self) -> None:
        pass

    def log(self) -> str:
        return ""

    def start(self, timeout: float = 10.0) -> None:
        pass

    def stop(self, timeout: float = 10.0) -> None:
        raise RuntimeError("the test cluster is not stopped by tests")


def client_for_test_url(url: str) -> Any:
    """A redis-py client for a test URL: a cluster client for ``rediscluster://``."""
    if url.startswith("rediscluster://"):
        return ClusterServer(url).client(socket_timeout=None)
    return redis.Redis.from_url(url)


def cluster_for_session(tmp_path_factory: Any) -> Any:
    """Yield the session's cluster: the one ``MC_TEST_CLUSTER_URL`` names, or 3 masters
    (with a replica each) started here and stopped at the end."""
    if os.environ.get(URL):
        yield ClusterServer(os.environ[URL])
        return
    from tests.integration.clusters import ClusterTopology

    topology = ClusterTopology(tmp_path_factory.mktemp("redis-cluster"))
    topology.start()
    try:
        yield ClusterServer(topology.url, topology)
    finally:
        topology.stop()
