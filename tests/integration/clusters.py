"""A real Redis Cluster for the tests: masters and their replicas as ``redis-server`` processes
on loopback ports, joined by ``redis-cli --cluster create``, and the drills run on it (a
master killed and its replica promoted, a hash slot moved with its keys, or left half-moved
so that clients get ASK).

Every node has its own working directory (its log, its ``nodes-<port>.conf``) under the
test's tmp dir. Everything waits by polling; every process is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from tests.helpers import LOOPBACK, wait_until
from tests.integration.clusternodes import (
    SLOTS,
    NodeView,
    Process,
    create_cluster,
    find_binaries,
    node_client,
    node_log,
    parse_nodes,
    start_node,
    stop_processes,
)

MIGRATE_COUNT = 100  # keys per MIGRATE
MIGRATE_TIMEOUT_MS = 5000


class ClusterTopology:
    """``masters`` masters with ``replicas`` replicas each, as one Redis Cluster."""

    def __init__(
        self,
        workdir: Path,
        masters: int = 3,
        replicas: int = 1,
        *,
        binary: str | None = None,
        cli: str | None = None,
    ) -> None:
        """``binary``/``cli``: redis-server and redis-cli, found as the suite finds them
        when not given (see :func:`.clusternodes.find_binaries`, which raises
        ``LookupError`` without them)."""
        if binary is None or cli is None:
            found = find_binaries()
            binary, cli = binary or found[0], cli or found[1]
        self.binary = binary
        self.cli = cli
        self.workdir = workdir
        self.master_count = masters
        self.replica_count = replicas
        self.procs: dict[int, Process] = {}  # port -> its redis-server
        self._lost_slots: dict[int, set[int]] = {}  # killed master's port -> its slots

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Start every node, create the cluster and wait until it is whole and in sync."""
        try:
            for _ in range(self.master_count * (1 + self.replica_count)):
                port, proc = start_node(self.binary, self.workdir)
                self.procs[port] = proc
            create_cluster(self.cli, list(self.procs), self.replica_count)
            wait_until(self._settled, timeout=30, interval=0.05,
                       message=lambda: f"cluster did not settle:\n{self.describe()}")  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node started here, by its PID: SIGTERM all, then SIGKILL stragglers."""
        procs, self.procs = list(self.procs.values()), {}
        stop_processes(procs)

    # ------------------------------------------------------------------ looking

    def client(self, port: int) -> redis.Redis:
        """A plain (not cluster-aware) client of one node; close it when done."""
        return node_client(port)

    def live_ports(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def nodes(self, port: int | None = None) -> list[NodeView]:
        """The cluster as node ``port`` (default: the first live node) sees it now."""
        with self.client(port or self.live_ports()[0]) as node:
            return parse_nodes(str(node.execute_command("CLUSTER", "NODES")))

    def masters(self) -> list[tuple[str, int, int]]:
        """(host, port, pid) of every live master, by first slot, as the cluster sees it."""
        views = sorted((v for v in self.nodes() if v.is_live_master and v.slots),
                       key=lambda v: min(v.slots))  # fmt: skip
        return [(LOOPBACK, view.port, self.procs[view.port].pid) for view in views]

    @property
    def url(self) -> str:
        """``rediscluster://`` with the masters of now."""
        return "rediscluster://" + ",".join(f"{host}:{port}" for host, port, _ in self.masters())

    def owner(self, slot: int, port: int | None = None) -> int:
        """The port of the master that serves ``slot`` (as node ``port`` sees it)."""
        for view in self.nodes(port):
            if slot in view.slots and "master" in view.flags:
                return view.port
        raise LookupError(f"no node serves slot {slot}")

    def node_for_key(self, key: str | bytes) -> tuple[str, int]:
        return LOOPBACK, self.owner(key_slot(key.encode() if isinstance(key, str) else key))

    def info_cpu(self, port: int) -> float:
        """CPU seconds (system + user) that node ``port`` has used since it started."""
        with self.client(port) as node:
            cpu = node.info("cpu")
        return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])

    def log(self, port: int) -> str:
        """The end of node ``port``'s log."""
        return node_log(self.workdir, port)

    def describe(self) -> str:
        """Each live node's CLUSTER NODES, for failure messages."""
        parts = []
        for port in self.live_ports():
            with contextlib.suppress(redis.RedisError), self.client(port) as node:
                parts.append(f"-- {port}:\n{node.execute_command('CLUSTER', 'NODES')}")
        return "\n".join(parts)

    def _node_ok(self, port: int) -> bool:
        with self.client(port) as node:
            info = node.cluster("INFO")
            replication = node.info("replication")
        if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
            return False
        if replication["role"] == "slave":
            return bool(replication["master_link_status"] == "up"
                        and not int(replication["master_sync_in_progress"]))  # fmt: skip
        return True

    def _settled(self, replicated: bool = True) -> bool:
        """Every live node: state ok, every slot served, and (a replica) in sync; all of them
        agreeing on who serves what; and (``replicated``) every master with its replicas."""
        try:
            ports = self.live_ports()
            if not all(self._node_ok(port) for port in ports):
                return False
            views = [self.nodes(port) for port in ports]
        except redis.RedisError:
            return False
        owners = [{v.port: v.ranges for v in view if v.is_live_master} for view in views]
        masters = [v for v in views[0] if v.is_live_master and v.slots]
        replicas = [v for v in views[0] if "slave" in v.flags and not v.flags & {"fail"}]
        if any(owner != owners[0] for owner in owners):
            return False
        if sum(len(v.slots) for v in masters) != SLOTS:
            return False
        return not replicated or all(
            sum(r.master_id == m.node_id for r in replicas) >= self.replica_count for m in masters
        )

    # ------------------------------------------------------------------ drills

    def kill_master_of(self, key: str | bytes) -> int:
        """SIGKILL the master that serves ``key`` (by its PID); returns its port."""
        _, port = self.node_for_key(key)
        slots = self._slots_before_kill(port)
        proc = self.procs[port]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self._lost_slots[port] = slots
        return port

    def _slots_before_kill(self, port: int) -> set[int]:
        for view in self.nodes():
            if view.port == port:
                return view.slots
        return set()

    def wait_failover(self, old_port: int, timeout: float = 20.0) -> int:
        """Wait until a replica serves the slots of the killed master on ``old_port`` and the
        cluster is ok again everywhere; returns the promoted replica's port."""
        if not self._lost_slots.get(old_port):
            raise LookupError(f"no master on {old_port} was killed by kill_master_of()")
        slot = min(self._lost_slots[old_port])

        def promoted() -> int:  # 0: not yet
            try:
                if not self._settled(replicated=False):
                    return 0
                port = self.owner(slot)
            except (redis.RedisError, LookupError):
                return 0
            return port if port != old_port else 0

        return wait_until(
            promoted,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"no failover of {old_port}:\n{self.describe()}",
        )

    def migrate_slot(
        self, slot: int, target_port: int, stop_midway: bool = False
    ) -> Callable[[], None]:
        """Move ``slot`` with its keys to the master on ``target_port``. With
        ``stop_midway`` about half the keys move and the slot stays MIGRATING/IMPORTING (a
        client asking for a moved key gets ASK); call the returned function to finish.
        Without, the move is complete on return (the function then does nothing)."""
        source_port = self.owner(slot)
        ids = {view.port: view.node_id for view in self.nodes()}
        with self.client(target_port) as target:
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source_port])
        with self.client(source_port) as source:
            source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target_port])
            total = int(source.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
        self._move_keys(slot, source_port, target_port, total // 2 if stop_midway else None)
        finished: list[bool] = []

        def finish() -> None:
            if finished:
                return
            finished.append(True)
            self._move_keys(slot, source_port, target_port, None)
            self._assign(slot, ids[target_port], [target_port, source_port])
            wait_until(lambda: self._agree(slot, target_port), timeout=10, interval=0.05,
                       message=lambda: f"slot {slot} not moved:\n{self.describe()}")  # fmt: skip

        if not stop_midway:
            finish()
        return finish

    def _move_keys(self, slot: int, source_port: int, target_port: int, limit: int | None) -> None:
        """MIGRATE the slot's keys, COUNT at a time, until ``limit`` moved (None: all)."""
        moved = 0
        with self.client(source_port) as source:
            while limit is None or moved < limit:
                count = MIGRATE_COUNT if limit is None else min(MIGRATE_COUNT, limit - moved)
                keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, count)
                if not keys:
                    return
                source.execute_command("MIGRATE", LOOPBACK, target_port, "", 0,
                                       MIGRATE_TIMEOUT_MS, "KEYS", *keys)  # fmt: skip
                moved += len(keys)

    def _assign(self, slot: int, target_id: str, first: list[int]) -> None:
        """CLUSTER SETSLOT NODE on every live master: the target and the source first."""
        masters = [port for _, port, _ in self.masters()]
        for port in first + [port for port in masters if port not in first]:
            with self.client(port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def _agree(self, slot: int, target_port: int) -> bool:
        try:
            return all(self.owner(slot, port) == target_port for port in self.live_ports())
        except (redis.RedisError, LookupError):
            return False


@contextlib.contextmanager
def cluster_topology(
    workdir: Path, masters: int = 3, replicas: int = 1
) -> Iterator[ClusterTopology]:
    """A started cluster, stopped on the way out. Skips the test without the binaries."""
    try:
        found = find_binaries()
    except LookupError as exc:
        pytest.skip(f"no Redis Cluster: {exc}")
    topology = ClusterTopology(workdir, masters, replicas, binary=found[0], cli=found[1])
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[ClusterTopology]:
    """Three masters with one replica each, of the test's own (drills change it)."""
    with cluster_topology(tmp_path) as topology:
        yield topology
