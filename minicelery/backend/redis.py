"""The Redis result backend: one record per task, each change also appended to the task's
short-lived stream, so ``get()`` waits on the stream instead of polling. A task's record and
stream share its hash tag; a chord's parts and claim share their group's."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from .. import states
from ..exceptions import TimeoutError
from ..redislayer import errors
from ..redislayer.errors import translate_errors
from ..redislayer.keys import KeySchema
from ..redislayer.scripts import register
from ..redislayer.wire import fast_path
from ..serialization import codec_for
from .base import Meta, OnMessage, ResultBackend, encode_meta

NOTIFY_SECONDS = 60  # how long a task's record stream outlives its last record
WAITING_MS = 10_000  # a waiter's flag lives this long, renewed with every blocking read
#: Seconds ``get()`` looks for a result without sleeping before it sleeps on the socket
#: (the CPU given up at each look): a short task's result comes sooner than a sleeping
#: process would be woken for it. After three results in a row that came later, the next
#: hundred are waited for asleep (:class:`~minicelery.redislayer.respwait.Lookout`).
RESULT_SPIN = 0.001


#: The id of the entry that holds no record, with which ``wait_result.lua`` makes a stream
#: before its task's first record: a waiter's first read starts after it.
STREAM_START = b"0-1"
_RECORD_FIELDS = (b"r", "r")  # a record's field name, as bytes or as text (decode_responses)


def _stream_entries(reply: Any) -> Iterator[tuple[Any, bytes]]:
    """``(entry id, record)`` from an XREAD reply (a map under RESP3, a list under RESP2)."""
    streams = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply)
    for entries in streams:
        for entry_id, fields in entries:
            if isinstance(fields, dict):  # parsed by redis-py (a cluster's replies are)
                record = fields.get(b"r", fields.get("r"))
                if record is not None:
                    yield entry_id, record
            elif fields[0] in _RECORD_FIELDS:
                yield entry_id, fields[1]


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
    """Results in Redis (``KeySchema.result``), kept ``expires`` seconds."""

    compression: str | None = None  # results are stored uncompressed (Celery's attribute)

    def __init__(
        self,
        client: Any,
        prefix: str = "minicelery",
        serializer: str = "json",
        expires: float | None = 86400,
        failure_expires: float | None = None,
    ) -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self.codec = codec_for(serializer)
        self.expires = expires or 0
        # ``result_failure_expires``: FAILURE records kept longer or shorter (0: for ever).
        self.failure_expires = self.expires if failure_expires is None else failure_expires
        self._success_marker = self._status_marker(states.SUCCESS)
        self._failure_marker = self._status_marker(states.FAILURE)
        self._store = register(client, "minicelery.backend", "store_results")
        self._chord_part = register(client, "minicelery.backend", "chord_part")
        self._wait = register(client, "minicelery.backend", "wait_result")
        self._wait_known = False  # whether Redis has the wait script (else it goes whole)
        self.fast = fast_path(client)

    def _status_marker(self, state: str) -> bytes:
        """The bytes of '"status": "<state>"' after a record's opening ('{' in json, a map
        header in msgpack); records always put status first."""
        marker = self.codec.dumps({"status": state})[1:]
        return marker[:-1] if self.codec.name == "json" else marker

    def key(self, task_id: str) -> str:
        return self.keys.result(task_id)

    get_key_for_task = key  # Celery's name

    def notify_key(self, task_id: str) -> str:
        return self.keys.result_stream(task_id)

    def encode(self, meta: Meta) -> bytes:
        return encode_meta(meta, self.codec)

    def _loads(self, data: bytes | str) -> Any:
        # A client made with decode_responses=true (a URL option) hands back text.
        return self.codec.loads(data.encode() if isinstance(data, str) else data)

    def decode(self, data: bytes | str) -> Meta:
        meta = self._loads(data)
        return meta if isinstance(meta, dict) else {"status": states.FAILURE, "result": meta}

    def store(self, task_id: str, meta: Meta) -> bool:
        keys, args = self._store_call([(task_id, self.encode(meta))])
        with translate_errors("store result"):
            return bool(self.fast.evalsha(self._store, keys, args))

    def _store_call(
        self, records: list[tuple[str, bytes]], ack: tuple[str, Sequence[str]] = ("", ())
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of ``store_results.lua`` for encoded ``records`` and the
        acknowledgement ``(hold key, tags)`` that follows them."""
        hold, tags = ack
        keys: list[str] = []
        for task_id, _ in records:
            keys += (self.key(task_id), self.notify_key(task_id), self.keys.result_waiting(task_id))
        if tags:
            keys.append(hold)
        args = [self.expires, self._success_marker, NOTIFY_SECONDS, len(tags),
                self.failure_expires, self._failure_marker]  # fmt: skip
        return keys, [*args, *(data for _, data in records), *tags]

    def store_commands(
        self, records: list[tuple[str, bytes]], ack: tuple[str, Sequence[str]] = ("", ())
    ) -> list[tuple[tuple[Any, ...], Any]]:
        """The stores of encoded records, then the acknowledgement ``(hold key, tags)`` of
        the messages they finish, as one command for a broker ``Lane`` (same Redis)."""
        if not records and not ack[1]:
            return []
        keys, args = self._store_call(records, ack)
        return [(("EVALSHA", self._store.sha, len(keys), *keys, *args), self._store)]

    def store_encoded(self, records: list[tuple[str, bytes]]) -> None:
        """Store already-encoded records ``(task_id, data)`` in one call, in order (what
        prefork children hand to their main process)."""
        keys, args = self._store_call(records)
        with translate_errors("store results"):
            self.fast.evalsha(self._store, keys, args)

    def get_meta(self, task_id: str) -> Meta:
        with translate_errors("get result"):
            data = self.fast.execute("GET", self.key(task_id))
        return self.decode(data) if data is not None else _pending(task_id)

    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        for meta, stored in self.iter_meta(task_id, timeout):
            if on_message is not None and stored:
                on_message(meta)
            if meta["status"] in states.READY_STATES:
                return meta
        raise AssertionError("iter_meta ends only with a ready state")  # pragma: no cover

    def iter_meta(self, task_id: str, timeout: float | None) -> Iterator[tuple[Meta, bool]]:
        """The current record, then each newer one as the worker writes it, until a ready
        one: ``(meta, stored)``, ``stored`` False for the implicit PENDING of no record.

        Each round trip flags the task as waited on and brings its stream up to date with
        ``wait_result.lua``, then reads the stream with XREAD BLOCK behind it: a record
        already stored comes back at once, a later one as soon as it is written (no polling;
        every waiter sees every record, never an older one after a newer). Blocking is done
        in slices of at most a second, each of which renews the flag and re-checks the
        record, so a stream that expired unseen cannot make it wait forever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = self.notify_key(task_id)
        keys = (self.key(task_id), stream, self.keys.result_waiting(task_id))
        last_id: Any = STREAM_START
        meta: Meta | None = None
        with translate_errors("wait for result"):
            while True:
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0 and meta is not None:
                    raise TimeoutError(
                        f"The operation timed out ({timeout}s) waiting for task {task_id}"
                    )
                block_ms = int(min(remaining, 1.0) * 1000)
                entries = list(_stream_entries(self._wait_round(keys, block_ms, last_id) or ()))
                if meta is None:  # the first read: from the current record on
                    entries = entries[-1:]
                    if not entries:
                        meta = _pending(task_id)
                        yield meta, False
                for entry_id, record in entries:
                    last_id = entry_id  # the next read starts after it
                    meta = self.decode(record)
                    yield meta, True
                    if meta["status"] in states.READY_STATES:
                        return

    def _wait_round(self, keys: tuple[str, str, str], block_ms: int, last_id: Any) -> Any:
        """One round trip of :meth:`iter_meta`: the wait script, then the stream's entries
        after ``last_id`` (waiting up to ``block_ms``; none: do not wait). The script goes
        whole (EVAL) until Redis is known to have it; a NOSCRIPT (Redis restarted) drops
        the connection at once, the blocking read behind it unread, and goes again."""
        read = ("XREAD", *(("BLOCK", block_ms) if block_ms > 0 else ()), "STREAMS", keys[1],
                last_id)  # fmt: skip
        for _ in range(2):
            script = self._wait
            call = ("EVALSHA", script.sha) if self._wait_known else ("EVAL", script.script)
            flag = (*call, 3, *keys, WAITING_MS, NOTIFY_SECONDS)
            try:
                flagged, reply = self.fast.pipeline([flag, read], spin=RESULT_SPIN,
                                                    abandon_on=errors.NoScriptError)  # fmt: skip
            except errors.NoScriptError:
                self._wait_known = False
                continue
            # In place after a reconnect (the pipeline went again through the client).
            self._wait_known = not isinstance(flagged, errors.NoScriptError)
            if not self._wait_known:
                continue
            for outcome in (flagged, reply):
                if isinstance(outcome, Exception):
                    raise outcome
            return reply
        return None  # pragma: no cover - EVAL never answers NOSCRIPT

    def _meta_of(self, task_id: str, data: Any) -> Meta:
        return self.decode(data) if data is not None else _pending(task_id)

    def forget(self, task_id: str) -> None:
        with translate_errors("forget result"):
            self.client.delete(
                self.key(task_id), self.notify_key(task_id), self.keys.result_waiting(task_id)
            )

    def save_group(self, group_id: str, value: Any) -> None:
        with translate_errors("save group"):
            if self.expires:
                self.client.set(
                    self.keys.group(group_id), self.codec.dumps(value), px=int(self.expires * 1000)
                )
            else:
                self.client.set(self.keys.group(group_id), self.codec.dumps(value))

    def restore_group(self, group_id: str) -> Any:
        with translate_errors("restore group"):
            data = self.client.get(self.keys.group(group_id))
        return None if data is None else self._loads(data)

    def delete_group(self, group_id: str) -> None:
        with translate_errors("delete group"):
            self.client.delete(self.keys.group(group_id))

    def get_many(self, task_ids: list[str]) -> list[Meta]:
        """One MGET per thousand ids."""
        metas: list[Meta] = []
        with translate_errors("get results"):
            for start in range(0, len(task_ids), 1000):
                batch = task_ids[start : start + 1000]
                values = self.fast.execute("MGET", *(self.key(task_id) for task_id in batch))
                metas.extend(self._meta_of(t, v) for t, v in zip(batch, values, strict=True))
        return metas

    def chord_part_return(
        self, group_id: str, index: int, size: int, part: Any, task_id: str = ""
    ) -> Any:
        keys = [
            self.keys.chord_parts(group_id),
            self.keys.chord_claim(group_id),
            self.keys.chord_added(group_id),
        ]
        args = [index, self.codec.dumps(part), size, self.expires, task_id]
        with translate_errors("count chord part"):
            parts = self.fast.evalsha(self._chord_part, keys, args)
        if not parts:
            return None
        return [None if data is None else self._loads(data) for data in parts]

    def chord_settle(self, group_id: str) -> None:
        with translate_errors("settle chord"):
            self.fast.execute(
                "DEL", self.keys.chord_parts(group_id), self.keys.chord_added(group_id)
            )

    def add_to_chord(self, group_id: str) -> int:
        key = self.keys.chord_added(group_id)
        with translate_errors("add to chord"), self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            if self.expires:
                pipe.expire(key, int(self.expires))
            added = pipe.execute()[0]
        return int(added)

    def chord_reset(self, group_id: str) -> None:
        keys = (
            self.keys.chord_parts(group_id),
            self.keys.chord_claim(group_id),
            self.keys.chord_added(group_id),
        )
        with translate_errors("reset chord"):
            self.fast.execute("DEL", *keys)

    def close(self) -> None:
        self.client.close()
