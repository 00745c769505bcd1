"""The Redis broker: reliable queues with priorities, a scheduled set and dead letters.

Layout under the prefix ``{p}`` (a hash tag, so every key lands in one Cluster slot):
``{p}:q:<queue>:<0-9>`` lists per priority, ``{p}:wake:<queue>`` wake-up tokens that idle
workers block on, ``{p}:hold:<consumer>`` what each consumer has reserved, ``{p}:consumers``
heartbeats, ``{p}:scheduled`` eta/countdown messages, ``{p}:dead`` dead letters.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import msgpack
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..exceptions import OperationalError
from .base import Broker, DeadLetter, Delivery, OutgoingMessage

logger = logging.getLogger(__name__)

PRIORITIES = range(10)
SEP = b"\0"
T = TypeVar("T")

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


def client_from_url(
    url: str, *, retries: int = 3, socket_timeout: float | None = 10.0
) -> redis.Redis:
    """A redis-py client for a ``redis://``, ``rediss://`` or ``unix://`` URL, retrying
    connection errors with exponential backoff before giving up."""
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    return redis.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=list(REDIS_ERRORS),
        socket_timeout=socket_timeout,
        socket_connect_timeout=4.0,
        health_check_interval=30,
    )


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn redis-py's errors into minicelery's, at the boundary."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise OperationalError(f"{what}: Redis is unreachable ({exc})") from exc
    except redis.RedisError as exc:
        raise OperationalError(f"{what}: Redis error ({exc})") from exc


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """Commands in Redis's wire format, as redis-py would write them (UTF-8 text, numbers
    as their repr) in a fraction of its time: packing a publish's EVALSHA cost redis-py more
    than the round trip on a local Redis."""
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            kind = type(arg)  # exact types first: they are nearly all there is
            if kind is str:
                data = arg.encode()
            elif kind is bytes:
                data = arg
            elif kind is int or kind is float:
                data = repr(arg).encode()
            else:
                data = _encode_other(arg)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(out)


def _encode_other(arg: Any) -> bytes:
    if isinstance(arg, (bytes, bytearray)):
        return bytes(arg)
    if isinstance(arg, str):
        return str(arg).encode()
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return repr(arg).encode()
    if isinstance(arg, memoryview):
        return arg.tobytes()
    raise TypeError(f"cannot send {type(arg).__name__} {arg!r} to Redis")


class _Held:
    """A pooled connection kept by one thread; given back to the pool when the thread ends."""

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool = pool
        self.connection = connection
        self.pid = os.getpid()

    def __del__(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):
                self.pool.release(self.connection)


def _get_connection(client: redis.Redis) -> Any:
    """A connection of the client's pool, kept by its taker until released."""
    try:
        return client.connection_pool.get_connection()
    except TypeError:  # redis-py < 5.1 wants a command name
        return client.connection_pool.get_connection("_")


class FastPath:
    """The hot path (publish, reserve, ack, store a result): commands sent on a connection
    each thread keeps, skipping redis-py's per-command machinery, which costs more than the
    round trip itself. On a connection error the command goes through the ordinary client,
    whose retry policy reconnects with backoff."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._local = threading.local()

    def _connection(self) -> Any:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            held = self._local.held = _Held(
                self.client.connection_pool, _get_connection(self.client)
            )
        return held.connection

    def execute(self, *args: Any, retry: bool = True) -> Any:
        """Run one command; ``retry=False`` for one that must not run twice (a reserve whose
        reply was lost may already have taken messages)."""
        connection = self._connection()
        try:
            connection.send_packed_command([pack_commands((args,))])
            return connection.read_response()
        except REDIS_ERRORS:
            connection.disconnect()
            if not retry:
                raise
            return self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies; an error reply is
        returned in place (as the exception), not raised."""
        connection = self._connection()
        try:
            connection.send_packed_command([pack_commands(commands)])
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except REDIS_ERRORS:
            connection.disconnect()
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute(raise_on_error=False))

    def evalsha(
        self, script: Any, keys: Sequence[Any], args: Sequence[Any], retry: bool = True
    ) -> Any:
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args, retry=retry)
        except redis.exceptions.NoScriptError:
            # A restarted or flushed Redis forgot the script: load it again, once.
            script.sha = self.client.script_load(script.script)
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args, retry=retry)


