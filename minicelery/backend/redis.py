"""The Redis result backend: one record per task, published on a channel of the same name,
so ``get()`` waits for a notification instead of polling."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from importlib import resources
from typing import Any

import redis

from .. import states
from ..broker.redis import FastPath, Keys, translate_errors
from ..exceptions import TimeoutError
from ..serialization import codec_for
from .base import Meta, OnMessage, ResultBackend, encode_meta


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
        self._local = threading.local()

    def key(self, task_id: str) -> str:
        return self.keys("meta", task_id)

    def encode(self, meta: Meta) -> bytes:
        return encode_meta(meta, self.codec)

    def decode(self, data: bytes) -> Meta:
        meta = self.codec.loads(data)
        return meta if isinstance(meta, dict) else {"status": states.FAILURE, "result": meta}

    def store(self, task_id: str, meta: Meta) -> bool:
        args = [self.encode(meta), self.expires, self._success_marker]
        with translate_errors("store result"):
            return bool(self.fast.evalsha(self._store, [self.key(task_id)], args))

    def store_encoded(self, records: list[tuple[str, bytes]]) -> None:
        """Store already-encoded records ``(task_id, data)`` in one round trip, in order
        (what prefork children hand to their main process)."""
        with translate_errors("store results"):
            if len(records) == 1:
                task_id, data = records[0]
                args = [data, self.expires, self._success_marker]
                self.fast.evalsha(self._store, [self.key(task_id)], args)
                return
            pipe = self.client.pipeline(transaction=False)
            for task_id, data in records:
                pipe.evalsha(
                    self._store.sha, 1, self.key(task_id), data, self.expires, self._success_marker
                )
            try:
                pipe.execute()
            except redis.exceptions.NoScriptError:
                self._store.sha = self.client.script_load(self._store.script)
                self.store_encoded(records)

    def get_meta(self, task_id: str) -> Meta:
        with translate_errors("get result"):
            data = self.fast.execute("GET", self.key(task_id))
        return self.decode(data) if data is not None else _pending(task_id)

    def _pubsub(self) -> Any:
        """This thread's pub/sub connection, kept between waits (opening one costs more than
        the whole wait for a quick task)."""
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None or self._local.pid != os.getpid():
            pubsub = self._local.pubsub = self.client.pubsub()
            self._local.pid = os.getpid()
        return pubsub

    def _drop_pubsub(self) -> None:
        pubsub = getattr(self._local, "pubsub", None)
        self._local.pubsub = None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.key(task_id)
        pubsub = self._pubsub()
        try:
            with translate_errors("wait for result"):
                # Subscribe (and see it confirmed), then read once: a result stored before the
                # subscription is seen by the read, one stored after it arrives as a message.
                pubsub.subscribe(key)
                self._next(pubsub, key, "subscribe", deadline, task_id, timeout)
                data = self.fast.execute("GET", key)
                meta = self.decode(data) if data is not None else _pending(task_id)
                while True:
                    if on_message is not None and data is not None:
                        on_message(meta)
                    if meta["status"] in states.READY_STATES:
                        pubsub.unsubscribe(key)  # its confirmation is skipped by the next wait
                        return meta
                    data = self._next(pubsub, key, "message", deadline, task_id, timeout)
                    meta = self.decode(data)
        except BaseException:
            self._drop_pubsub()  # mid-conversation: start the next wait on a clean connection
            raise

    def _next(
        self,
        pubsub: Any,
        key: str,
        kind: str,
        deadline: float | None,
        task_id: str,
        timeout: float | None,
    ) -> Any:
        """The next pub/sub event of ``kind`` on channel ``key``; others are leftovers of
        earlier waits and are skipped."""
        wanted = key.encode()
        while True:
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"The operation timed out ({timeout}s) waiting for task {task_id}"
                )
            message = pubsub.get_message(timeout=min(remaining, 1.0))
            if message and message["type"] == kind and message["channel"] == wanted:
                return message["data"]

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
