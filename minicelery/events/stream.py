"""The Redis side of monitoring events: one capped stream per key prefix (``p:events``) that
every worker and client appends to and every monitor reads with ``XREAD BLOCK``.

A stream rather than pub/sub: events keep the order they were written in, a reader blocks
instead of polling, starts at "now" (or replays what is retained) and never misses an event
sent between two of its reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..exceptions import OperationalError
from ..redislayer.cluster import refresh_slots
from ..redislayer.errors import translate_errors
from ..redislayer.keys import KeySchema
from ..redislayer.wire import fast_path

MAXLEN = 1_000  # entries retained (approximately: Redis trims whole nodes, cheaply)
FIELD = b"e"  # one field per entry: a batch of events, encoded by the sender
BEGINNING = b"0-0"


class EventStream:
    """Append events in batches and read them in order from one Redis stream."""

    def __init__(
        self, client: Any, keys: KeySchema, maxlen: int = MAXLEN, fast: Any = None
    ) -> None:
        self.client = client
        self.key = keys.events
        self.maxlen = maxlen
        self._fast = fast or fast_path(client)

    def append(self, payloads: Sequence[bytes]) -> None:
        """Add ``payloads`` in order, one entry each, in one round trip."""
        if not payloads:
            return
        commands = [
            ("XADD", self.key, "MAXLEN", "~", self.maxlen, "*", FIELD, payload)
            for payload in payloads
        ]
        with translate_errors("sending events"):
            replies = self._fast.pipeline(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise OperationalError(f"sending events: Redis error ({reply})")

    def latest(self) -> bytes:
        """The id of the newest entry (``0-0`` when empty): read after it to start at now."""
        with translate_errors("reading events"):
            newest = self.client.xrevrange(self.key, "+", "-", count=1)
        return bytes(newest[0][0]) if newest else BEGINNING

    def read(self, after: bytes, timeout: float, count: int = 1000) -> list[tuple[bytes, bytes]]:
        """Entries after id ``after`` as ``(id, payload)``, waiting up to ``timeout`` seconds
        for the first one (not at all when ``timeout`` is 0)."""
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        try:
            with translate_errors("reading events"):
                reply = self.client.xread({self.key: after}, count=count, block=block)
        except OperationalError:
            refresh_slots(self.client)  # on a cluster: the stream's master may have moved
            raise
        entries: list[tuple[bytes, bytes]] = []
        for _, items in reply or ():
            for entry_id, fields in items:
                payload = fields.get(FIELD)
                if payload is not None:
                    entries.append((bytes(entry_id), bytes(payload)))
        return entries

    def clear(self) -> None:
        with translate_errors("deleting events"):
            self.client.delete(self.key)


def event_stream(broker: Any, maxlen: int = MAXLEN) -> EventStream:
    """The event stream on ``broker``'s Redis, under its key prefix."""
    client, keys = getattr(broker, "client", None), getattr(broker, "keys", None)
    if client is None or not isinstance(keys, KeySchema):
        raise OperationalError(f"{type(broker).__name__} cannot carry events")
    fast = getattr(broker, "fast", None)
    return EventStream(client, keys, maxlen, fast)
