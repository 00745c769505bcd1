"""The dead-letter store of the Redis broker: messages no worker could run, kept with their
reason (``{p}:dead``, indexed by time in ``{p}:dead:index``) until replayed or purged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgpack

from ..redislayer.keys import KeySchema
from .base import DeadLetter, Delivery

T = TypeVar("T")


class DeadLetterStore:
    """The dead-letter half of :class:`~minicelery.broker.redis.RedisBroker`."""

    client: Any
    keys: KeySchema
    _publish: Any

    def _call(self, what: str, func: Callable[[], T]) -> T:
        raise NotImplementedError

    def _publish_keys(self, queue: str, priority: int) -> tuple[str, str, str]:
        raise NotImplementedError

    def dead_letter(self, consumer: str, delivery: Delivery, letter: DeadLetter) -> None:
        record = dead_record(letter)

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys.dead_letters, letter.id, record)
            pipe.zadd(self.keys.dead_index, {letter.id: letter.when})
            pipe.hdel(self.keys.hold(consumer), delivery.tag)
            pipe.execute()

        self._call("dead_letter", run)

    def dead_letters(self) -> list[DeadLetter]:
        def run() -> list[Any]:
            ids: list[Any] = list(self.client.zrange(self.keys.dead_index, 0, -1))
            return list(self.client.hmget(self.keys.dead_letters, ids)) if ids else []

        letters = []
        for raw in self._call("dead_letters", run):
            if raw is None:
                continue
            record = msgpack.unpackb(raw, raw=False)
            letters.append(DeadLetter(**record))
        return letters

    def replay_dead(self, ids: Sequence[str] | None = None) -> int:
        letters = self.dead_letters()
        if ids is not None:
            wanted = set(ids)
            letters = [letter for letter in letters if letter.id in wanted]
        if not letters:
            return 0

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            for letter in letters:
                keys = self._publish_keys(letter.queue, 0)
                self._publish(keys=keys, args=[letter.data, 0], client=pipe)
                pipe.hdel(self.keys.dead_letters, letter.id)
                pipe.zrem(self.keys.dead_index, letter.id)
            pipe.execute()

        self._call("replay_dead", run)
        return len(letters)

    def purge_dead(self) -> int:
        def run() -> int:
            pipe = self.client.pipeline(transaction=True)
            pipe.hlen(self.keys.dead_letters)
            pipe.delete(self.keys.dead_letters, self.keys.dead_index)
            return int(pipe.execute()[0])

        return self._call("purge_dead", run)


def dead_record(letter: DeadLetter) -> bytes:
    """How a dead letter is stored."""
    record: bytes = msgpack.packb(
        {
            "id": letter.id,
            "task": letter.task,
            "reason": letter.reason,
            "when": letter.when,
            "queue": letter.queue,
            "data": letter.data,
        },
        use_bin_type=True,
    )
    return record
