"""The test cluster itself, proved with redis-py's own cluster client: keys spread over
every master, a killed master's replica takes over, and a slot moved with its keys (whole,
or left half-way so that clients get ASK) is followed by a client that knew the old map."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError

from tests.helpers import LOOPBACK, wait_until
from tests.integration.clusters import ClusterTopology


@pytest.fixture
def cluster_client(redis_cluster: ClusterTopology) -> Iterator[RedisCluster]:
    """redis-py's cluster client, started from the first master of the cluster's URL."""
    first = redis_cluster.url.removeprefix("rediscluster://").split(",")[0]
    host, port = first.rsplit(":", 1)
    client = RedisCluster(host=host, port=int(port), decode_responses=True, socket_timeout=2.0)
    try:
        yield client
    finally:
        client.close()


def tagged_keys(tag: str, count: int) -> list[str]:
    """``count`` keys of one slot (one hash tag)."""
    return [f"{{{tag}}}:{number}" for number in range(count)]


def other_master(cluster: ClusterTopology, port: int) -> int:
    return next(master for _, master, _ in cluster.masters() if master != port)


def test_keys_land_on_every_master(
    redis_cluster: ClusterTopology, cluster_client: RedisCluster
) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3 and len(redis_cluster.live_ports()) == 6  # and 3 replicas
    assert redis_cluster.url == "rediscluster://" + ",".join(f"{h}:{p}" for h, p, _ in masters)
    for _, port, pid in masters:
        assert redis_cluster.procs[port].pid == pid
        with redis_cluster.client(port) as node:
            assert node.info("replication")["connected_slaves"] == 1
    for number in range(60):
        cluster_client.set(f"key-{number}", number)
    for _, port, _ in masters:
        with redis_cluster.client(port) as node:
            assert node.dbsize() > 0, f"no key on master {port}"
    for number in range(0, 60, 7):
        _, port = redis_cluster.node_for_key(f"key-{number}")
        with redis_cluster.client(port) as node:
            assert node.get(f"key-{number}") == str(number)


def test_replica_takes_over_a_killed_master(
    redis_cluster: ClusterTopology, cluster_client: RedisCluster
) -> None:
    cluster_client.set("survivor", "before")
    _, old_port = redis_cluster.node_for_key("survivor")
    with redis_cluster.client(old_port) as master:
        assert master.execute_command("WAIT", 1, 2000) == 1  # the replica has it
    old_pid = next(pid for _, port, pid in redis_cluster.masters() if port == old_port)

    assert redis_cluster.kill_master_of("survivor") == old_port
    new_port = redis_cluster.wait_failover(old_port)

    assert new_port != old_port
    assert redis_cluster.node_for_key("survivor") == (LOOPBACK, new_port)
    assert old_pid not in [pid for _, _, pid in redis_cluster.masters()]

    def carries_on() -> bool:
        try:
            cluster_client.set("after", "failover")
            return cluster_client.get("survivor") == "before"
        except redis.RedisError:
            return False

    wait_until(carries_on, timeout=5, interval=0.1, message="the client did not carry on")
    assert cluster_client.get("after") == "failover"


def test_migrate_slot_moves_keys_and_client_follows_moved(
    redis_cluster: ClusterTopology, cluster_client: RedisCluster
) -> None:
    keys = tagged_keys("moved", 250)  # more than one MIGRATE batch
    for key in keys:
        cluster_client.set(key, key.upper())
    slot = key_slot(b"moved")
    _, source = redis_cluster.node_for_key(keys[0])
    target = other_master(redis_cluster, source)

    finish = redis_cluster.migrate_slot(slot, target)

    assert redis_cluster.node_for_key(keys[0]) == (LOOPBACK, target)
    with redis_cluster.client(source) as node:
        assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    with redis_cluster.client(target) as node:
        assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)
    # The client still maps the slot to the source: MOVED sends it to the target.
    assert [cluster_client.get(key) for key in keys] == [key.upper() for key in keys]
    finish()  # nothing left to do


def test_half_migrated_slot_sends_clients_asking(
    redis_cluster: ClusterTopology, cluster_client: RedisCluster
) -> None:
    keys = tagged_keys("half", 40)
    for key in keys:
        cluster_client.set(key, key.upper())
    slot = key_slot(b"half")
    _, source = redis_cluster.node_for_key(keys[0])
    target = other_master(redis_cluster, source)

    finish = redis_cluster.migrate_slot(slot, target, stop_midway=True)

    with redis_cluster.client(target) as node:
        moved = node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
    with redis_cluster.client(source) as node:
        stayed = node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        with pytest.raises(AskError) as asked:
            node.get(moved[0])
    assert (asked.value.host, asked.value.port) == (LOOPBACK, target)
    assert len(moved) == len(keys) // 2
    assert sorted(moved + stayed) == sorted(keys)
    assert redis_cluster.node_for_key(keys[0]) == (LOOPBACK, source)  # not moved yet
    assert cluster_client.get(moved[0]) == moved[0].upper()  # ASK followed
    assert cluster_client.get(stayed[0]) == stayed[0].upper()  # still on the source

    finish()

    assert redis_cluster.node_for_key(keys[0]) == (LOOPBACK, target)
    with redis_cluster.client(target) as node:
        assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)
    assert [cluster_client.get(key) for key in keys] == [key.upper() for key in keys]
