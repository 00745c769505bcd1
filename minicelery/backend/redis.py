"""The Redis result backend: one record per task, published on a channel of the same name,
so ``get()`` waits for a notification instead of polling."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from .. import states
from ..broker.redis import FastPath, Keys, translate_errors
from ..exceptions import TimeoutError
from ..serialization import codec_for
from .base import Meta, OnMessage, ResultBackend, encode_meta

NOTIFY_SECONDS = 60  # how long a task's notification list outlives its last record


def _pending(task_id: str) -> Meta:
    return {
        "status": states.PENDING,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": task_id,
    }


class RedisBackend(ResultBackend):
    """Results in Redis under ``{prefix}:meta:<task id>``, kept ``expires`` seconds."""

    def __init__(
        self,
        client: Any,
        prefix: str = "minicelery",
        serializer: str = "json",
        expires: float | None = 86400,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.codec = codec_for(serializer)
        self.expires = expires or 0
        # The bytes of '"status": "SUCCESS"' after a record's opening ('{' in json, a map
        # header in msgpack); records always put status first.
        marker = self.codec.dumps({"status": states.SUCCESS})[1:]
        self._success_marker = marker[:-1] if self.codec.name == "json" else marker
        script = (
            resources.files("minicelery.backend").joinpath("scripts/store_result.lua").read_text()
        )
        self._store = client.register_script(script)
        self.fast = FastPath(client)

    def key(self, task_id: str) -> str:
        return self.keys("meta", task_id)

    def notify_key(self, task_id: str) -> str:
        return self.keys("notify", task_id)

    def encode(self, meta: Meta) -> bytes:
        return encode_meta(meta, self.codec)

    def decode(self, data: bytes) -> Meta:
        meta = self.codec.loads(data)
        return meta if isinstance(meta, dict) else {"status": states.FAILURE, "result": meta}

    def store(self, task_id: str, meta: Meta) -> bool:
        keys, args = self._store_call(task_id, self.encode(meta))
        with translate_errors("store result"):
            return bool(self.fast.evalsha(self._store, keys, args))

    def _store_call(self, task_id: str, data: bytes) -> tuple[list[str], list[Any]]:
        keys = [self.key(task_id), self.notify_key(task_id)]
        return keys, [data, self.expires, self._success_marker, NOTIFY_SECONDS]

    def store_commands(self, records: list[tuple[str, bytes]]) -> list[tuple[tuple[Any, ...], Any]]:
        """The stores of encoded records as commands for a broker ``Lane`` (same Redis)."""
        commands = []
        for task_id, data in records:
            keys, args = self._store_call(task_id, data)
            commands.append((("EVALSHA", self._store.sha, len(keys), *keys, *args), self._store))
        return commands

    def store_encoded(self, records: list[tuple[str, bytes]]) -> None:
        """Store already-encoded records ``(task_id, data)`` in one round trip, in order
        (what prefork children hand to their main process)."""
        with translate_errors("store results"):
            if len(records) == 1:
                keys, args = self._store_call(*records[0])
                self.fast.evalsha(self._store, keys, args)
            else:
                self.fast.evalsha_many(self._store, [self._store_call(*r) for r in records])

    def get_meta(self, task_id: str) -> Meta:
        with translate_errors("get result"):
            data = self.fast.execute("GET", self.key(task_id))
        return self.decode(data) if data is not None else _pending(task_id)

    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        """Read the record, then block (BLPOP, not polling) on the task's notification list
        until a ready state arrives. Blocking is done in slices of at most a second, each
        followed by a read of the record, so even a notification that expired unseen (a
        waiter stalled for a minute) cannot make it wait forever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key, notify = self.key(task_id), self.notify_key(task_id)
        with translate_errors("wait for result"):
            data = self.fast.execute("GET", key)
            while True:
                meta = self.decode(data) if data is not None else _pending(task_id)
                if on_message is not None and data is not None:
                    on_message(meta)
                if meta["status"] in states.READY_STATES:
                    return meta
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"The operation timed out ({timeout}s) waiting for task {task_id}"
                    )
                data = self._next_record(key, notify, min(remaining, 1.0), data)

    def _next_record(self, key: str, notify: str, seconds: float, last: bytes | None) -> Any:
        popped = self.fast.execute("BLPOP", notify, max(seconds, 0.01))
        if popped is None:
            return self.fast.execute("GET", key)
        record = popped[1]
        if self.decode(record)["status"] in states.READY_STATES:
            # Hand the final record on to any other client waiting for the same task.
            self.fast.execute("RPUSH", notify, record)
        return record

    def forget(self, task_id: str) -> None:
        with translate_errors("forget result"):
            self.client.delete(self.key(task_id), self.notify_key(task_id))

    def save_group(self, group_id: str, value: Any) -> None:
        with translate_errors("save group"):
            if self.expires:
                self.client.set(
                    self.keys("group", group_id),
                    self.codec.dumps(value),
                    px=int(self.expires * 1000),
                )
            else:
                self.client.set(self.keys("group", group_id), self.codec.dumps(value))

    def restore_group(self, group_id: str) -> Any:
        with translate_errors("restore group"):
            data = self.client.get(self.keys("group", group_id))
        return None if data is None else self.codec.loads(data)

    def delete_group(self, group_id: str) -> None:
        with translate_errors("delete group"):
            self.client.delete(self.keys("group", group_id))

    def close(self) -> None:
        self.client.close()
