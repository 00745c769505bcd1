"""The Redis result backend: one record per task, published on a channel of the same name,
so ``get()`` waits for a notification instead of polling."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from .. import states
from ..broker.redis import Keys, translate_errors
from ..exceptions import TimeoutError
from ..serialization import codec_for
from .base import Meta, OnMessage, ResultBackend


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
        # The bytes of '"status": "SUCCESS"' after a record's one-byte opening ('{' in json, a
        # fixmap header in msgpack); records always put status first.
        marker = self.codec.dumps({"status": states.SUCCESS})[1:]
        self._success_marker = marker[:-1] if self.codec.name == "json" else marker
        script = (
            resources.files("minicelery.backend").joinpath("scripts/store_result.lua").read_text()
        )
        self._store = client.register_script(script)

    def key(self, task_id: str) -> str:
        return self.keys("meta", task_id)

    def encode(self, meta: Meta) -> bytes:
        if next(iter(meta), None) != "status":
            meta = {"status": meta["status"], **meta}
        return self.codec.dumps(meta)

    def decode(self, data: bytes) -> Meta:
        meta = self.codec.loads(data)
        return meta if isinstance(meta, dict) else {"status": states.FAILURE, "result": meta}

    def store(self, task_id: str, meta: Meta) -> bool:
        args = [self.encode(meta), self.expires, self._success_marker]
        with translate_errors("store result"):
            return bool(self._store(keys=[self.key(task_id)], args=args))

    def get_meta(self, task_id: str) -> Meta:
        with translate_errors("get result"):
            data = self.client.get(self.key(task_id))
        return self.decode(data) if data is not None else _pending(task_id)

    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.key(task_id)
        with translate_errors("wait for result"):
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                # Subscribe first, then read once: a result stored between the two is seen by
                # the read, one stored after it arrives as a message.
                pubsub.subscribe(key)
                data = self.client.get(key)
                meta = self.decode(data) if data is not None else _pending(task_id)
                while True:
                    if on_message is not None and data is not None:
                        on_message(meta)
                    if meta["status"] in states.READY_STATES:
                        return meta
                    data = self._next_message(pubsub, deadline, task_id, timeout)
                    meta = self.decode(data)
            finally:
                pubsub.close()

    def _next_message(
        self, pubsub: Any, deadline: float | None, task_id: str, timeout: float | None
    ) -> bytes:
        while True:
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"The operation timed out ({timeout}s) waiting for task {task_id}"
                )
            message = pubsub.get_message(timeout=min(remaining, 1.0))
            if message is not None and message.get("type") == "message":
                return message["data"]  # type: ignore[no-any-return]

    def forget(self, task_id: str) -> None:
        with translate_errors("forget result"):
            self.client.delete(self.key(task_id))

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