class Lane:
    """A connection used without waiting: commands are written at once and their replies
    read later, in order, when the socket is readable, so a worker's main loop never stalls
    on a round trip to store results or acknowledge. Only idempotent commands travel here
    (result stores, acks): after a connection error everything unconfirmed is sent again."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.connection = _get_connection(client)
        self.pending: collections.deque[tuple[tuple[Any, ...], Any]] = collections.deque()
        self.broken = False
        self.sent = 0  # commands handed to send() so far
        self.confirmed = 0  # of those, how many Redis has answered (a reload counts as sent)

    def fileno(self) -> int | None:
        sock = getattr(self.connection, "_sock", None)
        return sock.fileno() if isinstance(sock, socket.socket) else None

    def send(self, commands: Sequence[tuple[tuple[Any, ...], Any]]) -> None:
        """Write ``(args, script)`` pairs; ``script`` (or None) is reloaded on NOSCRIPT."""
        self.pending.extend(commands)
        self.sent += len(commands)
        with translate_errors("send"):
            try:
                if self.broken:
                    self._resend()
                else:
                    self._write([args for args, _ in commands])
            except REDIS_ERRORS:
                self.broken = True
                raise

    def read(self, block: bool = False) -> None:
        """Read the replies that have arrived (all of them with ``block``). After a
        connection error, first sends again everything still unconfirmed."""
        with translate_errors("read replies"):
            try:
                if self.broken:
                    self._resend()
                while self.pending and (block or self.connection.can_read(timeout=0)):
                    self._read_one()
            except REDIS_ERRORS:
                self.broken = True
                raise

    def _write(self, commands: list[tuple[Any, ...]]) -> None:
        self.connection.send_packed_command([pack_commands(commands)])

    def _resend(self) -> None:
        self.connection.disconnect()
        if self.pending:
            self._write([args for args, _ in self.pending])
        else:
            self.connection.connect()
        self.broken = False

    def _read_one(self) -> None:
        args, script = self.pending[0]
        try:
            self.connection.read_response()
        except redis.exceptions.NoScriptError:
            self.pending.popleft()
            self.confirmed += 1
            script.sha = self.client.script_load(script.script)
            self.send([(("EVALSHA", script.sha, *args[2:]), script)])
            return
        except redis.ResponseError as exc:
            logger.error("Redis refused %s: %s", args[0], exc)
        self.pending.popleft()
        self.confirmed += 1

    def close(self) -> None:
        self.connection.disconnect()


def load_script(name: str) -> str:
    """A script's source, after the helpers every broker script shares."""
    scripts = resources.files("minicelery.broker").joinpath("scripts")
    return scripts.joinpath("common.lua").read_text() + scripts.joinpath(f"{name}.lua").read_text()


class Keys:
    """Every Redis key of one prefix is built here."""

    def __init__(self, prefix: str) -> None:
        self.base = "{" + prefix + "}"

    def __call__(self, *parts: str) -> str:
        return ":".join((self.base, *parts))

    def queue(self, queue: str, priority: int) -> str:
        return self("q", queue, str(priority))

    def wake(self, queue: str) -> str:
        return self("wake", queue)

    def levels(self, queue: str) -> str:
        """The set of a queue's non-empty priority levels (spares a reserve ten LPOPs)."""
        return self("levels", queue)

    def hold(self, consumer: str) -> str:
        return self("hold", consumer)


