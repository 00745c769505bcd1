"""The Redis broker: reliable queues with priorities, a scheduled set and dead letters, on
the keys of :mod:`minicelery.redislayer.keys` (its docstring draws the layout).

A message moves atomically between a queue's priority lists, a consumer's hold and the
scheduled set, each move one Lua script (``scripts/*.lua``, after ``common.lua``).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..exceptions import OperationalError
from ..redislayer import errors
from ..redislayer.errors import translate_errors, translated
from ..redislayer.keys import PRIORITIES, KeySchema
from ..redislayer.scripts import register, run_again
from ..redislayer.wire import Held, Lane, fast_path, get_connection, pack_commands
from .base import Broker, Delivery, OutgoingMessage
from .dead_letters import DeadLetterStore
from .reserving import ReserveCommands

SEP = b"\0"
T = TypeVar("T")

#: Seconds a publish looks for Redis's reply before it sleeps on the socket: a local Redis
#: answers in tens of microseconds, and a process woken from sleep (more so on a virtual
#: machine whose idle CPUs halt) can take as long again to run. At most this much CPU more
#: per call; a Redis that answers later is waited for asleep, as before.
PUBLISH_SPIN = 100e-6


def _script(client: Any, name: str) -> Any:
    return register(client, "minicelery.broker", name, prelude="common")


class RedisBroker(ReserveCommands, DeadLetterStore, Broker):
    """A :class:`Broker` over one Redis client (real, embedded or fake)."""

    #: Whether every script must stay within one hash slot (Redis Cluster).
    one_slot_per_script = False

    def __init__(self, client: Any, prefix: str = "minicelery") -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self._reserve = _script(client, "reserve")
        self._publish = _script(client, "publish")
        self._requeue = _script(client, "requeue")
        self._redeliver = _script(client, "redeliver")
        self._recover = _script(client, "recover")
        self._move_due = _script(client, "move_due")
        self._heartbeat = _script(client, "heartbeat")
        self._rotation = 0
        self.fast = fast_path(client)
        self._waiting: Held | None = None
        self._chained: tuple[str, ...] | None = None  # queues of a reserve sent after a wait
        self._chained_acks: tuple[str, tuple[str, ...]] = ("", ())  # what it acknowledges
        self._chained_after: list[tuple[tuple[Any, ...], Any]] = []  # sent behind it
        self._blocking = False  # whether a BLPOP leads what the waiting connection awaits
        self._reserve_forgotten = False  # Redis answered NOSCRIPT to the last reserve
        self._beat_at: dict[str, float] = {}  # consumer -> when a reserve last beat for it

    def _call(self, what: str, func: Callable[[], T]) -> T:
        with translate_errors(what):
            return func()

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _publish_keys(self, queue: str, priority: int) -> tuple[str, str, str]:
        return publish_keys(self.keys, queue, priority)

    def queue_entry(self, queue: str, priority: int, data: bytes) -> bytes:
        """How a scheduled (or held) message remembers where it goes back to."""
        return scheduled_entry(self._publish_keys(queue, priority), priority, data)

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if len(messages) == 1 and (messages[0].eta is None or messages[0].eta <= time.time()):
            msg = messages[0]
            self.publish_now(msg.queue, msg.data, msg.priority)
            return

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            schedule_changed = False
            for msg in messages:
                priority = _clamp(msg.priority)
                if msg.eta is not None and msg.eta > time.time():
                    pipe.zadd(
                        self.keys.scheduled,
                        {self.queue_entry(msg.queue, priority, msg.data): msg.eta},
                    )
                    schedule_changed = True
                else:
                    keys = self._publish_keys(msg.queue, priority)
                    self._publish(keys=keys, args=[msg.data, priority], client=pipe)
            if schedule_changed:
                pipe.lpush(self.keys.schedule_wake, b"1")
                pipe.ltrim(self.keys.schedule_wake, 0, 0)
            pipe.execute()

        self._call("publish", run)

    def publish_now(self, queue: str, data: bytes, priority: int | None = 0) -> None:
        """The common case, one EVALSHA: a pipeline would add a SCRIPT EXISTS round trip."""
        level = _clamp(priority) if priority else 0
        keys = self._publish_keys(queue, level)
        try:
            self.fast.evalsha(self._publish, keys, (data, level), same_keys=True, spin=PUBLISH_SPIN)
        except errors.RedisError as exc:  # no context manager: it showed on every delay()
            raise translated("publish", exc) from exc

    def reserve(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> list[Delivery]:
        if (count <= 0 or not queues) and not ack:
            return []
        keys, args = self._reserve_call(consumer, queues, count, ack)
        flat = self._call(
            "reserve", lambda: self.fast.evalsha(self._reserve, keys, args, retry=False)
        )
        return self._deliveries(flat, queues)

    def settle_and_reserve(
        self,
        before: Sequence[tuple[tuple[Any, ...], Any]],
        consumer: str,
        queues: Sequence[str],
        count: int,
        ack: Sequence[str] = (),
        after: Sequence[tuple[tuple[Any, ...], Callable[[Any], None]]] = (),
    ) -> list[Delivery]:
        """One round trip for a prefork child that consumes by itself: the commands
        ``before`` (a result backend's ``store_commands`` on this Redis), then a reserve that
        acknowledges ``ack`` first, then the commands ``after`` (each reply to its callback).
        On one connection, in order: an ack never lands before the result it follows. The
        stores are written before the rest is packed, two writes of one round trip. A
        store Redis refused (its script forgotten) is sent again before this returns."""
        if before:  # the results leave first: Redis stores them (and wakes their waiters)
            # while the reserve is packed.
            head = pack_commands([command for command, _ in before])
            self._call("reserve", lambda: self.fast.send_ahead(head))
        call = (self._reserve_ref(), consumer, self._ordered(queues), count)
        packed = (self._packed_reserve(*call, tuple(ack), self._beat(consumer))
                  + pack_commands([c for c, _ in after]))  # fmt: skip
        # Never sent again: the caller is told, and looks at its hold once Redis answers.
        count_replies = len(before) + 1 + len(after)
        replies = self._call("reserve", lambda: self.fast.exchange(packed, count_replies))
        for (_, read), reply in zip(after, replies[len(before) + 1 :], strict=True):
            if not isinstance(reply, Exception):
                read(reply)
        for (command, script), reply in zip(before, replies, strict=False):
            if isinstance(reply, Exception):
                self._resend(command, script)
        flat = replies[len(before)]
        if isinstance(flat, errors.NoScriptError):
            self._reserve_forgotten = True  # nothing taken; the next reserve sends the script
            self.ack(consumer, ack)  # the script that was to acknowledge them did not run
            return []
        if isinstance(flat, Exception):
            raise OperationalError(f"reserve: Redis error ({flat})")
        self._reserve_forgotten = False
        return self._deliveries(flat, queues)

    def _resend(self, command: tuple[Any, ...], script: Any) -> None:
        """Run an ``EVALSHA`` command again, loading its script if Redis forgot it."""
        self._call("store", lambda: run_again(self.fast, command, script))

    def bump(self, name: str, ttl: float) -> int:
        key = self.keys.counter(name)
        replies = self._call(
            "bump", lambda: self.fast.pipeline([("INCR", key), ("EXPIRE", key, int(ttl))])
        )
        if isinstance(replies[0], Exception):
            raise OperationalError(f"bump: Redis error ({replies[0]})")
        return int(replies[0])

    def held(self, consumer: str) -> list[str]:
        """The tags ``consumer`` holds (reserved, not yet acknowledged)."""
        tags = self._call("held", lambda: self.client.hkeys(self.keys.hold(consumer)))
        return [tag.decode() if isinstance(tag, bytes) else tag for tag in tags]

    def held_messages(self, consumer: str, tags: Sequence[str]) -> list[Delivery]:
        """The messages ``consumer`` still holds of ``tags`` (``inspect reserved``)."""
        entries = self._call("held", lambda: self.client.hmget(self.keys.hold(consumer), tags))
        found = []
        for tag, entry in zip(tags, entries, strict=True):
            if entry is not None:  # list key, wake key, levels key, level, then the message
                list_key, _, _, _, data = bytes(entry).split(SEP, 4)
                queue = self.keys.queue_of(list_key.decode()) or ""
                found.append(Delivery(tag, queue, data))
        return found

    def _deliveries(self, flat: list[Any], queues: Sequence[str]) -> list[Delivery]:
        queue_of = self._queue_names(tuple(queues))
        return [
            Delivery(flat[i].decode(), queue_of[flat[i + 1]], flat[i + 2])
            for i in range(0, len(flat), 3)
        ]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a broker lives as long as its app
    def _queue_names(self, queues: tuple[str, ...]) -> dict[bytes, str]:
        return {self.keys.queue(q, p).encode(): q for q in queues for p in PRIORITIES}

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        wake_keys = [self.keys.wake(q) for q in queues]
        # BLPOP takes a float timeout; 0 would block forever, so never pass it.
        seconds = max(timeout, 0.01)
        popped = self._call("wait", lambda: self.client.blpop(wake_keys, timeout=seconds))
        return popped is not None

    def wait_start(
        self, queues: Sequence[str], timeout: float, reserve_for: tuple[str, int] | None = None,
        after: Sequence[tuple[tuple[Any, ...], Any]] = (),
    ) -> int | None:  # fmt: skip
        """Send the BLPOP of :meth:`wait` without waiting for its reply; return a file
        descriptor that becomes readable when it is there, so one select() can watch the
        broker and a worker's children together. None when the client has no real socket
        (``memory://``): use :meth:`wait` in a thread instead.

        With ``reserve_for``, the reserve script is sent right behind the BLPOP on the same
        connection: Redis runs it the moment the BLPOP returns, so a woken worker has its
        messages without another round trip. If the wait is abandoned after that reserve
        ran, the messages sit in the consumer's hold like those of any reserve whose reply
        was lost, and are given back the same way. The commands ``after`` follow that
        reserve (a consuming child's read of the revoke news: no round trip of its own)."""
        wait = (tuple(queues), max(timeout, 0.01))
        if reserve_for is None or reserve_for[1] <= 0 or not queues:
            return self._send_waiting(self._packed(wait, None), blocking=True, chained=None)
        consumer, count = reserve_for
        packed = self._packed(wait, self._reserve_of(consumer, queues, count))
        packed += pack_commands([command for command, _ in after])
        sent = self._send_waiting(packed, blocking=True, chained=tuple(queues))
        self._chained_after = list(after)
        return sent

    def reserve_start(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> int | None:
        """Send a reserve (acknowledging ``ack`` first, in the same script) without waiting
        for its reply; the returned file descriptor becomes readable when it is there, and
        :meth:`wait_finish` reads the messages. A busy worker so never stalls its main loop
        on a reserve round trip. None without a real socket."""
        reserve = self._reserve_of(consumer, queues, count)
        if ack:  # tags differ every time: nothing to cache
            sha, _, ordered, _, beat = reserve
            command = self._reserve_command(sha, consumer, ordered, count, ack, beat)
            packed = pack_commands([command])
        else:
            packed = self._packed(None, reserve)
        sent = self._send_waiting(packed, blocking=False, chained=tuple(queues))
        self._chained_acks = (consumer, tuple(ack))
        return sent

    def _send_waiting(
        self, packed: bytes, blocking: bool, chained: tuple[str, ...] | None
    ) -> int | None:
        if self._waiting is None or self._waiting.pid != os.getpid():
            self._waiting = Held(self.client.connection_pool, get_connection(self.client))
        connection = self._waiting.connection
        with translate_errors("wait"):
            connection.connect()
            sock = getattr(connection, "_sock", None)
            if not isinstance(sock, socket.socket):
                return None
            self._blocking, self._chained = blocking, chained
            self._chained_acks = ("", ())
            self._chained_after = []
            # No health check: it would PING and wait for the answer (on a worker's loop).
            connection.send_packed_command([packed], check_health=False)
        return sock.fileno()

    def wait_finish(self) -> list[Delivery] | None:
        """Read the replies of :meth:`wait_start` or :meth:`reserve_start`: the messages
        their reserve took; None when the reserve's reply has not come yet (a wait ended
        just as Redis stopped answering): watch the same descriptor again, since reading
        on would block the caller."""
        assert self._waiting is not None
        connection = self._waiting.connection
        try:
            with translate_errors("wait"):
                if self._blocking:
                    connection.read_response()
                    self._blocking = False
                if self._chained is None:
                    return []
                if not connection.can_read(timeout=0):
                    return None
                queues, self._chained = self._chained, None
                try:
                    flat = connection.read_response()
                except errors.NoScriptError:
                    # A restarted Redis forgot the script: nothing was taken (nor
                    # acknowledged); the next reserve sends it again (see _reserve_ref).
                    self._reserve_forgotten = True
                    self._read_chained_after(connection)
                    self.ack(*self._chained_acks)
                    return []
                self._reserve_forgotten = False
                self._read_chained_after(connection)
                return self._deliveries(flat, queues)
        except OperationalError:
            connection.disconnect()
            raise

    def _read_chained_after(self, connection: Any) -> None:
        after, self._chained_after = self._chained_after, []
        for _, read in after:
            try:
                reply = connection.read_response()
            except errors.ResponseError:  # an error reply: the callback has nothing to read
                continue
            read(reply)

    def wait_abort(self) -> None:
        """Give up a started wait (shutting down): its connection is closed, not reused."""
        if self._waiting is not None:
            self._waiting.connection.disconnect()

    def lane(self) -> Lane | None:
        """A :class:`Lane` on this broker's Redis, or None when its connections have no real
        socket to watch (``memory://``)."""
        lane = Lane(self.client)
        with translate_errors("connect"):
            lane.connection.connect()
        if lane.fileno() is None:
            lane.close()
            return None
        return lane

    def ack_key(self, consumer: str) -> str:
        """Where ``consumer``'s unacknowledged messages are held (acknowledging deletes
        from it), for a result backend that acknowledges with the results it stores."""
        return self.keys.hold(consumer)

    def ack(self, consumer: str, tags: Sequence[str]) -> None:
        if tags:
            self._call("ack", lambda: self.fast.execute("HDEL", self.keys.hold(consumer), *tags))

    def requeue(self, consumer: str, tags: Sequence[str]) -> int:
        if not tags:
            return 0
        keys = [self.keys.hold(consumer)]
        return int(
            self._call("requeue", lambda: self.fast.evalsha(self._requeue, keys, list(tags)))
        )

    def redeliver(self, consumer: str, tag: str, data: bytes) -> int:
        keys = [self.keys.hold(consumer)]
        return int(
            self._call("redeliver", lambda: self.fast.evalsha(self._redeliver, keys, [tag, data]))
        )

    def heartbeat(self, consumer: str) -> None:
        keys = [self.keys.consumers]
        self._call("heartbeat", lambda: self._heartbeat(keys=keys, args=[consumer]))

    def _run_recover(self, lost_after: float, consumer: str) -> int:
        keys = [self.keys.consumers, self.keys.recovered_at, self.keys.heard_again_at]
        args: list[float | str] = [lost_after, *self.keys.hold_parts(), consumer]
        return int(self._call("recover", lambda: self._recover(keys=keys, args=args)))

    def unregister(self, consumer: str) -> int:
        return self._run_recover(1e12, consumer)

    def recover_lost(self, lost_after: float) -> int:
        return self._run_recover(lost_after, "")

    def move_due(self, now: float, limit: int = 1000) -> int:
        keys = [self.keys.scheduled]
        return int(self._call("move_due", lambda: self._move_due(keys=keys, args=[now, limit])))

    def next_due(self) -> float | None:
        key = self.keys.scheduled
        first = self._call("next_due", lambda: self.client.zrange(key, 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    def wait_schedule_change(self, timeout: float) -> None:
        key = self.keys.schedule_wake
        self._call("wait", lambda: self.client.blpop([key], timeout=max(timeout, 0.01)))

    def purge(self, queues: Sequence[str]) -> int:
        def run() -> int:
            pipe = self.client.pipeline(transaction=True)
            keys = [self.keys.queue(q, p) for q in queues for p in PRIORITIES]
            for key in keys:
                pipe.llen(key)
            pipe.delete(*keys, *map(self.keys.wake, queues), *map(self.keys.levels, queues))
            return sum(int(n) for n in pipe.execute()[:-1])

        return self._call("purge", run)

    def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        def run() -> dict[str, int]:
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                for p in PRIORITIES:
                    pipe.llen(self.keys.queue(queue, p))
            counts = pipe.execute()
            return {q: sum(counts[i * 10 : (i + 1) * 10]) for i, q in enumerate(queues)}

        return self._call("queue_sizes", run)

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    def mailbox(self) -> Any:
        from .mailbox import Mailbox

        return Mailbox(self.client, self.keys)

    def close(self) -> None:
        self.client.close()


def publish_keys(keys: KeySchema, queue: str, priority: int) -> tuple[str, str, str]:
    """The keys ``publish.lua`` takes for ``queue`` at ``priority`` (0-9)."""
    return (keys.queue(queue, priority), keys.wake(queue), keys.levels(queue))


def scheduled_entry(where: tuple[str, str, str], priority: int, data: bytes) -> bytes:
    """A scheduled set's entry: the message after the keys it is published to when due."""
    return SEP.join(part.encode() for part in (*where, str(priority))) + SEP + data


def clamp_priority(priority: int | None) -> int:
    """A message priority within 0-9."""
    return _clamp(priority)


def _clamp(priority: int | None) -> int:
    return min(max(int(priority or 0), 0), 9)
