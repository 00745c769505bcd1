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


class ClusterDeadLetters(DeadLetterStore):
    """The dead-letter store on Redis Cluster (:class:`~.cluster.ClusterBroker`): the
    letters share a slot, a message's hold is in its queue's, so what moves between them
    goes in two steps that may repeat but never lose it."""

    def ack(self, consumer: str, tags: Sequence[str]) -> None:
        raise NotImplementedError

    def _publish_now_many(self, messages: Sequence[tuple[str, bytes, int]]) -> None:
        raise NotImplementedError

    def dead_letter(self, consumer: str, delivery: Delivery, letter: DeadLetter) -> None:
        """Stored first, then taken from the hold: a crash between the two keeps the
        message held (given back, and dead-lettered again), never loses it."""
        record = dead_record(letter)

        def store() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys.dead_letters, letter.id, record)
            pipe.zadd(self.keys.dead_index, {letter.id: letter.when})
            pipe.execute()

        self._call("dead_letter", store)
        self.ack(consumer, [delivery.tag])

    def replay_dead(self, ids: Sequence[str] | None = None) -> int:
        letters = [letter for letter in self.dead_letters() if ids is None or letter.id in set(ids)]
        for letter in letters:  # queued, then forgotten: at worst queued twice
            self._publish_now_many([(letter.queue, letter.data, 0)])

            def forget(letter_id: str = letter.id) -> None:
                pipe = self.client.pipeline(transaction=True)
                pipe.hdel(self.keys.dead_letters, letter_id)
                pipe.zrem(self.keys.dead_index, letter_id)
                pipe.execute()

            self._call("replay_dead", forget)
        return len(letters)
