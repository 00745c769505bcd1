"""How a consuming prefork child runs one message it reserved: admitted (or dead-lettered,
or discarded as revoked), held until its rate limit's token, timed by the main process when
it has time limits, then acknowledged, requeued or dead-lettered as the classic pool's
endings would, with its results kept for the child's next round trip.

A task without ``acks_late`` is acknowledged with that round trip too, not by a command of
its own as it starts: the main process reads from the slot which task a child runs, and
acknowledges it for the child if the child dies while it runs, or once it has run for a
moment (:data:`~.direct.SETTLE_AFTER`), so it does not run again while the worker
lives."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from .. import states
from ..broker import DeadLetter, Delivery
from ..exceptions import OperationalError
from ..message import decode_message
from ..serialization import exception_to_dict
from ..trace import build_meta
from . import child as child_process
from .childaio import ChildAsync
from .childintake import Admitted, Refused, Wait, admit
from .executor import run_logged
from .slots import ACKS_LATE

if TYPE_CHECKING:
    from ..app import Celery
    from ..backend.relay import RelayBackend
    from ..events.worker import WorkerEvents
    from .buckets import Deferred, SharedBuckets
    from .channel import Channel
    from .consume import ConsumeSettings
    from .revokenews import RevokeNews
    from .slots import Slots

logger = logging.getLogger("minicelery.worker.consume")

LIMITED = b"T"  # child -> main: the task in the slot has time limits [hard, soft]
UNLIMITED = b"t"  # child -> main: that task has ended
RECEIVED = b"Q"  # child -> main: send task_received for this message (then HEARD)
HEARD = b"H"  # main -> child: the main process's task_received receivers have run
Result = tuple[str, bool, str | None, dict[str, Any] | None]  # what run_logged returns
HOLD_BACK = 0.005  # seconds between looks at whether a retry's last attempt has ended


class ChildTasks(ChildAsync):
    """The task side of :class:`~.consume.ChildConsumer`."""

    app: Celery
    conn: Channel
    settings: ConsumeSettings
    slots: Slots
    position: int
    relay: RelayBackend
    buckets: SharedBuckets
    deferred: Deferred
    revoked: set[str]
    news: RevokeNews
    records: list[tuple[str, bytes]]
    acks: list[str]
    succeeded: list[str]  # ids of tasks that ended SUCCESS, reported once stored
    dead: list[tuple[Delivery, DeadLetter]]
    done: int
    events: WorkerEvents | None  # with -E: this child sends its tasks' events itself
    broker: Any
    make_events: Callable[[], WorkerEvents]
    consumer_id: str
    hold_unknown: bool
    totals: dict[str, int]  # tasks started by name, published in the slot after round trips
    totals_changed = False
    settle_now = False  # what ran could not be noted in the slot: settle before going on

    def _give_back(self, tags: list[str]) -> None:
        raise NotImplementedError

    def _await_heard(self) -> None:
        raise NotImplementedError

    def _received(self, delivery: Delivery) -> None:
        """``task_received`` is Celery's main process's signal: when receivers wait there
        (connected after this child was forked, or before: they are called there only),
        have it call them, and wait until it has, so they hear of the task before it
        runs, as in Celery. Nothing crosses the pipe when no receiver is connected."""
        if self.slots.listening.on():
            self.conn.send_bytes(RECEIVED + delivery.data)
            self._await_heard()

    def _redeliver(self, delivery: Delivery, data: bytes) -> None:
        """Back to the front of its queue marked ``redelivered`` (``Reject(requeue=True)``).
        Its ack is not due: the hold still has it."""
        try:
            self.broker.redeliver(self.consumer_id, delivery.tag, data)
        except OperationalError:
            self.hold_unknown = True  # given back (unmarked) once Redis answers again

    def _keep(self, records: list[tuple[str, bytes]], acks: list[str]) -> None:
        """Results and acks for the next round trip, noted in the slot too: if this child
        dies first, the main process stores and acknowledges them (nothing finished runs
        again, nothing is lost). What does not fit there is settled before the next task."""
        self.records += records
        self.acks += acks
        if (records or acks) and not self.slots.keep(self.position, records, acks):
            self.settle_now = True

    def _run_one(self, delivery: Delivery) -> None:
        settings = self.settings
        verdict = admit(self.app, delivery, settings.accept, settings.limits, self.revoked,
                        self._running_elsewhere, self._received, self.news.stamps)  # fmt: skip
        if isinstance(verdict, Wait):
            self.deferred.add(HOLD_BACK, delivery, None)
            return
        if not isinstance(verdict, Admitted):
            self._refuse(delivery, verdict)
            return
        if self.events is not None:
            self.events.received(verdict.message)
        self._limited(delivery, verdict)

    def switch_events(self, on: bool) -> None:
        """Send task events from now on, or stop (``enable_events`` / ``disable_events``)."""
        if on and self.events is None:
            self.events = self.make_events()
        elif not on and self.events is not None:
            self.events.dispatcher.flush()
            self.app.events.relay_to(None)
            self.events = None

    def _running_elsewhere(self, task_id: str) -> bool:
        return self.slots.running_elsewhere(self.position, task_id)

    def resume(self, delivery: Delivery, verdict: Admitted | None) -> None:
        """A held message is due: a retry held back (``verdict`` None) is admitted again,
        one that waited for its rate limit's token runs if it has one now."""
        if verdict is None:
            self._run_one(delivery)
        else:
            self._limited(delivery, verdict)

    def _limited(self, delivery: Delivery, verdict: Admitted) -> None:
        """Run now if the task's rate limit has a token for it, else hold it until then."""
        wait = self.buckets.delay(verdict.message.task)
        if wait:
            self.deferred.add(wait, delivery, verdict)
        else:
            self._execute(delivery, verdict)

    def _execute(self, delivery: Delivery, verdict: Admitted) -> None:
        if verdict.message.task in self.async_names and self._execute_async(delivery, verdict):
            return
        settings = self.settings
        limits = [verdict.hard, verdict.soft]
        limited = limits != [None, None]
        self.slots.write(self.position, delivery.tag, delivery.queue, delivery.data,
                         ACKS_LATE if verdict.acks_late else 0)  # fmt: skip
        self.slots.mark(self.position, verdict.message.id)
        if limited:
            self.conn.send_bytes(LIMITED + msgpack.packb(limits))
        events = self.events
        if events is not None:  # sent before it runs: a monitor hears of a task that dies
            events.started(verdict.message, None)
            events.dispatcher.flush()
        child_process._in_task = True
        aio = self.aio
        if aio is not None:  # async tasks that end meanwhile are settled by the loop thread
            aio.lock.release()
        try:
            state, requeue, dead_reason, info = run_logged(
                self.app, delivery.queue, delivery.data, settings.hostname, settings.accept,
                with_event_fields=events is not None, message=verdict.message,
            )  # fmt: skip
        finally:
            if aio is not None:
                aio.lock.acquire()
            child_process._in_task = False
        if events is not None:  # before a message it sent (a retry) reaches a sibling
            events.finished(verdict.message, state, info, requeue)
            events.dispatcher.flush()
        if limited:
            self.conn.send_bytes(UNLIMITED)
        self.slots.clear(self.position)
        self._tally(delivery, verdict, (state, requeue, dead_reason, info))

    def _tally(self, delivery: Delivery, verdict: Admitted, result: Result) -> None:
        """Count a task that ran and keep its results and ack for the next round trip."""
        state, requeue, dead_reason, _ = result
        self.slots.count_one(self.position)
        self.done += 1
        self.totals[verdict.message.task] = self.totals.get(verdict.message.task, 0) + 1
        self.totals_changed = True
        if state == states.SUCCESS:
            self.succeeded.append(verdict.message.id)
        acked = self._settle(delivery, verdict, state, requeue, dead_reason)
        self._keep(self.relay.take(), [delivery.tag] if acked else [])

    def _refuse(self, delivery: Delivery, verdict: Refused | None) -> None:
        if verdict is None:  # revoked: its REVOKED record goes first, then the ack
            if self.events is not None:
                message = decode_message(delivery.data)
                self.events.received(message)
                self.events.revoked(message, None)
            self._keep(self.relay.take(), [delivery.tag])
            return
        if verdict.task_id is not None and verdict.exc is not None:
            meta = build_meta(verdict.task_id, states.FAILURE, exception_to_dict(verdict.exc))
            self.app.backend.store(verdict.task_id, meta)
            self._keep(self.relay.take(), [])
        self.dead_letter(delivery, verdict.reason, verdict.task_id, verdict.name)

    def _settle(
        self, delivery: Delivery, verdict: Admitted, state: str, requeue: bool,
        dead_reason: str | None,
    ) -> bool:  # fmt: skip
        """Requeue or dead-letter, as the main process's endings do; True when the
        message is to be acknowledged instead."""
        name = verdict.message.task
        if dead_reason:
            self.dead_letter(delivery, dead_reason, None, name)
        elif state == states.REJECTED and requeue:
            self._redeliver(delivery, verdict.message.redelivered())
        elif verdict.acks_late and state == states.FAILURE and not verdict.acks_on_failure:
            self.dead_letter(delivery, "failed, and acks_on_failure_or_timeout is off", None, name)
        else:
            return True
        return False

    def dead_letter(self, delivery: Delivery, reason: str, task_id: str | None, name: str) -> None:
        """Keep the message with its reason (sent with the next round trip)."""
        logger.error("Dead-lettered a message from queue %r: %s", delivery.queue, reason)
        letter = DeadLetter(task_id or f"tag-{delivery.tag}", name, reason, time.time(),
                            delivery.queue, delivery.data)  # fmt: skip
        self.dead.append((delivery, letter))
