"""One asyncio connection of our own for the asyncio client's lone publish: a command packed
by :mod:`.wire`, written on an :class:`asyncio.Protocol`, its reply parsed by hiredis. A lone
``await adelay()`` is one EVALSHA; through ``redis.asyncio`` its round trip cost more in
redis-py's per-command machinery (pool, retries, timeouts, encoders) than on the socket.

Only for ``redis://`` and ``unix://`` URLs our client understands (:func:`line_for` says
None otherwise, and for an interpreter without hiredis): everything else stays on
``redis.asyncio``. Replies come back in order; a connection lost fails every command in
flight with :class:`.errors.ConnectionLost` and the next command connects again."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Sequence
from typing import Any

from . import errors
from .resp import Options, reply_error
from .wire import pack_commands

_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - installed with redis[hiredis]
    _hiredis = None


def line_for(url: str) -> AioLine | None:
    """The lean connection for ``url``, or None where only ``redis.asyncio`` will do."""
    from .aioredis import numeric_host
    from .respclient import options_from_url

    if _hiredis is None or not url.startswith(("redis://", "unix://")):
        return None
    options = options_from_url(numeric_host(url) if url.startswith("redis:") else url)
    return None if options is None else AioLine(options)


class _Protocol(asyncio.Protocol):
    """Feeds what arrives to a hiredis reader and settles the waiting replies in order."""

    def __init__(self, waiting: collections.deque[asyncio.Future[Any]]) -> None:
        self.waiting = waiting
        self.reader = _hiredis.Reader(replyError=reply_error)
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while waiting:
            reply = reader.gets()
            if reply is False:
                return
            done = waiting.popleft()
            if done.done():  # its awaiter was cancelled: the reply is dropped
                continue
            if isinstance(reply, Exception):
                done.set_exception(reply)
            else:
                done.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = errors.ConnectionLost(f"Connection closed by server ({exc or 'EOF'})")
        while self.waiting:
            done = self.waiting.popleft()
            if not done.done():
                done.set_exception(self.lost)


class AioLine:
    """One connection, opened on first use (and again after it was lost), sending whole
    commands and awaiting their replies in order."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (an error reply raised, as our Redis error
        classes, as the sync client's are). After a connection error it goes once more on
        a new connection, as redis-py's retry would send it (a publish may then run twice
        if only its reply was lost: at least once, as the sync publish)."""
        packed = pack_commands((args,))
        try:
            return await self._send(await self._connected(), packed)[0]
        except (errors.ConnectionLost, errors.ReplyTimeout):
            await self.aclose()
            return await self._send(await self._connected(), packed)[0]

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        return protocol

    @staticmethod
    def _send(protocol: _Protocol, packed: bytes, replies: int = 1) -> list[asyncio.Future[Any]]:
        """Write ``packed`` (``replies`` commands): the futures of their replies, in order."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(replies)]
        protocol.waiting.extend(futures)
        assert protocol.transport is not None
        protocol.transport.write(packed)
        return futures

    async def _connect(self) -> _Protocol:
        if self._opening is None or self._opening.done():  # one connect for all awaiting
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> _Protocol:
        opts = self.options
        loop = asyncio.get_running_loop()
        waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        try:
            if opts.path is not None:
                opening = loop.create_unix_connection(lambda: _Protocol(waiting), opts.path)
            else:
                opening = loop.create_connection(lambda: _Protocol(waiting), opts.host, opts.port)
            transport, protocol = await asyncio.wait_for(opening, opts.connect_timeout)
        except asyncio.TimeoutError as exc:
            raise errors.ReplyTimeout(f"Timeout connecting to {opts.where()}") from exc
        except OSError as exc:
            raise errors.ConnectionLost(
                f"Error {exc.errno} connecting to {opts.where()}. {exc.strerror}."
            ) from exc
        if opts.path is None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self._handshake(protocol, opts.handshake())
        self._protocol = protocol
        return protocol

    async def _handshake(self, protocol: _Protocol, commands: Sequence[tuple[Any, ...]]) -> None:
        if not commands:
            return
        replies = self._send(protocol, pack_commands(commands), len(commands))
        try:
            for reply in replies:
                await reply
        except BaseException:
            for reply in replies:
                reply.cancel()  # the replies after a refused AUTH are not waited for
            if protocol.transport is not None:  # never left open unauthenticated
                protocol.transport.close()
            raise

    async def aclose(self) -> None:
        """Close the connection (the next command opens a new one)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
