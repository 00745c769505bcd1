"""The Redis broker on Redis Cluster (``rediscluster://``): the same queues, holds and
scripts as :class:`~.redis.RedisBroker`, shaped so that no script touches two slots.

A queue's keys share its hash tag, so queues spread over the shards. A consumer's hold is
kept per queue, in the queue's slot (``qhold``), with a delivery-tag counter per queue: a
reserve, an acknowledgement, a requeue or a lost consumer's give-back is one script on
one slot, and as atomic as on one server. A delivery tag says which queue it came from
(``<n>@<queue>``). A worker's queues on several shards are reserved from one after the
other, and waited on with one blocking pop per queue, watched together (:mod:`..redislayer
.clusterwait`): no polling.

What crosses slots is done in steps that may repeat after a crash but never lose a message:
heartbeats stay in one sorted set, and a lost consumer is forgotten only after every
queue's hold of it was given back; a scheduled message is taken into ``{p}:moving`` before
it is queued and removed from there after; a dead letter is written before its message
leaves the hold.
"""

from __future__ import annotations

import select
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from ..exceptions import OperationalError
from ..redislayer import errors
from ..redislayer.clusterwait import SlotWaits
from ..redislayer.clusterwire import store_in_order
from ..redislayer.errors import translate_errors
from ..redislayer.keys import KeySchema
from ..redislayer.wire import Lane
from .base import Delivery, OutgoingMessage
from .dead_letters import ClusterDeadLetters
from .mailbox import ClusterMailbox
from .redis import SEP, RedisBroker, _clamp, _script

SWEEP_EVERY = 10.0  # seconds: an idle consumer's reserves look at its queues this often
MOVING_STALE = 30.0  # seconds before a scheduled message a mover took is taken again
HANG = 2.0  # seconds beyond a blocking wait's own timeout before Redis counts as hung


def split_tag(tag: str) -> tuple[str, str]:
    """``(queue, n)`` of a cluster delivery tag ``<n>@<queue>``."""
    number, _, queue = tag.partition("@")
    return queue, number