class RedisBroker(Broker):
    """A :class:`Broker` over one Redis client (real, embedded or fake)."""

    def __init__(self, client: redis.Redis, prefix: str = "minicelery") -> None:
        self.client = client
        self.keys = Keys(prefix)
        register = client.register_script
        self._reserve = register(load_script("reserve"))
        self._publish = register(load_script("publish"))
        self._requeue = register(load_script("requeue"))
        self._recover = register(load_script("recover"))
        self._move_due = register(load_script("move_due"))
        self._heartbeat = register(load_script("heartbeat"))
        self._rotation = 0
        self.fast = FastPath(client)
        self._waiting: _Held | None = None
        self._chained: tuple[str, ...] | None = None  # queues of a reserve sent after a wait
        self._blocking = False  # whether a BLPOP leads what the waiting connection awaits

    def _call(self, what: str, func: Callable[[], T]) -> T:
        with translate_errors(what):
            return func()

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _publish_keys(self, queue: str, priority: int) -> tuple[str, str, str]:
        return (self.keys.queue(queue, priority), self.keys.wake(queue), self.keys.levels(queue))

    def _entry(self, queue: str, priority: int, data: bytes) -> bytes:
        """How a scheduled (or held) message remembers where it goes back to."""
        where = (*self._publish_keys(queue, priority), str(priority))
        return SEP.join(part.encode() for part in where) + SEP + data

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if len(messages) == 1 and (messages[0].eta is None or messages[0].eta <= time.time()):
            # The common case, one command: a pipeline would add a SCRIPT EXISTS round trip.
            msg = messages[0]
            priority = _clamp(msg.priority)
            keys = self._publish_keys(msg.queue, priority)
            args = [msg.data, priority]
            self._call("publish", lambda: self.fast.evalsha(self._publish, keys, args))
            return

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            schedule_changed = False
            for msg in messages:
                priority = _clamp(msg.priority)
                if msg.eta is not None and msg.eta > time.time():
                    pipe.zadd(
                        self.keys("scheduled"),
                        {self._entry(msg.queue, priority, msg.data): msg.eta},
                    )
                    schedule_changed = True
                else:
                    keys = self._publish_keys(msg.queue, priority)
                    self._publish(keys=keys, args=[msg.data, priority], client=pipe)
            if schedule_changed:
                pipe.lpush(self.keys("schedwake"), b"1")
                pipe.ltrim(self.keys("schedwake"), 0, 0)
            pipe.execute()

        self._call("publish", run)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a broker lives as long as its app
    def _queue_keys(self, queues: tuple[str, ...]) -> list[str]:
        keys: list[str] = []
        for queue in queues:
            keys.extend(self.keys.queue(queue, p) for p in PRIORITIES)
            keys.append(self.keys.levels(queue))
            keys.append(self.keys.wake(queue))
        return keys

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

    def bump(self, name: str, ttl: float) -> int:
        key = self.keys("count", name)
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

    def _reserve_call(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str]
    ) -> tuple[list[str], list[Any]]:
        keys = self._reserve_keys(consumer, self._ordered(queues))
        return [*keys], [consumer, max(count, 0), *ack]

    def _ordered(self, queues: Sequence[str]) -> tuple[str, ...]:
        """The queues in the order of the next reserve: rotated each time, so one busy queue
        cannot starve the others."""
        self._rotation = (self._rotation + 1) % max(len(queues), 1)
        return tuple(queues[self._rotation :]) + tuple(queues[: self._rotation])

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _reserve_keys(self, consumer: str, ordered: tuple[str, ...]) -> tuple[str, ...]:
        return (
            self.keys.hold(consumer),
            self.keys("seq"),
            self.keys("consumers"),
            *self._queue_keys(ordered),
        )

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
        self, queues: Sequence[str], timeout: float, reserve_for: tuple[str, int] | None = None
    ) -> int | None:
        """Send the BLPOP of :meth:`wait` without waiting for its reply; return a file
        descriptor that becomes readable when it is there, so one select() can watch the
        broker and a worker's children together. None when the client has no real socket
        (``memory://``): use :meth:`wait` in a thread instead.

        With ``reserve_for``, the reserve script is sent right behind the BLPOP on the same
        connection: Redis runs it the moment the BLPOP returns, so a woken worker has its
        messages without another round trip. If the wait is abandoned after that reserve
        ran, the messages sit in the consumer's hold like those of any reserve whose reply
        was lost, and are given back the same way."""
        wait = (tuple(queues), max(timeout, 0.01))
        if reserve_for is None or reserve_for[1] <= 0 or not queues:
            return self._send_waiting(self._packed(wait, None), blocking=True, chained=None)
        consumer, count = reserve_for
        packed = self._packed(wait, (self._reserve.sha, consumer, self._ordered(queues), count))
        return self._send_waiting(packed, blocking=True, chained=tuple(queues))

    def reserve_start(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> int | None:
        """Send a reserve (acknowledging ``ack`` first, in the same script) without waiting
        for its reply; the returned file descriptor becomes readable when it is there, and
        :meth:`wait_finish` reads the messages. A busy worker so never stalls its main loop
        on a reserve round trip. None without a real socket."""
        reserve = (self._reserve.sha, consumer, self._ordered(queues), count)
        if ack:  # tags differ every time: nothing to cache
            packed = pack_commands([self._reserve_command(*reserve, ack)])
        else:
            packed = self._packed(None, reserve)
        return self._send_waiting(packed, blocking=False, chained=tuple(queues))

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a broker lives as long as its app
    def _packed(
        self,
        wait: tuple[tuple[str, ...], float] | None,
        reserve: tuple[str, str, tuple[str, ...], int] | None,
    ) -> bytes:
        """The wire bytes of a wait ``(queues, timeout)`` and/or a reserve ``(script sha,
        consumer, queues in order, count)``. A worker sends the same few after every task,
        and packing the reserve's dozens of keys cost more than sending them."""
        commands: list[tuple[Any, ...]] = []
        if wait is not None:
            commands.append(("BLPOP", *(self.keys.wake(q) for q in wait[0]), wait[1]))
        if reserve is not None:
            commands.append(self._reserve_command(*reserve))
        return pack_commands(commands)

    def _reserve_command(
        self, sha: str, consumer: str, ordered: tuple[str, ...], count: int, ack: Sequence[str] = ()
    ) -> tuple[Any, ...]:
        keys = self._reserve_keys(consumer, ordered)
        return ("EVALSHA", sha, len(keys), *keys, consumer, max(count, 0), *ack)

    def _send_waiting(
        self, packed: bytes, blocking: bool, chained: tuple[str, ...] | None
    ) -> int | None:
        if self._waiting is None or self._waiting.pid != os.getpid():
            self._waiting = _Held(self.client.connection_pool, _get_connection(self.client))
        connection = self._waiting.connection
        with translate_errors("wait"):
            connection.connect()
            sock = getattr(connection, "_sock", None)
            if not isinstance(sock, socket.socket):
                return None
            self._blocking, self._chained = blocking, chained
            connection.send_packed_command([packed])
        return sock.fileno()

    def wait_finish(self) -> list[Delivery]:
        """Read the replies of :meth:`wait_start` or :meth:`reserve_start`: the messages
        their reserve took."""
        assert self._waiting is not None
        connection = self._waiting.connection
        try:
            with translate_errors("wait"):
                if self._blocking:
                    connection.read_response()
                queues, self._chained = self._chained, None
                if queues is None:
                    return []
                try:
                    flat = connection.read_response()
                except redis.exceptions.NoScriptError:
                    # A restarted Redis forgot the script: nothing was taken; load it again
                    # for the next reserve.
                    self._reserve.sha = self.client.script_load(self._reserve.script)
                    return []
                return self._deliveries(flat, queues)
        except OperationalError:
            connection.disconnect()
            raise

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

    def heartbeat(self, consumer: str) -> None:
        keys = [self.keys("consumers")]
        self._call("heartbeat", lambda: self._heartbeat(keys=keys, args=[consumer]))

    def _run_recover(self, lost_after: float, consumer: str) -> int:
        keys = [self.keys("consumers")]
        args: list[float | str] = [lost_after, self.keys.hold(""), consumer]
        return int(self._call("recover", lambda: self._recover(keys=keys, args=args)))

    def unregister(self, consumer: str) -> int:
        return self._run_recover(1e12, consumer)

    def recover_lost(self, lost_after: float) -> int:
        return self._run_recover(lost_after, "")

    def move_due(self, now: float, limit: int = 1000) -> int:
        keys = [self.keys("scheduled")]
        return int(self._call("move_due", lambda: self._move_due(keys=keys, args=[now, limit])))

    def next_due(self) -> float | None:
        first = self._call(
            "next_due", lambda: self.client.zrange(self.keys("scheduled"), 0, 0, withscores=True)
        )
        return float(first[0][1]) if first else None

    def wait_schedule_change(self, timeout: float) -> None:
        key = self.keys("schedwake")
        self._call("wait", lambda: self.client.blpop([key], timeout=max(timeout, 0.01)))

    def dead_letter(self, consumer: str, delivery: Delivery, letter: DeadLetter) -> None:
        record = msgpack.packb(
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

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys("dead"), letter.id, record)
            pipe.zadd(self.keys("dead", "index"), {letter.id: letter.when})
            pipe.hdel(self.keys.hold(consumer), delivery.tag)
            pipe.execute()

        self._call("dead_letter", run)

    def dead_letters(self) -> list[DeadLetter]:
        def run() -> list[Any]:
            ids: list[Any] = list(self.client.zrange(self.keys("dead", "index"), 0, -1))
            return list(self.client.hmget(self.keys("dead"), ids)) if ids else []

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
                pipe.hdel(self.keys("dead"), letter.id)
                pipe.zrem(self.keys("dead", "index"), letter.id)
            pipe.execute()

        self._call("replay_dead", run)
        return len(letters)

    def purge_dead(self) -> int:
        def run() -> int:
            pipe = self.client.pipeline(transaction=True)
            pipe.hlen(self.keys("dead"))
            pipe.delete(self.keys("dead"), self.keys("dead", "index"))
            return int(pipe.execute()[0])

        return self._call("purge_dead", run)

    def purge(self, queues: Sequence[str]) -> int:
        def run() -> int:
            pipe = self.client.pipeline(transaction=True)
            keys = [self.keys.queue(q, p) for q in queues for p in PRIORITIES]
            for key in keys:
                pipe.llen(key)
            pipe.delete(
                *keys, *(self.keys.wake(q) for q in queues), *(self.keys.levels(q) for q in queues)
            )
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


def _clamp(priority: int | None) -> int:
    return min(max(int(priority or 0), 0), 9)
