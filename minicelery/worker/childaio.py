"""``async def`` tasks in a consuming prefork child: handed to the child's event loop thread
(:mod:`.aioloop`, started at the first one), many at once, their ends taken back and settled
by the child's own thread with its next round trip. Up to ``worker_async_concurrency`` of
them run at once in a child: while some run, a child's prefetch window is its free async
slots (sync messages it reserved beyond what it can start soon are taken back for idle
siblings, as ever), else the usual batch. While they run and the queues are dry, the child
blocks on the queues' wake-up tokens (the reserve for its free async slots chained behind)
as an idle child does, with the loop thread's wake-up pipe in the same ``select()``: their
ends are settled as they come, on the child's other connection, while that wait stays
pending.

A child that dies while async tasks run has not acknowledged them: the main process gives
the child's hold back and they run again (as ``acks_late`` tasks would)."""

from __future__ import annotations

import inspect
import logging
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import states
from ..events.worker import outcome_fields
from ..exceptions import MessageError, OperationalError, SerializationError
from ..message import parse_iso
from ..trace import utcnow
from .executor import make_request
from .slots import ACKS_LATE

if TYPE_CHECKING:
    from ..app import Celery
    from ..broker import Delivery
    from ..events.worker import WorkerEvents
    from ..message import TaskMessage
    from ..task import Context
    from ..trace import Outcome
    from ..trace_async import Begun
    from .aioloop import AioLoop
    from .asyncboard import Entry
    from .buckets import Deferred
    from .channel import Channel
    from .childintake import Admitted
    from .consume import ConsumeSettings
    from .revokenews import RevokeNews
    from .slots import Slots

logger = logging.getLogger("minicelery.worker.job")



def async_task_names(app: Celery) -> frozenset[str]:
    """The registered tasks whose body is a coroutine function."""
    return frozenset(
        name for name, task in app.tasks.items() if inspect.iscoroutinefunction(task.run)
    )


