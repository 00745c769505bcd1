"""How a consuming prefork child runs one message it reserved: admitted (or dead-lettered,
or discarded as revoked), held until its rate limit's token, timed by the main process when
it has time limits, then acknowledged, requeued or dead-lettered as the classic pool's
endings would, with its results kept for the child's next round trip. A task without
``acks_late`` is acknowledged as it starts, as in the classic pool."""

from __future__ import annotations

import contextlib
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
from .childintake import Admitted, Refused, Wait, admit
from .executor import run_logged
from .slots import ACKS_LATE

if TYPE_CHECKING:
    from ..app import Celery
    from ..backend.relay import RelayBackend
    from ..events.worker import WorkerEvents
    from ..redislayer.wire import Unanswered
    from .buckets import Deferred, SharedBuckets
    from .channel import Channel
    from .consume import ConsumeSettings
    from .slots import Slots

logger = logging.getLogger("minicelery.worker.consume")

LIMITED = b"T"  # child -> main: the task in the slot has time limits [hard, soft]
UNLIMITED = b"t"  # child -> main: that task has ended
HOLD_BACK = 0.005  # seconds between looks at whether a retry's last attempt has ended


class ChildTasks:
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
    records: list[tuple[str, bytes]]
    acks: list[str]
    dead: list[tuple[Delivery, DeadLetter]]
    done: int
    events: WorkerEvents | None  # with -E: this child sends its tasks' events itself
    broker: Any
    make_events: Callable[[], WorkerEvents]
    consumer_id: str
    lane: Unanswered | None = None  # early acks: written without waiting for their replies
    lane_tried = False

    def _give_back(self, tags: list[str]) -> None:
        raise NotImplementedError

    def _ack_early(self, tag: str) -> None:
        """Acknowledge a task without ``acks_late`` as it starts, as the classic pool does:
        at most once, so a worker killed while it runs does not have it run again
        elsewhere. The HDEL is written on a connection of its own whose replies are dropped
        unread with the next round trip: the task waits for no round trip. It is
        acknowledged again after it runs (with the results), in case this one was lost."""
        lane = self._early_lane()
        try:
            if lane is None:
                self.broker.ack(self.consumer_id, [tag])
            else:
                lane.send([("HDEL", self.broker.ack_key(self.consumer_id), tag)])
        except OperationalError:
            pass  # acknowledged after it runs

    def _early_lane(self) -> Unanswered | None:
        """The connection for early acks, opened on first use (None: no real socket)."""
        if self.lane is None and not self.lane_tried:
            self.lane_tried = True
            from ..redislayer.wire import Unanswered  # the Redis client: after the fork

            client = getattr(self.broker, "client", None)
            lane = Unanswered(client) if client is not None else None
            with contextlib.suppress(OperationalError):
                self.lane = lane if lane is not None and lane.open() else None
        return self.lane

    def _run_one(self, delivery: Delivery) -> None:
        settings = self.settings
        verdict = admit(self.app, delivery, settings.accept, settings.limits, self.revoked,
                        self._running_elsewhere)  # fmt: skip
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
        settings = self.settings
        limits = [verdict.hard, verdict.soft]
        limited = limits != [None, None]
        if not verdict.acks_late:
            self._ack_early(delivery.tag)
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
        try:
            state, requeue, dead_reason, info = run_logged(
                self.app, delivery.queue, delivery.data, settings.hostname, settings.accept,
                with_event_fields=events is not None, message=verdict.message,
            )  # fmt: skip
        finally:
            child_process._in_task = False
        if events is not None:  # before a message it sent (a retry) reaches a sibling
            events.finished(verdict.message, state, info, requeue)
            events.dispatcher.flush()
        if limited:
            self.conn.send_bytes(UNLIMITED)
        self.slots.clear(self.position)
        self.slots.count_one(self.position)
        self.done += 1
        self.records += self.relay.take()
        self._settle(delivery, verdict, state, requeue, dead_reason)

    def _refuse(self, delivery: Delivery, verdict: Refused | None) -> None:
        if verdict is None:  # revoked: its REVOKED record goes first, then the ack
            if self.events is not None:
                message = decode_message(delivery.data)
                self.events.received(message)
                self.events.revoked(message, None)
            self.records += self.relay.take()
            self.acks.append(delivery.tag)
            return
        if verdict.task_id is not None and verdict.exc is not None:
            meta = build_meta(verdict.task_id, states.FAILURE, exception_to_dict(verdict.exc))
            self.app.backend.store(verdict.task_id, meta)
            self.records += self.relay.take()
        self.dead_letter(delivery, verdict.reason, verdict.task_id, verdict.name)

    def _settle(
        self, delivery: Delivery, verdict: Admitted, state: str, requeue: bool,
        dead_reason: str | None,
    ) -> None:  # fmt: skip
        """Acknowledge, requeue or dead-letter, as the main process's endings do."""
        name = verdict.message.task
        if dead_reason:
            self.dead_letter(delivery, dead_reason, None, name)
        elif state == states.REJECTED and requeue:
            self._give_back([delivery.tag])
        elif verdict.acks_late and state == states.FAILURE and not verdict.acks_on_failure:
            self.dead_letter(delivery, "failed, and acks_on_failure_or_timeout is off", None, name)
        else:
            self.acks.append(delivery.tag)

    def dead_letter(self, delivery: Delivery, reason: str, task_id: str | None, name: str) -> None:
        """Keep the message with its reason (sent with the next round trip)."""
        logger.error("Dead-lettered a message from queue %r: %s", delivery.queue, reason)
        letter = DeadLetter(task_id or f"tag-{delivery.tag}", name, reason, time.time(),
                            delivery.queue, delivery.data)  # fmt: skip
        self.dead.append((delivery, letter))
