"""The reserve script's calls, as the Redis broker sends them: its keys worked out once per
consumer and queues, the queues rotated so one busy queue cannot starve the others, and the
bytes of a consumer's usual reserve packed once (packing dozens of keys on every reserve
cost more than sending them)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

from ..redislayer.keys import PRIORITIES, KeySchema
from ..redislayer.wire import pack_commands

RESERVE_BEAT_EVERY = 1.0  # seconds between reserves that count as a heartbeat


class ReserveCommands:
    """A mixin of :class:`~.redis.RedisBroker`."""

    keys: KeySchema
    _reserve: Any
    _reserve_forgotten: bool
    _rotation: int
    _beat_at: dict[str, float]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a broker lives as long as its app
    def _queue_keys(self, queues: tuple[str, ...]) -> list[str]:
        keys: list[str] = []
        for queue in queues:
            keys.extend(self.keys.queue(queue, p) for p in PRIORITIES)
            keys.append(self.keys.levels(queue))
            keys.append(self.keys.wake(queue))
        return keys

    def _reserve_call(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str]
    ) -> tuple[list[str], list[Any]]:
        keys = self._reserve_keys(consumer, self._ordered(queues))
        return [*keys], [consumer, max(count, 0), self._beat(consumer), *ack]

    def _beat(self, consumer: str) -> int:
        """1 when the next reserve for ``consumer`` is to count as its heartbeat: the first,
        then one a second. Every consumer is heartbeaten by its worker besides; a ZADD per
        reserve was a tenth of what Redis spent per message in a drain."""
        now = time.monotonic()
        if now - self._beat_at.get(consumer, -RESERVE_BEAT_EVERY) < RESERVE_BEAT_EVERY:
            return 0
        self._beat_at[consumer] = now
        return 1

    def _ordered(self, queues: Sequence[str]) -> tuple[str, ...]:
        """The queues in the order of the next reserve: rotated each time, so one busy queue
        cannot starve the others."""
        self._rotation = (self._rotation + 1) % max(len(queues), 1)
        return tuple(queues[self._rotation :]) + tuple(queues[: self._rotation])

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _reserve_keys(self, consumer: str, ordered: tuple[str, ...]) -> tuple[str, ...]:
        return (
            self.keys.hold(consumer),
            self.keys.seq,
            self.keys.consumers,
            *self._queue_keys(ordered),
        )

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _packed(
        self,
        wait: tuple[tuple[str, ...], float] | None,
        reserve: tuple[str, str, tuple[str, ...], int, int] | None,
    ) -> bytes:
        """The wire bytes of a wait ``(queues, timeout)`` and/or a reserve ``(script sha,
        consumer, queues in order, count, beat)``. A worker sends the same few after every task,
        and packing the reserve's dozens of keys cost more than sending them."""
        commands: list[tuple[Any, ...]] = []
        if wait is not None:
            commands.append(("BLPOP", *(self.keys.wake(q) for q in wait[0]), wait[1]))
        if reserve is not None:
            sha, consumer, ordered, count, beat = reserve
            commands.append(self._reserve_command(sha, consumer, ordered, count, (), beat))
        return pack_commands(commands)

    def _reserve_of(
        self, consumer: str, queues: Sequence[str], count: int
    ) -> tuple[str, str, tuple[str, ...], int, int]:
        """A reserve as :meth:`_packed` takes it. Whether it counts as a heartbeat is
        decided like any other's: a reserve chained to every wait beat each time, a TIME
        and a ZADD in the script that wakes an idle consumer, on its critical path."""
        return (self._reserve_ref(), consumer, self._ordered(queues), count, self._beat(consumer))

    def _reserve_ref(self) -> str:
        """The reserve script's SHA, or "" after Redis forgot it (restarted): the next
        reserve then sends the script itself (EVAL, which caches it again) rather than
        have the caller wait for a SCRIPT LOAD."""
        return "" if self._reserve_forgotten else str(self._reserve.sha)

    def _packed_reserve(
        self, sha: str, consumer: str, ordered: tuple[str, ...], count: int,
        ack: tuple[str, ...], beat: int,
    ) -> bytes:  # fmt: skip
        """:meth:`_reserve_command` in wire format, its dozens of keys packed once: only
        the acknowledged tags differ from one reserve of a consumer to the next."""
        size, body = self._packed_reserve_body(sha, consumer, ordered, count, beat)
        tags = pack_commands([ack])[len(b"*%d\r\n" % len(ack)) :] if ack else b""
        return b"*%d\r\n" % (size + len(ack)) + body + tags

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _packed_reserve_body(
        self, sha: str, consumer: str, ordered: tuple[str, ...], count: int, beat: int
    ) -> tuple[int, bytes]:
        command = self._reserve_command(sha, consumer, ordered, count, (), beat)
        return len(command), pack_commands([command])[len(b"*%d\r\n" % len(command)) :]

    def _reserve_command(
        self, sha: str, consumer: str, ordered: tuple[str, ...], count: int,
        ack: Sequence[str] = (), beat: int = 1,
    ) -> tuple[Any, ...]:  # fmt: skip
        keys = self._reserve_keys(consumer, ordered)
        call = ("EVALSHA", sha) if sha else ("EVAL", self._reserve.script)
        return (*call, len(keys), *keys, consumer, max(count, 0), beat, *ack)