def by_queue(tags: Sequence[str]) -> dict[str, list[str]]:
    """Tags grouped by their queue, as the per-queue holds know them."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for tag in tags:
        queue, number = split_tag(tag)
        grouped[queue].append(number)
    return grouped


class ClusterBroker(ClusterDeadLetters, RedisBroker):
    """A :class:`RedisBroker` over a redis-py ``RedisCluster`` client."""

    one_slot_per_script = True

    def __init__(self, client: Any, prefix: str = "minicelery") -> None:
        super().__init__(client, prefix)
        self.keys = KeySchema(prefix, cluster=True)
        self._give_back = _script(client, "give_back")
        self._take_due = _script(client, "take_due")
        self._waits = SlotWaits(client)
        self._thread_waits = SlotWaits(client)
        self._after: list[tuple[tuple[Any, ...], Any]] = []
        self._remembered: set[str] = set()
        self._quiet = False  # the last wait timed out on every queue
        self._swept_at = 0.0  # when a reserve last looked at the queues

    # -- queues and holds -----------------------------------------------------------------
    def _remember(self, queues: Sequence[str]) -> None:
        """Note queues consumed in ``p:queues``: a lost consumer's holds are looked for
        in each of them."""
        new = [queue for queue in queues if queue not in self._remembered]
        if new:
            self._call("reserve", lambda: self.client.sadd(self.keys.known_queues, *new))
            self._remembered.update(new)

    def known_queues(self) -> list[str]:
        members = self._call("held", lambda: self.client.smembers(self.keys.known_queues))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def _queue_call(self, consumer: str, queue: str) -> list[str]:
        seq = self.keys.queue_seq(queue)  # also in the place of the unused heartbeat key
        return [self.keys.queue_hold(queue, consumer), seq, seq, *self._queue_keys((queue,))]

    def reserve(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> list[Delivery]:
        return self._reserve_with(consumer, queues, count, ack, ())

    def _reserve_with(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str],
        after: Sequence[tuple[tuple[Any, ...], Callable[[Any], None]]],
    ) -> list[Delivery]:  # fmt: skip
        """The reserve from the first queue (in turn), every queue's acks and the commands
        ``after``, in one write per shard; then the next queues, one by one, while there is
        room left."""
        acks = by_queue(ack)
        order = self._ordered(queues) if count > 0 and queues and self._due() else ()
        if order:
            self._remember(queues)
            if self._beat(consumer):  # known before it holds anything, as on one server
                self.heartbeat(consumer)
        first = [(order[0], count, acks.pop(order[0], []))] if order else []
        commands = [self._reserve_command_of(consumer, *call) for call in first]
        commands += [("HDEL", self.keys.queue_hold(q, consumer), *n) for q, n in acks.items()]
        commands += [command for command, _ in after]
        # Never sent again after a lost connection: the caller looks at its hold instead.
        replies = self._call("reserve", lambda: self.fast.pipeline(commands, retry=False))
        taken = [d for (q, want, tags), flat in zip(first, replies, strict=False)
                 for d in self._taken(consumer, q, want, tags, flat)]  # fmt: skip
        for reply in replies[len(first) : len(commands) - len(after)]:
            if isinstance(reply, Exception):
                raise OperationalError(f"ack: Redis error ({reply})")
        for (_, read), reply in zip(after, replies[len(commands) - len(after) :], strict=True):
            if not isinstance(reply, Exception):
                read(reply)
        for queue in order[1:]:
            if len(taken) >= count:
                break
            taken += self._reserve_from(consumer, queue, count - len(taken), ())
        return taken

    def _due(self) -> bool:
        """Whether this reserve is to look at the queues (see :meth:`wait_finish`)."""
        quiet, self._quiet = self._quiet, False
        now = time.monotonic()
        if quiet and now - self._swept_at < SWEEP_EVERY:
            return False
        self._swept_at = now
        return True

    def _reserve_command_of(
        self, consumer: str, queue: str, count: int, tags: Sequence[str]
    ) -> tuple[Any, ...]:
        keys = self._queue_call(consumer, queue)
        return ("EVALSHA", self._reserve.sha, len(keys), *keys, consumer, count, 0, *tags)

    def _taken(
        self, consumer: str, queue: str, count: int, tags: Sequence[str], flat: Any
    ) -> list[Delivery]:
        """The deliveries of a reserve's reply; a shard that forgot the script (nothing
        was taken, nor acknowledged) is asked again, the script loaded."""
        if isinstance(flat, errors.NoScriptError):
            return self._reserve_from(consumer, queue, count, tags)
        if isinstance(flat, Exception):
            raise OperationalError(f"reserve: Redis error ({flat})")
        return [
            Delivery(f"{_text(flat[i])}@{queue}", queue, flat[i + 2])
            for i in range(0, len(flat), 3)
        ]

    def _reserve_from(
        self, consumer: str, queue: str, count: int, tags: Sequence[str]
    ) -> list[Delivery]:
        keys, args = self._queue_call(consumer, queue), [consumer, count, 0, *tags]
        flat = self._call(
            "reserve", lambda: self.fast.evalsha(self._reserve, keys, args, retry=False)
        )
        return self._taken(consumer, queue, count, tags, flat)

    def settle_and_reserve(
        self,
        before: Sequence[tuple[tuple[Any, ...], Any]],
        consumer: str,
        queues: Sequence[str],
        count: int,
        ack: Sequence[str] = (),
        after: Sequence[tuple[tuple[Any, ...], Callable[[Any], None]]] = (),
    ) -> list[Delivery]:
        """The stores first (each in its task's slot, one shard after the other), then in
        one write per shard the acks, a reserve and the commands ``after``: an ack never
        lands before its result, as on one server, in two round trips or a few more."""
        self._run_stores(before)
        return self._reserve_with(consumer, queues, count, ack, after)

    def _run_stores(self, commands: Sequence[tuple[tuple[Any, ...], Any]]) -> None:
        if commands:
            self._call("store", lambda: store_in_order(self.fast, commands))

    def _run_after(self, after: Sequence[tuple[tuple[Any, ...], Any]]) -> None:
        if not after:
            return
        replies = self._call("reserve", lambda: self.fast.pipeline([c for c, _ in after]))
        for (_, read), reply in zip(after, replies, strict=True):
            if not isinstance(reply, Exception):
                read(reply)

    def ack(self, consumer: str, tags: Sequence[str]) -> None:
        for queue, numbers in by_queue(tags).items():
            self._ack_queue(consumer, queue, numbers)

    def _ack_queue(self, consumer: str, queue: str, numbers: Sequence[str]) -> None:
        key = self.keys.queue_hold(queue, consumer)
        self._call("ack", lambda: self.fast.execute("HDEL", key, *numbers))

    def ack_key(self, consumer: str) -> str:
        raise OperationalError("on Redis Cluster a consumer's hold is kept per queue")

    def requeue(self, consumer: str, tags: Sequence[str]) -> int:
        count = 0
        for queue, numbers in by_queue(tags).items():
            keys = [self.keys.queue_hold(queue, consumer)]
            count += int(
                self._call("requeue", lambda: self.fast.evalsha(self._requeue, keys, numbers))  # noqa: B023
            )
        return count

    def redeliver(self, consumer: str, tag: str, data: bytes) -> int:
        queue, number = split_tag(tag)
        keys = [self.keys.queue_hold(queue, consumer)]
        return int(
            self._call(
                "redeliver", lambda: self.fast.evalsha(self._redeliver, keys, [number, data])
            )
        )

    def held(self, consumer: str) -> list[str]:
        tags: list[str] = []
        for queue in self.known_queues():
            key = self.keys.queue_hold(queue, consumer)
            numbers = self._call("held", lambda: self.client.hkeys(key))  # noqa: B023
            tags += [f"{_text(number)}@{queue}" for number in numbers]
        return tags

    def held_messages(self, consumer: str, tags: Sequence[str]) -> list[Delivery]:
        found = []
        for queue, numbers in by_queue(tags).items():
            key = self.keys.queue_hold(queue, consumer)
            entries = self._call("held", lambda: self.client.hmget(key, numbers))  # noqa: B023
            for number, entry in zip(numbers, entries, strict=True):
                if entry is not None:
                    data = bytes(entry).split(SEP, 4)[4]
                    found.append(Delivery(f"{number}@{queue}", queue, data))
        return found

    # -- lost consumers -------------------------------------------------------------------
    def _give_back_all(self, consumer: str, queues: Sequence[str] | None = None) -> int:
        """Every queue's hold of ``consumer`` back to its queue; then forget it (a crash
        in between leaves it to be found lost again, and given back then)."""
        count = 0
        for queue in self.known_queues() if queues is None else queues:
            keys = [self.keys.queue_hold(queue, consumer)]
            count += int(
                self._call("recover", lambda: self.fast.evalsha(self._give_back, keys, []))  # noqa: B023
            )
        self._call("recover", lambda: self.client.zrem(self.keys.consumers, consumer))
        return count

    def unregister(self, consumer: str) -> int:
        return self._give_back_all(consumer)

    def recover_lost(self, lost_after: float) -> int:
        keys = [self.keys.consumers, self.keys.recovered_at, self.keys.heard_again_at]
        lost = self._call(
            "recover", lambda: self._recover(keys=keys, args=[lost_after, "", "", ""])
        )
        queues = self.known_queues() if lost else []
        return sum(self._give_back_all(_text(consumer), queues) for consumer in lost)

    # -- waiting --------------------------------------------------------------------------
    def wait_start(
        self, queues: Sequence[str], timeout: float, reserve_for: tuple[str, int] | None = None,
        after: Sequence[tuple[tuple[Any, ...], Any]] = (),
    ) -> int | None:  # fmt: skip
        """One blocking pop per queue (each on its shard), watched through one descriptor.
        Nothing is chained behind them: the caller reserves once woken."""
        if not SlotWaits.available():
            return None
        with translate_errors("wait"):
            fd = self._waits.start([self.keys.wake(queue) for queue in queues], timeout)
        self._after = list(after)
        return fd

    def reserve_start(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> int | None:
        return None  # the caller reserves with reserve()

    def wait_finish(self) -> list[Delivery] | None:
        try:
            with translate_errors("wait"):
                ended = self._waits.finish()
        except OperationalError:
            self._waits.abort()
            raise
        if ended is None:
            return None
        # Timed out on every queue: no message came (each publish, requeue or recovery
        # leaves a token): the reserve that follows is skipped, but for a sweep now and
        # then (messages pushed by hand carry no token).
        self._quiet = not ended
        after, self._after = self._after, []
        self._run_after(after)
        return []

    def wait_abort(self) -> None:
        self._waits.abort()

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        waits = self._thread_waits  # a waiter thread's, apart from the main loop's
        with translate_errors("wait"):
            fd = waits.start([self.keys.wake(queue) for queue in queues], timeout)
            ready, _, _ = select.select([fd], [], [], max(timeout, 0.01) + HANG)
            if not ready:
                waits.abort()
                raise OperationalError("wait: Redis did not answer")
            return bool(waits.finish())

    def lane(self) -> Lane | None:
        return None  # results and acks live on different shards: no single connection

    # -- publishing and scheduling --------------------------------------------------------
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        now = time.time()
        if len(messages) == 1 and (messages[0].eta is None or messages[0].eta <= now):
            self.publish_now(messages[0].queue, messages[0].data, messages[0].priority)
            return  # one EVALSHA on its shard's connection (delay())
        later = [m for m in messages if m.eta is not None and m.eta > now]
        if later:
            entries = {self.queue_entry(m.queue, _clamp(m.priority), m.data): m.eta for m in later}
            with translate_errors("publish"):
                pipe = self.client.pipeline(transaction=False)
                pipe.zadd(self.keys.scheduled, entries)
                pipe.lpush(self.keys.schedule_wake, b"1").ltrim(self.keys.schedule_wake, 0, 0)
                pipe.execute()
        self._publish_now_many(
            [(m.queue, m.data, _clamp(m.priority)) for m in messages if m not in later]
        )

    def _publish_now_many(self, messages: Sequence[tuple[str, bytes, int]]) -> None:
        """Publish scripts in one pipeline (redis-py sends each shard its part)."""
        if not messages:
            return
        calls = [
            (self._publish_keys(queue, level), (data, level)) for queue, data, level in messages
        ]
        commands = [("EVALSHA", self._publish.sha, 3, *keys, *args) for keys, args in calls]
        replies = self._call("publish", lambda: self.fast.pipeline(commands))
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):  # NOSCRIPT: this one again, loading it
                self._call("publish", lambda: self.fast.evalsha(self._publish, keys, args))  # noqa: B023

    def move_due(self, now: float, limit: int = 1000) -> int:
        keys = [self.keys.scheduled, self.keys.moving]
        entries = self._call(
            "move_due",
            lambda: self.fast.evalsha(self._take_due, keys, [now, limit, MOVING_STALE]),
        )
        for entry in entries:
            list_key, wake, levels, level, data = bytes(entry).split(SEP, 4)
            where = (list_key.decode(), wake.decode(), levels.decode())
            self._call(
                "move_due",
                lambda: self.fast.evalsha(self._publish, where, [data, int(level)]),  # noqa: B023
            )
            self._call("move_due", lambda: self.client.hdel(self.keys.moving, entry))  # noqa: B023
        return len(entries)

    # -- purges and remote control ------------------------------------------------------
    def purge(self, queues: Sequence[str]) -> int:
        return sum(super(ClusterBroker, self).purge([queue]) for queue in queues)

    def mailbox(self) -> Any:
        return ClusterMailbox(self.client, self.keys)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
