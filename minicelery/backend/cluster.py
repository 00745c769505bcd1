"""The Redis result backend on Redis Cluster: a task's record, stream and waiting flag share
its hash tag, a chord's parts and claim their group's, so every script stays in one slot.
Only what names several tasks at once is split: results are stored one script per task
(in one write per shard), and read with one GET
each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..exceptions import OperationalError
from ..redislayer.clusterwire import store_in_order
from ..redislayer.errors import translate_errors
from .base import Meta
from .redis import NOTIFY_SECONDS, RedisBackend


class ClusterBackend(RedisBackend):
    """:class:`RedisBackend` over a redis-py ``RedisCluster`` client."""

    def store_commands(
        self, records: list[tuple[str, bytes]], ack: tuple[str, Sequence[str]] = ("", ())
    ) -> list[tuple[tuple[Any, ...], Any]]:
        """One store per record (each in its task's slot); no acknowledgement rides with
        them: on a cluster the broker acknowledges after they are stored."""
        if ack[1]:
            raise OperationalError("on Redis Cluster results and acks go separately")
        commands: list[tuple[tuple[Any, ...], Any]] = []
        for record in records:
            if self._succeeded(record[1]):
                commands += [(command, None) for command in self._success_commands(*record)]
                continue
            keys, args = self._store_call([record])
            commands.append((("EVALSHA", self._store.sha, len(keys), *keys, *args), self._store))
        return commands

    def _succeeded(self, data: bytes) -> bool:
        """Whether an encoded record is a SUCCESS (its status comes first)."""
        at = data.find(self._success_marker, 0, len(self._success_marker) + 6)
        return 0 <= at <= 5

    def _success_commands(self, task_id: str, data: bytes) -> list[tuple[Any, ...]]:
        """A SUCCESS stored with plain commands: a script call costs a shard several times
        what these do, and one record's script is all a cluster allows (its keys are in one
        slot). The record is appended to its stream only if the stream exists
        (``NOMKSTREAM``): a waiter makes it (``wait_result.lua``). Unlike the script it may
        replace a SUCCESS already there: with a SUCCESS (a task run again)."""
        key, stream = self.key(task_id), self.notify_key(task_id)
        expiry = ("PX", int(self.expires * 1000)) if self.expires else ()
        return [
            ("SET", key, data, *expiry),
            ("XADD", stream, "NOMKSTREAM", "MAXLEN", "~", "100", "*", "r", data),
            ("EXPIRE", stream, NOTIFY_SECONDS),
        ]

    def store_encoded(self, records: list[tuple[str, bytes]]) -> None:
        commands = self.store_commands(records)
        if commands:
            with translate_errors("store results"):
                store_in_order(self.fast, commands)

    def get_many(self, task_ids: list[str]) -> list[Meta]:
        with translate_errors("get results"):
            pipe = self.client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.get(self.key(task_id))
            values = pipe.execute() if task_ids else []
        return [self._meta_of(t, v) for t, v in zip(task_ids, values, strict=True)]
