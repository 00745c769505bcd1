"""The Redis broker's idle wait: a BLPOP on the queues' wake-up tokens, sent without waiting
for its reply on a connection of its own, with the next reserve chained behind it (and the
consumer's last results and acknowledgements ahead of it), so one select() can watch Redis
and a worker's children together."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Sequence
from typing import Any

from ..exceptions import OperationalError
from ..redislayer.errors import NoScriptError, ResponseError, translate_errors
from ..redislayer.keys import KeySchema
from ..redislayer.wire import Held, get_connection, pack_commands
from .base import Delivery


class IdleWait:
    """The waiting half of :class:`~minicelery.broker.redis.RedisBroker`."""

    client: Any
    keys: KeySchema
    _waiting: Held | None
    _chained: tuple[str, ...] | None  # queues of a reserve sent after a wait
    _blocking: bool  # whether a BLPOP leads what the waiting connection awaits
    _reserve_forgotten: bool  # Redis answered NOSCRIPT to the last reserve
    _before: list[tuple[tuple[Any, ...], Any]]  # sent ahead of the wait

    def _reserve_ref(self) -> str:
        raise NotImplementedError

    def _ordered(self, queues: Sequence[str]) -> tuple[str, ...]:
        raise NotImplementedError

    def _reserve_command(
        self, sha: str, consumer: str, ordered: tuple[str, ...], count: int, ack: Sequence[str] = ()
    ) -> tuple[Any, ...]:
        raise NotImplementedError

    def _deliveries(self, flat: list[Any], queues: Sequence[str]) -> list[Delivery]:
        raise NotImplementedError

    def _resend(self, command: tuple[Any, ...], script: Any) -> None:
        raise NotImplementedError

    def wait_start(
        self,
        queues: Sequence[str],
        timeout: float,
        reserve_for: tuple[str, int] | None = None,
        before: Sequence[tuple[tuple[Any, ...], Any]] = (),
    ) -> int | None:
        """Send the BLPOP of :meth:`wait` without waiting for its reply; return a file
        descriptor that becomes readable when it is there, so one select() can watch the
        broker and a worker's children together. None when the client has no real socket
        (``memory://``): use :meth:`wait` in a thread instead.

        With ``reserve_for``, the reserve script is sent right behind the BLPOP on the same
        connection: Redis runs it the moment the BLPOP returns, so a woken worker has its
        messages without another round trip. If the wait is abandoned after that reserve
        ran, the messages sit in the consumer's hold like those of any reserve whose reply
        was lost, and are given back the same way.

        ``before`` (a result backend's ``store_commands`` on this Redis, with the
        acknowledgements of the messages they finish) goes ahead of the BLPOP in the same
        write: a consumer whose queues ran dry stores its last results and waits in one
        go, and Redis tells whoever waits for those results without first running a
        reserve that would find nothing. :meth:`wait_finish` reads their replies first
        (sending again a store Redis refused); when it raises instead, they may not have
        run: send them again (they are idempotent)."""
        wait = (tuple(queues), max(timeout, 0.01))
        ahead = pack_commands([command for command, _ in before]) if before else b""
        if reserve_for is None or reserve_for[1] <= 0 or not queues:
            packed, chained = self._packed(wait, None), None
        else:
            consumer, count = reserve_for
            reserve = (self._reserve_ref(), consumer, self._ordered(queues), count)
            packed, chained = self._packed(wait, reserve), tuple(queues)
        self._before = list(before)
        return self._send_waiting(ahead + packed, blocking=True, chained=chained)

    def reserve_start(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> int | None:
        """Send a reserve (acknowledging ``ack`` first, in the same script) without waiting
        for its reply; the returned file descriptor becomes readable when it is there, and
        :meth:`wait_finish` reads the messages. A busy worker so never stalls its main loop
        on a reserve round trip. None without a real socket."""
        reserve = (self._reserve_ref(), consumer, self._ordered(queues), count)
        if ack:  # tags differ every time: nothing to cache
            packed = pack_commands([self._reserve_command(*reserve, ack)])
        else:
            packed = self._packed(None, reserve)
        self._before = []
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
            # No health check: it would PING and wait for the answer (on a worker's loop).
            connection.send_packed_command([packed], check_health=False)
        return sock.fileno()

    def wait_finish(self) -> list[Delivery] | None:
        """Read the replies of :meth:`wait_start` or :meth:`reserve_start`: the messages
        their reserve took; None when a reply has not come yet (only those of the commands
        sent ahead of the wait, or a wait ended just as Redis stopped answering): watch
        the same descriptor again, since reading on would block the caller."""
        assert self._waiting is not None
        connection = self._waiting.connection
        try:
            with translate_errors("wait"):
                if self._before:
                    self._settle_before(connection)
                    if self._blocking and not connection.can_read(timeout=0):
                        return None  # only the replies ahead of the BLPOP have come
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
                except NoScriptError:
                    # A restarted Redis forgot the script: nothing was taken; the next
                    # reserve sends it again (see _reserve_ref).
                    self._reserve_forgotten = True
                    return []
                self._reserve_forgotten = False
                return self._deliveries(flat, queues)
        except OperationalError:
            connection.disconnect()
            raise

    def _settle_before(self, connection: Any) -> None:
        """Read the replies of the commands sent ahead of a wait; a store Redis refused
        (its script forgotten) is sent again."""
        before, self._before = self._before, []
        for command, script in before:
            try:
                connection.read_response()
            except ResponseError:
                self._resend(command, script)

    def wait_abort(self) -> None:
        """Give up a started wait (shutting down): its connection is closed, not reused."""
        if self._waiting is not None:
            self._waiting.connection.disconnect()
