"""The hot path's wire: commands packed in Redis's protocol by hand and sent on connections
a thread keeps (:class:`FastPath`), or written without waiting for the reply (:class:`Lane`).
redis-py's per-command machinery costs more than a round trip to a local Redis."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import errors, replicas
from .errors import translate_errors

logger = logging.getLogger(__name__)


class _Process:
    """This process's id, kept current by a fork hook: ``os.getpid()`` is a system call,
    and a command on the hot path asked for it five times."""

    pid = os.getpid()


def _forked() -> None:
    _Process.pid = os.getpid()


if hasattr(os, "register_at_fork"):  # absent only where there is no fork either
    os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """``os.getpid()`` without the system call (after a fork, the child's own)."""
    return _Process.pid


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """Commands in Redis's wire format, as redis-py would write them (UTF-8 text, numbers
    as their repr) in a fraction of its time: packing a publish's EVALSHA cost redis-py more
    than the round trip on a local Redis."""
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        _pack_into(append, args)
    return b"".join(out)


def pack_head(total: int, args: Sequence[Any]) -> bytes:
    """The start of one command of ``total`` arguments, the first of them ``args``: a
    caller sending the same command with new last arguments each time (a publish: new
    message, same script and keys) packs the rest once and only appends the new ones."""
    return b"*%d\r\n%b" % (total, pack_args(args))


def pack_args(args: Sequence[Any]) -> bytes:
    """Arguments of a command without its header (the part of it after :func:`pack_head`)."""
    out: list[bytes] = []
    _pack_into(out.append, args)
    return b"".join(out)


def _pack_into(append: Callable[[bytes], None], args: Sequence[Any]) -> None:
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


@functools.lru_cache(maxsize=1024)
def script_head(sha: str, keys: tuple[Any, ...], nargs: int) -> bytes:
    """``EVALSHA sha numkeys keys...`` packed, as the head of a command with ``nargs``
    arguments after the keys."""
    return pack_head(3 + len(keys) + nargs, ("EVALSHA", sha, len(keys), *keys))


@functools.lru_cache(maxsize=1024)
def script_form(sha: str, keys: tuple[Any, ...], nargs: int) -> bytes:
    """The whole command as a %-format of its arguments' lengths and values (see
    :func:`bulk_values`): one formatting per call instead of packing piece by piece."""
    return script_head(sha, keys, nargs).replace(b"%", b"%%") + b"$%d\r\n%b\r\n" * nargs


def bulk_values(args: Sequence[Any]) -> tuple[Any, ...]:
    """``len(data), data`` of each argument as Redis gets it, for :func:`script_form`."""
    out: list[Any] = []
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int or kind is float:
            data = repr(arg).encode()
        else:
            data = _encode_other(arg)
        out += (len(data), data)
    return tuple(out)


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


class Held:
    """A pooled connection kept by one thread; given back to the pool when the thread ends."""

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool = pool
        self.connection = connection
        self.pid = os.getpid()

    def __del__(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):
                self.pool.release(self.connection)


def connected(connection: Any) -> Any:
    """``connection``, connected: a redis-py connection left closed by an error would
    reconnect inside ``send_packed_command`` to the address it had, where a Sentinel-managed
    one must ask the sentinels again (its own ``connect`` does), or it would knock on a dead
    master's door after a failover."""
    if getattr(connection, "_sock", None) is None:
        connection.connect()
    return connection


def get_connection(client: Any) -> Any:
    """A connection of the client's pool, kept by its taker until released."""
    try:
        return client.connection_pool.get_connection()
    except TypeError:  # redis-py < 5.1 wants a command name
        return client.connection_pool.get_connection("_")


def fast_path(client: Any) -> Any:
    """The hot path's wire for ``client``: :class:`FastPath`, or on a Redis Cluster
    :class:`.cluster.ClusterWire` (the same methods, each command routed by its slot)."""
    from .cluster import is_cluster
    from .clusterwire import ClusterWire

    return ClusterWire(client) if is_cluster(client) else FastPath(client)


class FastPath:
    """The hot path (publish, reserve, ack, store a result): commands sent on a connection
    each thread keeps, skipping redis-py's per-command machinery, which costs more than the
    round trip itself. On a connection error the command goes through the ordinary client,
    whose retry policy reconnects with backoff."""

    def __init__(self, client: Any) -> None:
        errors.notice_redis_py()  # a redis-py client handed in: catch its errors too
        self.client = client
        self._local = threading.local()

    def _connection(self) -> Any:
        held: Held | None = getattr(self._local, "held", None)
        if held is None or held.pid != current_pid():
            held = self._local.held = Held(self.client.connection_pool, get_connection(self.client))
        return held.connection

    def execute(
        self, *args: Any, retry: bool = True, packed: bytes | None = None, spin: float = 0.0
    ) -> Any:
        """Run one command; ``retry=False`` for one that must not run twice (a reserve whose
        reply was lost may already have taken messages). ``packed``: the command already in
        wire format (``args`` are still needed, for a retry through the client). ``spin``:
        seconds to look for the reply without sleeping first (a connection of ours only,
        see ``resp.Connection.round_trip``), for a command Redis answers at once."""
        return self._request(packed or pack_commands((args,)), args, retry, spin)

    def _request(self, packed: bytes, args: tuple[Any, ...], retry: bool, spin: float) -> Any:
        connection = self._connection()
        try:
            connected(connection)
            round_trip = getattr(connection, "round_trip", None)  # ours has it, redis-py's not
            if round_trip is not None:
                reply = round_trip(packed, spin)
            else:
                connection.send_packed_command([packed])
                reply = connection.read_response()
        except errors.REDIS_ERRORS:
            connection.disconnect()
            if not retry:
                raise
            return self.client.execute_command(*args)
        self._replicated(connection, (args,))
        return reply

    def _replicated(self, connection: Any, commands: Sequence[Sequence[Any]]) -> None:
        """With replica acknowledgement on (:mod:`.replicas`), WAIT after writes."""
        want = replicas.wanted(self.client)
        if want is not None and replicas.writes(commands):
            replicas.await_replicas(connection, want)

    def pipeline(
        self, commands: Sequence[Sequence[Any]], packed: bytes | None = None,
        abandon_on: tuple[type[Exception], ...] = (), spin: float = 0.0, in_order: bool = False,
        retry: bool = True,
    ) -> list[Any]:  # fmt: skip
        """Send ``commands`` in one write and read their replies (in order on the one
        connection, whatever ``in_order``, which a cluster's wire needs); an error reply is
        returned in place (as the exception), not raised. ``packed``: the commands already
        in wire format (a caller that keeps the unchanging part of them packed).
        ``abandon_on``: errors that, as the first reply, end the pipeline there: the
        connection is closed rather than wait for the rest (a blocking read behind a
        script Redis forgot would sit out its block), and the error is raised. After a
        connection error the commands go again through the client's retry policy: only
        commands that may run twice come here (see :meth:`exchange`), unless ``retry`` is
        False: then it is raised. ``spin``: seconds to
        look for each reply without sleeping first (as for :meth:`execute`)."""
        connection = self._connection()
        try:
            connected(connection).send_packed_command([packed or pack_commands(commands)])
            replies = read_replies(connection, len(commands), spin, abandon_on)
        except errors.REDIS_ERRORS:
            connection.disconnect()
            if not retry:  # it may have run: the caller decides
                raise
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(pipe.execute(raise_on_error=False))
        self._replicated(connection, commands)
        return replies

    def send_ahead(self, packed: bytes) -> None:
        """Write commands (in wire format) whose replies the next :meth:`exchange` reads
        before its own: the first part of a round trip, on its way while the rest is
        built. A connection error closes the connection and is raised."""
        connection = self._connection()
        try:
            connected(connection).send_packed_command([packed])
        except errors.REDIS_ERRORS:
            connection.disconnect()
            raise

    def exchange(self, packed: bytes, replies: int) -> list[Any]:
        """Write ``packed`` and read ``replies`` replies, those of the commands sent ahead
        first; an error reply is returned in place. Never sent again: after a connection
        error (a timeout included) the connection is closed and the error raised: a reply
        that timed out may still come from a Redis that hung, and the commands run then,
        on the connection given up (a reserve sent again would take a second batch nobody
        runs)."""
        connection = self._connection()
        try:
            connected(connection).send_packed_command([packed])
            got = read_replies(connection, replies)
        except errors.REDIS_ERRORS:
            connection.disconnect()
            raise
        self._replicated(connection, (("EXCHANGE",),))  # a reserve, stores, acks: writes
        return got

    def evalsha(
        self,
        script: Any,
        keys: Sequence[Any],
        args: Sequence[Any],
        retry: bool = True,
        same_keys: bool = False,
        spin: float = 0.0,
    ) -> Any:
        """Run a script by its SHA. ``same_keys``: these keys come again and again (a
        publish to one queue), so the command up to its arguments is packed once for them.
        ``spin``: as for :meth:`execute`."""
        try:
            return self._evalsha(script.sha, keys, args, retry, same_keys, spin)
        except errors.NoScriptError:
            # A restarted or flushed Redis forgot the script: load it again, once.
            script.sha = self.client.script_load(script.script)
            return self._evalsha(script.sha, keys, args, retry, same_keys, spin)

    def _evalsha(
        self,
        sha: str,
        keys: Sequence[Any],
        args: Sequence[Any],
        retry: bool,
        same_keys: bool,
        spin: float,
    ) -> Any:
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        if not same_keys:
            return self._request(pack_commands((command,)), command, retry, spin)
        packed = script_form(sha, tuple(keys), len(args)) % bulk_values(args)
        return self._request(packed, command, retry, spin)


def read_replies(
    connection: Any, count: int, spin: float = 0.0,
    abandon_on: tuple[type[Exception], ...] = (),
) -> list[Any]:  # fmt: skip
    """The next ``count`` replies, an error reply in place (see :meth:`FastPath.pipeline`
    for ``spin`` and ``abandon_on``)."""
    replies: list[Any] = []
    look = getattr(connection, "await_reply", None) if spin else None  # ours only
    for _ in range(count):
        try:
            if look is not None:
                look(spin)
            replies.append(connection.read_response())
        except errors.REDIS_ERRORS:
            raise  # (a demoted master's READONLY too: redis-py's is also a ResponseError)
        except errors.ResponseError as exc:
            if not replies and isinstance(exc, abandon_on):
                connection.disconnect()
                raise
            replies.append(exc)
    return replies


class Lane:
    """A connection used without waiting: commands are written at once and their replies
    read later, in order, when the socket is readable, so a worker's main loop never stalls
    on a round trip to store results or acknowledge. Only idempotent commands travel here
    (result stores, acks): after a connection error everything unconfirmed is sent again."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.connection = get_connection(client)
        self.pending: collections.deque[tuple[tuple[Any, ...], Any]] = collections.deque()
        self.broken = False
        self.sent = 0  # commands handed to send() so far
        self.confirmed = 0  # of those, how many Redis has answered (a reload counts as sent)

    def fileno(self) -> int | None:
        sock = getattr(self.connection, "_sock", None)
        return sock.fileno() if isinstance(sock, socket.socket) else None

    def send(self, commands: Sequence[tuple[tuple[Any, ...], Any]]) -> None:
        """Write ``(args, script)`` pairs; ``script`` (or None) is reloaded on NOSCRIPT."""
        want = replicas.wanted(self.client)
        if want is not None:  # its reply is read (and counted) like the others'
            commands = [*commands, (replicas.wait_command(want), None)]
        self.pending.extend(commands)
        self.sent += len(commands)
        with translate_errors("send"):
            try:
                if self.broken:
                    self._resend()
                else:
                    self._write([args for args, _ in commands])
            except errors.REDIS_ERRORS:
                self.broken = True
                raise

    def read(self, block: bool = False, timeout: float | None = None) -> None:
        """Read the replies that have arrived (with ``block``, all of them, waiting up to
        ``timeout`` seconds in all when given). After a connection error, first sends again
        everything still unconfirmed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with translate_errors("read replies"):
            try:
                if self.broken:
                    self._resend()
                while self.pending and self._can_read(block, deadline):
                    self._read_one()
            except errors.REDIS_ERRORS:
                self.broken = True
                raise

    def _can_read(self, block: bool, deadline: float | None) -> bool:
        if not block:
            return bool(self.connection.can_read(timeout=0))
        if deadline is None:
            return True
        return bool(self.connection.can_read(timeout=max(0.0, deadline - time.monotonic())))

    def _write(self, commands: list[tuple[Any, ...]]) -> None:
        # No health check: it would PING and wait for the answer, and a lane never waits.
        connected(self.connection).send_packed_command(
            [pack_commands(commands)], check_health=False
        )

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
        except errors.NoScriptError:
            self.pending.popleft()
            self.confirmed += 1
            # A restarted Redis forgot the script: send it whole (EVAL caches it again),
            # never a SCRIPT LOAD to wait for on the caller's loop.
            self.send([(("EVAL", script.script, *args[2:]), script)])
            return
        except errors.REDIS_ERRORS:
            raise  # a demoted master's READONLY: sent again to the new one
        except errors.ResponseError as exc:
            logger.error("Redis refused %s: %s", args[0], exc)
        self.pending.popleft()
        self.confirmed += 1

    def close(self) -> None:
        self.connection.disconnect()
