"""``get()``'s first look at a task's record, in one write: the stream's newest entry, the
record itself and a blocking read of the stream, so a caller that asks right after sending
is woken by the worker's store without first waiting for a reply that says "not yet"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..redislayer.wire import pack_commands

NO_ENTRY = b"0-0"  # an XREAD from here returns the whole stream


def stream_entries(reply: Any) -> Iterator[tuple[Any, bytes]]:
    """``(entry id, record)`` from an XREAD reply (a map under RESP3, a list under RESP2)."""
    streams = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply)
    for entries in streams:
        for entry_id, fields in entries:
            yield entry_id, fields[1]


def _entry_key(entry_id: Any) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


def first_look(
    connection: Any, key: str, stream: str, block_ms: int, ready: Callable[[Any], bool]
) -> tuple[Any, list[Any]]:
    """Where the stream stands and the records to yield, oldest first: the current one
    (None when there is no record yet), then any newer ones the blocking read brought.

    The blocking read starts at the stream's beginning: when the stream has entries it
    answers at once, and the entries up to the newest one seen are skipped; when it has
    none it blocks until the worker's next store (or ``block_ms``). A ready record whose
    stream has expired (stored over a minute ago) needs no wait: the read still pending
    then is abandoned with the connection. Any error abandons it too, so no reply is
    ever left unread on a connection that is used again."""
    xread = ("XREAD", "BLOCK", block_ms, "STREAMS", stream, NO_ENTRY)
    commands = [("XREVRANGE", stream, "+", "-", "COUNT", 1), ("GET", key), xread]
    try:
        connection.send_packed_command([pack_commands(commands)])
        latest, data = connection.read_response(), connection.read_response()
        if not latest and data is not None and ready(data):
            connection.disconnect()
            return NO_ENTRY, [data]
        reply = connection.read_response()
    except BaseException:
        connection.disconnect()
        raise
    if latest:
        last_id, current = latest[0][0], latest[0][1][1]
    else:
        last_id, current = NO_ENTRY, data
    records = [current]
    for entry_id, record in stream_entries(reply or {}):
        if _entry_key(entry_id) > _entry_key(last_id):
            last_id = entry_id
            records.append(record)
    return last_id, records
