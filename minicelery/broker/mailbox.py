"""Remote control over Redis: commands broadcast on a pub/sub channel, replies gathered from a
per-command list, and the revoked-task set that outlives any one worker.

Keys (see :mod:`minicelery.redislayer.keys`): the command channel, one reply list per command
that expects replies, a sorted set of revoked task ids scored by when they may be
forgotten, and a stream of every revoke (ids or stamps) for the prefork children that
consume by themselves: they read it after each reserve, so a task revoked before it was
sent never runs although the command reaches their worker on another connection.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence
from typing import Any

import msgpack

from ..redislayer.errors import translate_errors
from ..redislayer.keys import KeySchema

REPLY_TTL = 60  # seconds a reply list outlives its command, for a slow or absent client
NEWS_KEPT = 1000  # revokes the news stream keeps (about: trimmed when Redis finds it cheap)
NEWS_READ = 100  # revokes read per round trip (the rest with the next)


class Listener:
    """A worker's subscription to the command channel. Subscribe *before* reading the
    revoked set, so a revoke published in between is still seen (one or the other)."""

    def __init__(self, client: Any, channel: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        with translate_errors("subscribing to remote control"):
            self._pubsub.subscribe(channel)

    def get(self, timeout: float) -> bytes | None:
        """The next command, or None after ``timeout`` seconds without one."""
        with translate_errors("reading remote control commands"):
            message = self._pubsub.get_message(timeout=timeout)
        if message is None or message.get("type") != "message":
            return None
        data: bytes = message["data"]
        return data

    def drain(self) -> list[bytes]:
        """Every command already received (on the socket or read into the client's buffer),
        without waiting for more."""
        found: list[bytes] = []
        with translate_errors("reading remote control commands"):
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                if message.get("type") == "message":
                    found.append(message["data"])
        return found

    def fileno(self) -> int | None:
        """The subscription's socket (to see whether a command waits on it), if open."""
        connection = getattr(self._pubsub, "connection", None)
        sock = getattr(connection, "_sock", None)
        return sock.fileno() if isinstance(sock, socket.socket) else None

    def close(self) -> None:
        # Closing a broken subscription has nothing to report.
        with contextlib.suppress(Exception):
            self._pubsub.close()


class Mailbox:
    """The Redis side of ``app.control`` for clients and workers alike."""

    def __init__(self, client: Any, keys: KeySchema) -> None:
        self.client = client
        self.channel = keys.control
        self.revoked_key = keys.revoked
        self.news_key = keys.revoke_news
        self._keys = keys

    def reply_key(self, ticket: str) -> str:
        return self._keys.reply(ticket)

    def publish(
        self,
        command: bytes,
        revoke: Sequence[str] = (),
        keep_for: float = 0,
        news: dict[str, Any] | None = None,
    ) -> int:
        """Broadcast ``command``; ids in ``revoke`` are added to the revoked set in the same
        transaction, so a worker that starts later still skips them. Those ids, or ``news``
        (revoked stamps: ``{"stamps": ..., "to": hostnames or None, "id": ...}``), also go
        to the revoke news. Returns how many workers were listening."""
        with translate_errors("sending a remote control command"):
            pipe = self.client.pipeline(transaction=True)
            self._revokes_into(pipe, revoke, keep_for, news)
            pipe.publish(self.channel, command)
            listeners: int = pipe.execute()[-1]
        return listeners

    def _revokes_into(
        self, pipe: Any, revoke: Sequence[str], keep_for: float, news: dict[str, Any] | None
    ) -> None:
        """The revoked set's and the news' part of :meth:`publish`, added to ``pipe``."""
        now = time.time()
        if revoke:
            pipe.zadd(self.revoked_key, {task_id: now + keep_for for task_id in revoke})
            pipe.zremrangebyscore(self.revoked_key, "-inf", now)
        news = {"ids": list(revoke)} if revoke else news
        if news is not None:
            entry = {"v": msgpack.packb(news, default=str)}
            pipe.xadd(self.news_key, entry, maxlen=NEWS_KEPT, approximate=True)

    def _record_revokes(
        self, revoke: Sequence[str], keep_for: float, news: dict[str, Any] | None
    ) -> None:
        """:meth:`_revokes_into` as a transaction of its own (one slot: see the keys)."""
        with translate_errors("recording revokes"):
            pipe = self.client.pipeline(transaction=True)
            self._revokes_into(pipe, revoke, keep_for, news)
            pipe.execute()

    def revoked(self) -> dict[str, float]:
        """Revoked ids still remembered, with the epoch time each may be forgotten."""
        with translate_errors("reading revoked tasks"):
            pairs = self.client.zrangebyscore(
                self.revoked_key, time.time(), "+inf", withscores=True
            )
        return {task_id.decode(): float(score) for task_id, score in pairs}

    def news_command(self, cursor: str) -> tuple[Any, ...]:
        """The command that reads the revokes after ``cursor`` (a news entry's id, or
        ``<ms>-0`` for those since a time): an empty reply when there are none."""
        ms, _, seq = cursor.partition("-")
        return ("XRANGE", self.news_key, f"{ms}-{int(seq or 0) + 1}", "+", "COUNT", NEWS_READ)

    def news(self, cursor: str, reply: Any) -> tuple[str, list[str], list[dict[str, Any]]]:
        """Read ``news_command``'s reply: the cursor after it, the ids revoked, and the
        stamp revokes (as ``publish`` took them, with ``at``: when Redis added them)."""
        ids: list[str] = []
        stamps: list[dict[str, Any]] = []
        for entry_id, fields in reply or ():
            cursor = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            news = msgpack.unpackb(_field(fields, b"v") or b"\x80")
            ids.extend(news.get("ids") or ())
            if news.get("stamps"):
                stamps.append({**news, "at": int(cursor.partition("-")[0]) / 1000})
        return cursor, ids, stamps

    def listen(self) -> Listener:
        return Listener(self.client, self.channel)

    def reply(self, ticket: str, data: bytes) -> None:
        key = self.reply_key(ticket)
        with translate_errors("replying to a remote control command"):
            self.client.pipeline(transaction=False).rpush(key, data).expire(
                key, REPLY_TTL
            ).execute()

    def collect(self, ticket: str, timeout: float, limit: int | None = None) -> list[bytes]:
        """Replies to ``ticket`` until ``limit`` have come or ``timeout`` seconds passed."""
        key = self.reply_key(ticket)
        replies: list[bytes] = []
        deadline = time.monotonic() + timeout
        with translate_errors("collecting remote control replies"):
            while limit is None or len(replies) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # BLPOP's timeout has a resolution of 10 ms in practice; round up.
                item = self.client.blpop([key], timeout=min(max(left, 0.01), 5.0))
                if item is None:
                    break
                replies.append(item[1])
            self.client.delete(key)
        return replies

    def backlog(self) -> dict[str, int]:
        """Messages waiting per queue, for every queue that has any (whether or not a
        worker reads it), plus ``scheduled`` eta/countdown messages when there are some."""
        sizes: dict[str, int] = {}
        with translate_errors("reading queue sizes"):
            keys = [
                k.decode() for k in self.client.scan_iter(match=self._keys.queue_pattern, count=500)
            ]
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.llen(key)
            pipe.zcard(self._keys.scheduled)
            *counts, scheduled = pipe.execute()
        for key, count in zip(keys, counts, strict=True):
            queue = self._keys.queue_of(key)
            if queue is not None:
                sizes[queue] = sizes.get(queue, 0) + int(count)
        sizes = {queue: count for queue, count in sorted(sizes.items()) if count}
        if scheduled:
            sizes["(scheduled)"] = int(scheduled)
        return sizes


def _field(fields: Any, name: bytes) -> Any:
    """A stream entry's field, from redis-py's dict or the raw ``[name, value, ...]``."""
    if isinstance(fields, dict):
        return fields.get(name)
    pairs = list(fields or ())
    return dict(zip(pairs[::2], pairs[1::2], strict=False)).get(name)


class ClusterMailbox(Mailbox):
    """Remote control on a cluster: the revoked set and its news share a slot and change
    together; the command is published after them (a cluster broadcasts it to every
    node's subscribers)."""

    def publish(
        self,
        command: bytes,
        revoke: Sequence[str] = (),
        keep_for: float = 0,
        news: dict[str, Any] | None = None,
    ) -> int:
        if revoke or news is not None:
            self._record_revokes(revoke, keep_for, news)
        with translate_errors("sending a remote control command"):
            return int(self.client.publish(self.channel, command))
