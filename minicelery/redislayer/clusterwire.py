"""The hot path's wire on Redis Cluster (:class:`ClusterWire`): the interface of
:class:`.wire.FastPath`, each command packed by hand on a connection this thread keeps to
the master of its key's slot, and sent again through redis-py when the cluster says the
slot is elsewhere (redis-py follows, and learns the new map)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from . import errors, replicas
from .cluster import get_connection_of, node_client
from .wire import Held, connected, current_pid, pack_commands, read_replies

#: Seconds a command whose slot is moving or failing over is tried again before its error
#: is raised (a failover takes the cluster's node timeout and an election: a few seconds).
SETTLE_SECONDS = 5.0
#: Milliseconds a shard's replica is waited for before the acks of results stored there.
REPLICATED_MS = 200
WAIT_ONE = ("WAIT", 1, REPLICATED_MS)


def command_key(command: Sequence[Any]) -> Any:
    """The key that decides where ``command`` goes (None: none, or one we do not know)."""
    name = command[0].decode() if isinstance(command[0], bytes) else str(command[0])
    name = name.upper()
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) > 0 else None
    if name == "XREAD":
        at = [str(part).upper() for part in command].index("STREAMS")
        return command[at + 1]
    if name in KEYLESS or len(command) < 2:
        return None
    return command[1]


KEYLESS = frozenset(("PING", "INFO", "TIME", "SCRIPT", "CLUSTER", "CLIENT", "CONFIG", "WAIT"))


class ClusterWire:
    """:class:`.wire.FastPath`'s interface on a cluster. A command goes, packed by hand, on
    a connection this thread keeps to the master of its key's slot (as redis-py's slot map
    says), in one write per shard for a pipeline. A reply that says the slot is elsewhere
    (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or a lost connection sends that command again
    through redis-py, which follows the cluster and learns its new map."""

    def __init__(self, client: Any) -> None:
        errors.adopt_redis_py()
        self.client = client
        self._local = threading.local()
        from redis import exceptions

        self._unsettled = (exceptions.TryAgainError, exceptions.ClusterDownError)
        self._redirects: tuple[type[Exception], ...] = (
            exceptions.MovedError, exceptions.AskError, *self._unsettled
        )  # fmt: skip

    def _connection(self, node: Any) -> Any:
        held: dict[str, Held] | None = getattr(self._local, "held", None)
        if held is None or getattr(self._local, "pid", 0) != current_pid():
            held = self._local.held = {}
            self._local.pid = current_pid()
        one = held.get(node.name)
        if one is None:
            pool = self.client.get_redis_connection(node).connection_pool
            one = held[node.name] = Held(pool, get_connection_of(pool))
        return one.connection

    def _send(
        self, node: Any, commands: Sequence[Sequence[Any]],
        abandon_on: tuple[type[Exception], ...] = (),
    ) -> list[Any]:  # fmt: skip
        return self._read(node, self._write(node, commands), commands, abandon_on)

    def _write(self, node: Any, commands: Sequence[Sequence[Any]]) -> Any:
        connection = self._connection(node)
        try:
            connected(connection).send_packed_command([pack_commands(commands)])
        except errors.REDIS_ERRORS:
            self._drop(node, connection)
            raise
        return connection

    def _read(
        self, node: Any, connection: Any, commands: Sequence[Sequence[Any]],
        abandon_on: tuple[type[Exception], ...] = (),
    ) -> list[Any]:  # fmt: skip
        try:
            got = read_replies(connection, len(commands), 0.0, abandon_on)
        except errors.REDIS_ERRORS:
            self._drop(node, connection)
            raise
        want = replicas.wanted(self.client)  # ``wait_for_replicas``: WAIT on that shard
        if want is not None and replicas.writes(commands):
            replicas.await_replicas(connection, want)
        return got

    def _drop(self, node: Any, connection: Any) -> None:
        connection.disconnect()
        self._local.held.pop(node.name, None)

    def _through_client(self, command: Sequence[Any]) -> Any:
        """``command`` through redis-py; while its slot is half-moved (TRYAGAIN) or has no
        master (CLUSTERDOWN), which redis-py gives up on within a few milliseconds, tried
        again for up to :data:`SETTLE_SECONDS`: the command did not run."""
        pause, deadline = 0.02, time.monotonic() + SETTLE_SECONDS
        while True:
            try:
                return self.client.execute_command(*command)
            except self._unsettled:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
            except errors.REDIS_ERRORS:
                raise
            except errors.ResponseError as exc:
                return exc

    def execute(
        self, *args: Any, retry: bool = True, packed: bytes | None = None, spin: float = 0.0
    ) -> Any:
        reply = self._run(args, retry)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _run(self, command: Sequence[Any], retry: bool) -> Any:
        key = command_key(command)
        if key is None:
            return self._through_client(command)
        try:
            (reply,) = self._send(self.client.get_node_from_key(key), (command,))
        except errors.REDIS_ERRORS:
            if not retry:  # it may have run: the caller decides
                raise
            return self._through_client(command)
        if isinstance(reply, self._redirects):  # it did not run: redis-py follows the map
            return self._through_client(command)
        return reply

    def pipeline(
        self, commands: Sequence[Sequence[Any]], packed: bytes | None = None,
        abandon_on: tuple[type[Exception], ...] = (), spin: float = 0.0, in_order: bool = False,
        retry: bool = True,
    ) -> list[Any]:  # fmt: skip
        """Replies in order, error replies in place; one write per shard, all of them sent
        before any reply is read. ``in_order``: commands in their order, each run of them
        for one shard written once the run before it is confirmed (records whose order a
        reader may see: a chain's failed link before the links after it). A lost
        connection sends that shard's part again through redis-py, or with ``retry=False``
        (a reserve, which must not run twice) is raised."""
        replies: list[Any] = [None] * len(commands)
        groups = self._by_shard(commands, replies)
        if in_order:
            for node, indexes in _runs(groups):
                sent = self._try_write(node, [commands[i] for i in indexes], retry)
                self._finish(node, indexes, sent, commands, replies, abandon_on, retry)
            return replies
        written: list[tuple[Any, list[int], Any]] = []
        try:
            for node, indexes in groups:
                sent = self._try_write(node, [commands[i] for i in indexes], retry)
                written.append((node, indexes, sent))
            for node, indexes, sent in written:
                self._finish(node, indexes, sent, commands, replies, abandon_on, retry)
        except errors.REDIS_ERRORS:
            for node, _, sent in written:  # replies left unread: never reused
                if sent is not None:
                    self._drop(node, sent)
            raise
        return replies

    def _by_shard(
        self, commands: Sequence[Sequence[Any]], replies: list[Any]
    ) -> list[tuple[Any, list[int]]]:
        """The indexes of ``commands`` by shard, in the order of each shard's first one;
        a command without a key goes through redis-py at once (its reply put in place)."""
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, command in enumerate(commands):
            key = command_key(command)
            if key is None:
                replies[index] = self._through_client(command)
                continue
            node = self.client.get_node_from_key(key)
            by_node.setdefault(node.name, (node, []))[1].append(index)
        return list(by_node.values())

    def _try_write(self, node: Any, batch: Sequence[Sequence[Any]], retry: bool = True) -> Any:
        try:
            return self._write(node, batch)
        except errors.REDIS_ERRORS:
            if not retry:
                raise
            return None  # sent through redis-py by _finish

    def _finish(
        self, node: Any, indexes: list[int], connection: Any,
        commands: Sequence[Sequence[Any]], replies: list[Any],
        abandon_on: tuple[type[Exception], ...], retry: bool = True,
    ) -> None:  # fmt: skip
        batch = [commands[i] for i in indexes]
        try:
            if connection is None:
                raise errors.ConnectionLost("not sent")
            got = self._read(node, connection, batch, abandon_on if indexes[0] == 0 else ())
        except errors.REDIS_ERRORS:
            if not retry:
                raise
            got = [self._through_client(command) for command in batch]
        for index, reply in zip(indexes, got, strict=True):
            redirected = isinstance(reply, self._redirects)
            replies[index] = self._through_client(commands[index]) if redirected else reply

    def replicated(self, commands: Sequence[Sequence[Any]]) -> None:
        """Wait until the shards that ran ``commands`` (writes sent on this thread's
        connections) have passed them to a replica, where the slot map lists one: a
        result must outlive its master's failover before its message is acknowledged on
        another shard. At most :data:`REPLICATED_MS` per shard (then a warning: the writes
        stand). Nothing to do when every write waits already (``wait_for_replicas``)."""
        if replicas.wanted(self.client) is not None:
            return
        nodes: dict[str, Any] = {}
        slots = self.client.nodes_manager.slots_cache
        for command in commands:
            key = command_key(command)
            holders = slots.get(self.client.keyslot(key)) if key is not None else None
            if holders and len(holders) > 1:
                nodes[holders[0].name] = holders[0]
        held = getattr(self._local, "held", {})
        sent = []
        for name, node in nodes.items():
            if name not in held:
                continue
            try:
                held[name].connection.send_packed_command([pack_commands([WAIT_ONE])])
            except errors.REDIS_ERRORS as exc:
                self._drop(node, held[name].connection)
                replicas.warn(f"could not wait for a replica of {node.name}: {exc}")
                continue
            sent.append((node, held[name].connection))
        for node, connection in sent:
            try:
                if int(connection.read_response()) < 1:
                    replicas.warn(f"a replica of {node.name} did not confirm results in time")
            except errors.REDIS_ERRORS as exc:
                self._drop(node, connection)
                replicas.warn(f"could not wait for a replica of {node.name}: {exc}")

    def evalsha(
        self,
        script: Any,
        keys: Sequence[Any],
        args: Sequence[Any],
        retry: bool = True,
        same_keys: bool = False,
        spin: float = 0.0,
    ) -> Any:
        """Run a script by its SHA, loading it on the shard that does not know it."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        reply = self._run(command, retry)
        if isinstance(reply, errors.NoScriptError):
            if keys:
                node_client(self.client, keys[0]).script_load(script.script)
            else:
                self.client.script_load(script.script)
            reply = self._run(command, retry)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def send_ahead(self, packed: bytes) -> None:  # pragma: no cover - never on a cluster
        raise NotImplementedError("a cluster has no single connection to send ahead on")

    def exchange(self, packed: bytes, replies: int) -> list[Any]:  # pragma: no cover
        raise NotImplementedError("a cluster has no single connection to exchange on")


def _runs(groups: list[tuple[Any, list[int]]]) -> list[tuple[Any, list[int]]]:
    """The commands of ``groups`` (shard, indexes) in their order, as runs of consecutive
    commands for one shard."""
    shard_of = {index: node for node, indexes in groups for index in indexes}
    runs: list[tuple[Any, list[int]]] = []
    for index in sorted(shard_of):
        node = shard_of[index]
        if runs and runs[-1][0].name == node.name:
            runs[-1][1].append(index)
        else:
            runs.append((node, [index]))
    return runs


def store_in_order(wire: Any, commands: Sequence[tuple[tuple[Any, ...], Any]]) -> None:
    """Result stores ``(command, script or None)`` on a cluster: in their order, a script a
    shard forgot run again, then each shard's writes on a replica (``replicated``, where
    ``wire`` has it) before anything acknowledges them. An error reply is raised."""
    from .scripts import run_again

    stores = [command for command, _ in commands]
    for (command, script), reply in zip(commands, wire.pipeline(stores, in_order=True),
                                        strict=True):  # fmt: skip
        if isinstance(reply, Exception):
            if script is None:
                raise reply
            run_again(wire, command, script)
    replicated = getattr(wire, "replicated", None)
    if replicated is not None:
        replicated(stores)
