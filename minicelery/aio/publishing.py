"""Publishing from an event loop: the messages the sync code built, on the same keys and
with the same ``publish.lua`` as :class:`~minicelery.broker.redis.RedisBroker`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..broker.base import OutgoingMessage
from ..broker.redis import clamp_priority, publish_keys, scheduled_entry
from ..redislayer import errors
from ..redislayer.aioredis import script_sha
from ..redislayer.keys import KeySchema
from ..redislayer.scripts import script_source


class AsyncPublisher:
    """Sends built messages over one ``redis.asyncio`` client."""

    def __init__(self, client: Any, keys: KeySchema) -> None:
        self.client = client
        self.keys = keys
        self.source = script_source("minicelery.broker", "publish", prelude="common")
        self.sha = script_sha(self.source)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """One EVALSHA for a single message due now; else one pipelined round for all."""
        if not messages:
            return
        try:
            if len(messages) == 1 and not _scheduled(messages[0]):
                await self._publish_one(messages[0])
            else:
                await self._publish_many(messages)
        except errors.RedisError as exc:
            raise errors.translated("publish", exc) from exc

    async def _publish_one(self, msg: OutgoingMessage) -> None:
        level = clamp_priority(msg.priority)
        keys = publish_keys(self.keys, msg.queue, level)
        try:
            await self.client.evalsha(self.sha, 3, *keys, msg.data, level)
        except errors.NoScriptError:  # Redis restarted or was flushed: send it whole
            await self.client.eval(self.source, 3, *keys, msg.data, level)

    async def _publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        await self.client.script_load(self.source)  # a pipeline cannot recover from NOSCRIPT
        pipe = self.client.pipeline(transaction=False)
        schedule_changed = False
        for msg in messages:
            level = clamp_priority(msg.priority)
            where = publish_keys(self.keys, msg.queue, level)
            if _scheduled(msg):
                entry = scheduled_entry(where, level, msg.data)
                pipe.zadd(self.keys.scheduled, {entry: msg.eta})
                schedule_changed = True
            else:
                pipe.evalsha(self.sha, 3, *where, msg.data, level)
        if schedule_changed:
            pipe.lpush(self.keys.schedule_wake, b"1")
            pipe.ltrim(self.keys.schedule_wake, 0, 0)
        await pipe.execute()


def _scheduled(msg: OutgoingMessage) -> bool:
    return msg.eta is not None and msg.eta > time.time()
