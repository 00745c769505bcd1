"""What an event is: a flat dict with Celery's fields (``type``, ``timestamp``, ``hostname``,
``utcoffset``, ``pid``, ``clock`` and the event's own), how batches of events are encoded
(msgpack: a few times cheaper than JSON), and the logical clock that orders events across
processes."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from ..exceptions import MessageError

# Celery's event types, by group ("task", "worker"); custom types are allowed too.
TASK_EVENTS = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-rejected",
    "task-revoked",
    "task-retried",
)
WORKER_EVENTS = ("worker-online", "worker-heartbeat", "worker-offline")


def Event(type: str, _fields: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An event as Celery builds one: a dict with ``type`` and a ``timestamp`` (now unless
    given), plus any fields."""
    event = dict(_fields or {}, **fields)
    event["type"] = type
    event.setdefault("timestamp", time.time())
    return event


def group_from(type: str) -> str:
    """``task-succeeded`` belongs to the group ``task``."""
    return type.partition("-")[0]


def utcoffset() -> int:
    """Hours to add to UTC for local time, as Celery puts in every event."""
    seconds = time.altzone if time.daylight and time.localtime().tm_isdst > 0 else time.timezone
    return -seconds // 3600


def anon_nodename() -> str:
    """The name a process that is not a worker signs its events with (``gen<pid>@host``)."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


class LamportClock:
    """A logical clock: ``forward()`` before sending, ``adjust()`` on receiving, so events from
    different processes can be put in a causal order whatever their wall clocks say."""

    def __init__(self, initial: int = 0) -> None:
        self.value = initial
        self._lock = threading.Lock()

    def forward(self) -> int:
        with self._lock:
            self.value += 1
            return self.value

    def adjust(self, other: int) -> int:
        with self._lock:
            self.value = max(self.value, other) + 1
            return self.value


def encode(event: Mapping[str, Any]) -> bytes:
    """One event; values msgpack cannot hold are sent as their repr."""
    data: bytes = msgpack.packb(event, default=repr)
    return data


def encode_batch(events: Sequence[Mapping[str, Any] | bytes]) -> bytes:
    """Events (or already encoded ones, relayed by a pool process) as one msgpack array:
    one stream entry for a whole batch costs Redis and the sender a fraction of one each."""
    header: bytes = msgpack.Packer().pack_array_header(len(events))
    return header + b"".join(e if isinstance(e, bytes) else encode(e) for e in events)


def decode_batch(payload: bytes) -> list[dict[str, Any]]:
    """The events of one stream entry; raises MessageError if it is not one."""
    try:
        events = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises a handful of unrelated types
        raise MessageError(f"undecodable events: {exc}") from exc
    if not isinstance(events, list) or not all(
        isinstance(event, dict) and isinstance(event.get("type"), str) for event in events
    ):
        raise MessageError("an entry of the event stream must be a list of events with a type")
    return events