class ChildAsync:
    """The async side of :class:`~.childtasks.ChildTasks`."""

    app: Celery
    settings: ConsumeSettings
    slots: Slots
    position: int
    events: WorkerEvents | None
    stopping: bool
    deferred: Deferred
    aio: AioLoop | None = None
    async_names: frozenset[str] = frozenset()
    async_capacity = 0  # how many may run at once (0: this app has no async task)
    awaiting: dict[str, tuple[Delivery, Admitted, Begun]]
    board: dict[str, Entry]  # what the main process reads for inspect active
    board_changed = False
    records: list[tuple[str, bytes]]
    acks: list[str]
    broker: Any
    conn: Channel
    consumer_id: str
    news: RevokeNews
    hold_unknown: bool
    dead: list[Any]  # (delivery, dead letter) pairs sent with the next round trip

    def _trip(self, count: int) -> list[Delivery]:
        raise NotImplementedError

    def _read_pipe(self) -> None:
        raise NotImplementedError

    def _failed(self, exc: OperationalError) -> None:
        raise NotImplementedError

    def _wait(
        self, room: int, timeout: float, beside: tuple[int, Callable[[], None]] | None = None
    ) -> list[Delivery]:
        raise NotImplementedError

    def _tally(self, delivery: Delivery, verdict: Admitted, result: Any) -> None:
        raise NotImplementedError

    def async_room(self) -> int:
        """How many more async tasks this child can start now."""
        if not self.async_capacity:
            return 0
        return max(self.async_capacity - (self.aio.in_flight if self.aio else 0), 0)

    def _async_window(self, room: int) -> int:
        """Settle what ended; how many messages to reserve: while async tasks run, the
        async slots free (less what waits for a rate limit's token), else the sync batch,
        so a child of an app that has async tasks but runs sync ones reserves as before."""
        self._drain_async()
        self._publish_board()
        free = self.async_room()
        return free - len(self.deferred) if self.async_busy() else min(room, free)

    def _publish_board(self) -> None:
        """The async tasks this child runs, for ``inspect active``: rewritten once per turn
        of the child's loop when they changed."""
        if self.board_changed:
            self.board_changed = False
            self.slots.async_board.write(self.position, list(self.board.values()))

    def async_busy(self) -> bool:
        return self.aio is not None and self.aio.in_flight > 0

    def _execute_async(self, delivery: Delivery, verdict: Admitted) -> bool:
        """Hand an admitted async task to the loop; False when the sync runner must end it
        (its body does not decode, or it expired)."""
        from ..trace_async import begin

        request = self._request(delivery, verdict.message)
        if request is None:
            return False
        begun = begin(self.app, self.app.tasks[verdict.message.task], request)
        if self.aio is None:
            from .aioloop import AioLoop

            self.aio = AioLoop()
            self.aio.on_ended = self._settle_from_loop
        if self.events is not None:
            self.events.started(verdict.message, None)
        self.awaiting[delivery.tag] = (delivery, verdict, begun)
        self.board[delivery.tag] = (delivery.tag, delivery.queue, delivery.data,
                                    time.monotonic(), time.time(), ACKS_LATE)  # fmt: skip
        self.board_changed = True
        self.aio.submit(delivery.tag, begun.coro, (verdict.hard, verdict.soft))
        return True

    def _request(self, delivery: Delivery, message: TaskMessage) -> Context | None:
        """The request of a message to await; None if its body does not decode or it
        expired (the executor ends those)."""
        try:
            args, kwargs, embed = message.decode_body(self.settings.accept)
        except (SerializationError, MessageError):
            return None
        expires = parse_iso(message.headers.get("expires"))
        if expires is not None and expires < utcnow():
            return None
        task = self.app.tasks[message.task]
        return make_request(task, message, args, kwargs, embed, self.settings.hostname,
                            delivery.queue)  # fmt: skip

    def _drain_async(self) -> None:
        """Settle the async tasks that ended (results and acks ride the next round trip)."""
        if self.aio is None:
            return
        from ..trace_async import finish

        for ended in self.aio.take():
            delivery, verdict, begun = self.awaiting.pop(ended.key)
            del self.board[ended.key]
            self.board_changed = True
            if begun.terminated is not None and ended.cancelled:
                self._revoked(delivery, verdict, begun)
                continue
            outcome = finish(self.app, begun, ended.value, ended.exc, ended.runtime)
            log_outcome(verdict.message, outcome)
            info = None
            if self.events is not None:
                info = outcome_fields(outcome.state, outcome.runtime, outcome.retval,
                                      outcome.exc, outcome.traceback)  # fmt: skip
                self.events.finished(verdict.message, outcome.state, info, outcome.requeue)
            self._tally(delivery, verdict,
                        (outcome.state, outcome.requeue, outcome.dead_reason, info))  # fmt: skip

    def terminate_async(self, task_ids: list[str], signum: int) -> None:
        """``revoke(terminate=True)``: cancel those of our coroutines; they end REVOKED."""
        if self.aio is None:
            return
        for tag, (_, verdict, begun) in self.awaiting.items():
            if verdict.message.id in task_ids:
                begun.terminated = signum
                self.aio.cancel(tag)

    def _settle_from_loop(self) -> None:
        """In the loop thread, while the child's own thread runs a sync task (and has let
        the lock go): settle what ended with a round trip of its own (its thread's own
        connection), reserving nothing."""
        self._settle_ended()

    def _revoked(self, delivery: Delivery, verdict: Admitted, begun: Begun) -> None:
        """A coroutine cancelled by ``revoke(terminate=True)``: REVOKED, as a sync task
        stopped by its signal."""
        from ..trace_async import terminated

        terminated(self.app, begun)
        if self.events is not None:
            self.events.revoked(verdict.message, begun.terminated)
        self._tally(delivery, verdict, (states.REVOKED, False, None, None))

    def _idle_async(self, room: int) -> list[Delivery]:
        """Async tasks run and the queues are dry: wait for messages (``room`` of them, the
        free async slots) as an idle child does, or, with no slot free, for an end."""
        timeout = self.deferred.next_in(1.0)
        if room > 0:
            return self._wait_beside_async(room, timeout)
        if self._wait_async(timeout, [self.conn.sock]):
            self._read_pipe()
        return []

    def _wait_beside_async(self, room: int, timeout: float) -> list[Delivery]:
        """Block until a wake-up token (and the reserve chained to it) or a stop, settling
        the async tasks that end meanwhile. Those settle on the child's fast connection, the
        wait's stays pending; the hold is not looked at then (its reserve may have run)."""
        assert self.aio is not None
        return self._wait(room, timeout, (self.aio.wake_fd, self._settle_ended_held))

    def _settle_ended_held(self) -> None:
        self._settle_ended(self.hold_unknown)

    def _settle_ended(self, hold_back: bool = False) -> None:
        """Settle the async tasks that ended, with a round trip that reserves nothing (unless
        ``hold_back``: then their results and acks wait for the next one)."""
        self._drain_async()
        self._publish_board()
        if (self.records or self.acks or self.dead) and not hold_back:
            self._trip(0)

    def _wait_async(self, seconds: float, others: list[Any]) -> list[Any]:
        """Wait for an async task to end or one of ``others`` to be readable; settle what
        ended (the next round trip carries it); returns those of ``others`` readable."""
        assert self.aio is not None
        fds = [self.aio.wake_fd, *others]
        ready, _, _ = select.select(fds, [], [], seconds)
        self._drain_async()
        self._publish_board()
        return [fd for fd in others if fd in ready]

    def _finish_async(self) -> None:
        """Before the child leaves: let the async tasks that run end (a warm shutdown)."""
        while self.async_busy():
            self._wait_async(1.0, [])


def log_outcome(message: TaskMessage, outcome: Outcome) -> None:
    """As the executor logs a sync task's end (Celery's worker's lines)."""
    name, task_id = message.task, message.id
    if outcome.state == states.SUCCESS:
        logger.info("Task %s[%s] succeeded in %.6fs: %r", name, task_id, outcome.runtime,
                    outcome.retval)  # fmt: skip
    elif outcome.state == states.FAILURE:
        logger.error("Task %s[%s] raised unexpected: %r\n%s", name, task_id, outcome.exc,
                     outcome.traceback or "")  # fmt: skip
    elif outcome.state == states.RETRY:
        logger.info("Task %s[%s] retry: %s", name, task_id, outcome.exc)
