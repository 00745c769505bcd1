"""Pub/sub for our Redis client (:mod:`.respclient`): what a worker's remote-control listener
asks of redis-py's ``PubSub``, on one :class:`.resp.Connection` of its own, so the worker's
main process needs no redis-py.

As redis-py's: ``subscribe``/``psubscribe`` (and their ``un``-), ``get_message(timeout)``
returning message dicts or None, ``listen``, ``close``, the socket as ``connection._sock``,
a PING when the subscription has been quiet for :data:`HEALTH_CHECK` seconds, and the
subscriptions sent again on a new connection after the old one was lost.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import errors
from .resp import Connection, Options
from .wire import pack_commands

HEALTH_CHECK = 30.0  # seconds of silence after which a PING goes out (redis-py's default)
HEALTH_TOKEN = b"minicelery-health-check"  # the PING's argument: its pong is not a message
SUBSCRIBE_TYPES = {"subscribe", "unsubscribe", "psubscribe", "punsubscribe"}
LOST = (errors.ConnectionLost, errors.ReplyTimeout)


class PubSub:
    """Subscriptions on one connection (opened by the first subscribe). Safe to share
    between threads: reading is one thread at a time, and no thread holds the others off
    while it waits for a message."""

    def __init__(self, options: Options, ignore_subscribe_messages: bool = False) -> None:
        self.options = options
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.connection: Connection | None = None
        self.channels: dict[bytes, None] = {}  # ordered sets: subscribed again in order
        self.patterns: dict[bytes, None] = {}
        self._lock = threading.Lock()
        self._quiet_since = time.monotonic()

    def __enter__(self) -> PubSub:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns)

    def subscribe(self, *channels: Any) -> None:
        self._change("SUBSCRIBE", self.channels, channels, add=True)

    def psubscribe(self, *patterns: Any) -> None:
        self._change("PSUBSCRIBE", self.patterns, patterns, add=True)

    def unsubscribe(self, *channels: Any) -> None:
        self._change("UNSUBSCRIBE", self.channels, channels or tuple(self.channels), add=False)

    def punsubscribe(self, *patterns: Any) -> None:
        self._change("PUNSUBSCRIBE", self.patterns, patterns or tuple(self.patterns), add=False)

    def _change(self, command: str, names: dict[bytes, None], given: Any, add: bool) -> None:
        """Send ``command`` for ``given`` and record the change (before the reply: after a
        reconnect the subscriptions are sent again from the record)."""
        encoded = [_encode(name) for name in given]
        with self._lock:
            for name in encoded:
                if add:
                    names[name] = None
                else:
                    names.pop(name, None)
            connection, fresh = self._connected()
            if fresh or not encoded:  # a fresh connection was just sent them all
                return
            try:
                self._send(connection, [(command, *encoded)])
            except LOST:
                self._connected()

    def _connected(self) -> tuple[Connection, bool]:
        """The connection, opened (and every subscription sent) when there is none or the
        last one was lost; and whether it was just opened."""
        connection = self.connection
        if connection is not None and connection._sock is not None and _ours(connection):
            return connection, False
        connection = self.connection = connection or Connection(self.options)
        connection.disconnect()
        commands: list[tuple[Any, ...]] = []
        if self.channels:
            commands.append(("SUBSCRIBE", *self.channels))
        if self.patterns:
            commands.append(("PSUBSCRIBE", *self.patterns))
        self._send(connection, commands)
        return connection, True

    def _send(self, connection: Connection, commands: list[tuple[Any, ...]]) -> None:
        # No idle check before the write: on a subscribed connection, readable means a
        # message waits, not that Redis closed it.
        if commands:
            connection.send_packed_command([pack_commands(commands)], check_health=False)
        else:
            connection.connect()
        self._quiet_since = time.monotonic()

    def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None:
        """The next message, waiting up to ``timeout`` seconds (None: until one comes), or
        None. A lost connection is opened again at once and the subscriptions sent again;
        the error is raised only when that fails too."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ignore = ignore_subscribe_messages or self.ignore_subscribe_messages
        while self._wait(deadline):
            message = self._take()
            if message is not None and not (ignore and message["type"] in SUBSCRIBE_TYPES):
                return message
        return None

    def _wait(self, deadline: float | None) -> bool:
        """Whether a reply is there to read (buffered or on the socket) before ``deadline``.
        The wait holds no lock: another thread may read the reply meanwhile."""
        while self.subscribed:
            with self._lock:
                connection, _ = self._connected()
                self._check_health(connection)
                if connection.buffered():
                    return True
                sock = connection._sock
                assert sock is not None  # just connected
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                if select.select([sock], [], [], left)[0]:
                    return True
            except (OSError, ValueError, TypeError):  # closed meanwhile: _take sees to it
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return False

    def _take(self) -> dict[str, Any] | None:
        """The reply waiting, as a message (None if another thread took it first, or it was
        a health check's)."""
        with self._lock:
            if not self.subscribed:
                return None
            connection, _ = self._connected()
            try:
                if not connection.can_read(0):
                    return None
                message = _message(connection.read_response())
            except LOST:
                # The connection is gone (Redis restarted, a network blip): a new one gets
                # every subscription again, or the error is raised if Redis is away.
                connection.disconnect()
                self._connected()
                return None
            self._quiet_since = time.monotonic()
            return message

    def _check_health(self, connection: Connection) -> None:
        if time.monotonic() - self._quiet_since < HEALTH_CHECK:
            return
        try:
            self._send(connection, [("PING", HEALTH_TOKEN)])
        except LOST:
            self._connected()

    def listen(self) -> Iterator[dict[str, Any]]:
        """Messages as they come, for as long as something is subscribed."""
        while self.subscribed:
            message = self.get_message(timeout=None)
            if message is not None:
                yield message

    def close(self) -> None:
        with self._lock:
            connection, self.connection = self.connection, None
            self.channels, self.patterns = {}, {}
        if connection is not None:
            connection.disconnect()

    reset = close


def _ours(connection: Connection) -> bool:
    """Whether ``connection`` was opened by this process (not a parent's, before a fork)."""
    return connection._pid == os.getpid()


def _encode(name: Any) -> bytes:
    return name if isinstance(name, bytes) else str(name).encode()


def _message(reply: Any) -> dict[str, Any] | None:
    """redis-py's message dict for a subscribed connection's ``reply``; None for the pong
    of a health check."""
    kind = reply[0].decode() if isinstance(reply, list) and reply else ""
    if kind == "pong":
        data = reply[1] if len(reply) > 1 else b""
        if data == HEALTH_TOKEN:
            return None
        return {"type": kind, "pattern": None, "channel": None, "data": data}
    if kind == "pmessage":
        return {"type": kind, "pattern": reply[1], "channel": reply[2], "data": reply[3]}
    if kind in ("message", *SUBSCRIBE_TYPES):
        return {"type": kind, "pattern": None, "channel": reply[1], "data": reply[2]}
    raise errors.ConnectionLost(f"Protocol error: unexpected pub/sub reply {reply!r:.80}")
