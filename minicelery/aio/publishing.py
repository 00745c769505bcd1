"""Publishing from an event loop: the messages the sync code built, on the same keys and
with the same ``publish.lua`` as :class:`~minicelery.broker.redis.RedisBroker`.

Sends made at the same time are coalesced: the first starts a flush, and every send made
before that flush runs goes in its one pipelined round trip (the next flush takes what
came meanwhile). A thousand concurrent ``adelay()`` use one connection, not a thousand.
A flush of one message (a lone ``await adelay()``) goes on the publisher's own lean
connection when it has one (:class:`~minicelery.redislayer.aioresp.AioLine`): through
``redis.asyncio`` its round trip cost more in the client than on the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ..broker.base import OutgoingMessage
from ..broker.redis import clamp_priority, publish_keys, scheduled_entry
from ..redislayer import errors
from ..redislayer.aioredis import script_sha
from ..redislayer.aioresp import AioLine
from ..redislayer.keys import KeySchema
from ..redislayer.scripts import script_source

Pending = tuple[Sequence[OutgoingMessage], "asyncio.Future[None]"]


class AsyncPublisher:
    """Sends built messages over one ``redis.asyncio`` client, one flush at a time."""

    def __init__(self, client: Any, keys: KeySchema, line: AioLine | None = None) -> None:
        self.client = client
        self.line = line  # our own connection for a lone publish (None: through ``client``)
        self.keys = keys
        self.source = script_source("minicelery.broker", "publish", prelude="common")
        self.sha = script_sha(self.source)
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loaded = False  # whether Redis is known to have publish.lua
        self._busy = False  # a sender is publishing its lone message itself
        self.flushes = 0  # round trips made (the bench reads it)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish ``messages`` (all, in order) with the sends made at the same time."""
        if not messages:
            return
        flushing = self._busy or (self._flusher is not None and not self._flusher.done())
        alone = len(messages) == 1 and not _scheduled(messages[0])
        if alone and not flushing and self.line is not None:
            await self._publish_alone(self.line, messages[0])
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((messages, done))
        if not flushing:
            self._flusher = asyncio.ensure_future(self._flush_all())
        await done

    async def _publish_alone(self, line: AioLine, msg: OutgoingMessage) -> None:
        """The one message of a send made while nothing else is being sent, published by
        its sender itself: no flushing task to start and switch to (a loop turn each way).
        Sends made meanwhile wait, and are flushed together once it is done. A sender
        cancelled before its message was written (while connecting) has not sent it."""
        self._busy = True
        self.flushes += 1
        level = clamp_priority(msg.priority)
        try:
            await self._publish_on_line(line, publish_keys(self.keys, msg.queue, level),
                                        msg.data, level)  # fmt: skip
        except errors.RedisError as exc:
            raise errors.translated("publish", exc) from exc
        finally:
            self._busy = False
            if self._pending:
                self._flusher = asyncio.ensure_future(self._flush_all())

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._flush([msg for messages, _ in batch for msg in messages])
            except errors.RedisError as exc:
                failure: BaseException = errors.translated("publish", exc)
            except BaseException as exc:  # cancelled, or a bug: the senders must hear it
                failure = exc
            else:
                _settle(batch, None)
                continue
            _settle(batch, failure)

    async def _flush(self, messages: list[OutgoingMessage]) -> None:
        self.flushes += 1
        if not self._loaded:
            await self.client.script_load(self.source)
            self._loaded = True
        if len(messages) == 1 and not _scheduled(messages[0]):  # no pipeline's cost
            await self._publish_one(messages[0])
            return
        pipe = self.client.pipeline(transaction=False)
        sent: list[OutgoingMessage | None] = []  # per command: the message an EVALSHA sends
        for msg in messages:
            level = clamp_priority(msg.priority)
            where = publish_keys(self.keys, msg.queue, level)
            if _scheduled(msg):
                pipe.zadd(self.keys.scheduled, {scheduled_entry(where, level, msg.data): msg.eta})
                sent.append(None)
            else:
                pipe.evalsha(self.sha, 3, *where, msg.data, level)
                sent.append(msg)
        if len(sent) > sum(msg is not None for msg in sent):  # something was scheduled
            pipe.lpush(self.keys.schedule_wake, b"1")
            pipe.ltrim(self.keys.schedule_wake, 0, 0)
        replies = await pipe.execute(raise_on_error=False)
        # Messages whose EVALSHA Redis did not know (restarted or flushed since the script
        # was loaded) go again after loading it; any other error is raised.
        again = [msg for msg, reply in zip(sent, replies, strict=False)
                 if msg is not None and isinstance(reply, errors.NoScriptError)]  # fmt: skip
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, errors.NoScriptError):
                raise reply
        if again:
            self._loaded = False
            await self._flush(again)

    async def _publish_one(self, msg: OutgoingMessage) -> None:
        level = clamp_priority(msg.priority)
        keys = publish_keys(self.keys, msg.queue, level)
        if self.line is not None:
            await self._publish_on_line(self.line, keys, msg.data, level)
            return
        try:
            await self.client.evalsha(self.sha, 3, *keys, msg.data, level)
        except errors.NoScriptError:  # Redis restarted or was flushed: send it whole
            await self.client.eval(self.source, 3, *keys, msg.data, level)

    async def _publish_on_line(
        self, line: AioLine, keys: Sequence[Any], data: bytes, level: int
    ) -> None:
        try:
            await line.execute("EVALSHA", self.sha, 3, *keys, data, level)
        except errors.NoScriptError:  # Redis restarted or was flushed: send it whole
            await line.execute("EVAL", self.source, 3, *keys, data, level)


def _scheduled(msg: OutgoingMessage) -> bool:
    return msg.eta is not None and msg.eta > time.time()


def _settle(batch: list[Pending], failure: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if failure is None:
            done.set_result(None)
        else:
            done.set_exception(failure)
