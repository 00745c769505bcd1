"""Blocking pops on keys of several cluster slots at once, without polling.

One ``BLPOP`` cannot name keys of different slots, and a worker's queues live on several
shards. So each key gets a connection of its own, to the master of its slot, with its
``BLPOP`` sent and not waited for, and one ``epoll`` descriptor watches them all: a caller's
``select()`` sees it readable the moment any of the pops ends. A pop still pending when
another ended is kept for the next wait rather than sent again.

A pop answered by MOVED or ASK (its slot is moving), or a connection lost (a master failed
over), asks redis-py for the slot map again; the caller's next command goes through redis-py,
which follows the cluster by itself.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Sequence
from typing import Any

from . import errors
from .cluster import get_connection_of, node_client, refresh_slots


class _Pop:
    """One pending ``BLPOP``: its connection and the pool it goes back to."""

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool = pool
        self.connection = connection

    def fileno(self) -> int:
        return int(self.connection._sock.fileno())

    def closed(self) -> bool:
        """Whether its connection was closed under it: redis-py's refresh of the slot map
        closes every connection to a node that left the map, a pending pop's too."""
        return getattr(self.connection, "_sock", None) is None

    def release(self, broken: bool = False) -> None:
        if broken:
            self.connection.disconnect()
        with contextlib.suppress(Exception):
            self.pool.release(self.connection)


class SlotWaits:
    """Pending pops by key, watched through one ``epoll`` descriptor (Linux)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pid = os.getpid()
        self._pending: dict[str, _Pop] = {}
        self._epoll: Any = None

    @staticmethod
    def available() -> bool:
        return hasattr(select, "epoll")

    def start(self, keys: Sequence[str], timeout: float) -> int:
        """Make sure a pop waits on each of ``keys`` (at most ``timeout`` seconds); the
        descriptor that becomes readable when one of them ends."""
        self._fork_check()
        if self._epoll is None:
            self._epoll = select.epoll()
        for key in keys:
            if key not in self._pending:
                self._pending[key] = self._send(key, timeout)
                self._epoll.register(self._pending[key].fileno(), select.EPOLLIN)
        return int(self._epoll.fileno())

    def _send(self, key: str, timeout: float) -> _Pop:
        pool = node_client(self.client, key).connection_pool
        pop = _Pop(pool, get_connection_of(pool))
        try:
            pop.connection.connect()
            pop.connection.send_command("BLPOP", key, max(timeout, 0.01), check_health=False)
        except errors.REDIS_ERRORS:
            pop.release(broken=True)
            refresh_slots(self.client)
            raise
        return pop

    def finish(self) -> bool | None:
        """Read the pops that ended: True if one of them took a token, False if they only
        timed out, None if none has ended yet. A lost connection is raised."""
        ended: bool | None = None
        ready = {fd for fd, _ in self._epoll.poll(0)} if self._epoll is not None else set()
        for key, pop in list(self._pending.items()):
            if pop.closed():  # its master died, and a refresh of the slot map closed it
                self._forget(key)
                pop.release(broken=True)
                refresh_slots(self.client)
                raise errors.ConnectionLost(f"the wait on {key} lost its connection")
            if pop.fileno() not in ready:
                continue
            self._forget(key)
            broken = False
            try:
                reply = pop.connection.read_response()
            except errors.REDIS_ERRORS:
                pop.release(broken=True)
                refresh_slots(self.client)
                raise
            except errors.ResponseError:  # MOVED, ASK, CLUSTERDOWN: the map changed
                refresh_slots(self.client)
                reply, broken = True, True
            pop.release(broken)
            ended = bool(ended) or reply is not None
        return ended

    def abort(self) -> None:
        """Give up every pending pop (its connection is closed, not reused)."""
        for key in list(self._pending):
            pop = self._pending[key]
            self._forget(key)
            pop.release(broken=True)

    def _forget(self, key: str) -> None:
        pop = self._pending.pop(key)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._epoll.unregister(pop.fileno())

    def _fork_check(self) -> None:
        """A forked child never touches its parent's pending pops."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._pending = {}
            self._epoll = None
