"""The prefork pool whose children consume by themselves (``worker_children_consume``).

The main process forks, supervises and replaces the children but is off every task's path:
each child reserves, runs, stores and acknowledges on its own Redis connection (see
:mod:`.consume`). What the main process needs to know of a child's task it reads from the
child's slot in shared memory (:mod:`.slots`) when it needs it: for ``inspect active``, for a
child that died (its task gets the classic pool's ending, the rest of its hold goes back to
the queues) and, told over the pipe, for the time limits of the tasks that have them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from .. import signals
from ..broker import Delivery
from ..exceptions import MessageError
from ..message import decode_message
from .buckets import SharedBuckets
from .channel import Channel
from .child import READY, STOP
from .childtasks import HEARD, LIMITED, RECEIVED, UNLIMITED
from .consume import CONFIG, INIT, REVOKE, STAMPS, TERMINATE, ConsumeSettings
from .consuming import consume_main
from .pool import Event, Job, Released, Waker
from .prefork import Child, PreforkPool, _kill
from .slots import Running, Slots
from .state import parse_rate, revoked_stamps, successful_requests

if TYPE_CHECKING:
    from ..app import Celery
    from .controller import WorkController

logger = logging.getLogger(__name__)

GROW_ROOM = 16  # children pool_grow may add beyond the pool's size at start
STEAL_AFTER = 0.025  # seconds a task runs before its child's unstarted messages may move
# Seconds a task runs before the main process settles for its child: acknowledges it if
# it has no acks_late, stores and acknowledges what the child ran before it (all of which
# the child does only after the task, with its next round trip).
SETTLE_AFTER = 0.02
BUSY_LOOK = 0.05  # seconds between looks at the slots while a child runs a task


class ConsumingPool(PreforkPool):
    """Children that consume; the main process supervises. See the module docstring."""

    consumes = True

    def __init__(
        self,
        app: Celery,
        concurrency: int,
        settings: ConsumeSettings,
        max_memory_per_child: int | None = None,
    ) -> None:
        settings.max_memory_kib = max_memory_per_child
        super().__init__(app, concurrency, _no_runner, None, max_memory_per_child)
        self.settings = settings
        # Created before the fork server, so every child shares these pages. Room for a
        # child and its replacement each (a restart replaces them all at once), and for
        # pool_grow to add up to GROW_ROOM children.
        self.slots = Slots(2 * (concurrency + GROW_ROOM))
        self.buckets = SharedBuckets()
        self.shared_clock = self.slots.clock  # the worker's events take it (one clock)
        self.limits_disabled = bool(app.conf.worker_disable_rate_limits)
        self.positions: dict[int, int] = {}  # pid -> slot position
        self._hold_ids: tuple[str, ...] = ()
        self._settled: dict[int, str] = {}  # child pid -> the running tag settled for it
        self.revoked: set[str] = set()
        self._revoked_news: collections.deque[str] = collections.deque()
        self._obeyed: list[str] = []  # news ids of the stamp revokes obeyed since the last
        self._stamps_version = 0  # of the revoked stamps last sent
        self._wake: Any = None
        self._opened = False  # INIT frames are sent once the worker is up
        self._config: dict[str, Any] = {"queues": settings.queues, "limits": {}}
        self._sender: Any = None  # the worker: task_received's sender, as in the classic pool

    def _child_life(self, conn: Channel, index: int, inherited: list[Channel]) -> int:
        for other in inherited:
            other.close()
        return consume_main(self.app, conn, index, self.settings, self.slots, self.buckets)

    def consumer_of(self, child: Child) -> str:
        return f"{self.settings.consumer_id}/{child.index}"

    def _add_child(self, index: int, pid: int, parent_conn: Channel) -> Child:
        child = super()._add_child(index, pid, parent_conn)
        position = self.positions[pid] = self.slots.allocate()
        parent_conn.on_send = lambda: self.slots.notify(position)
        if self._opened:
            self._send_init(child)
        self._hold_ids = tuple(self.consumer_of(c) for c in self.children.values())
        return child

    def _send_init(self, child: Child) -> None:
        """Let a child start consuming: its slot, and the ids and stamps revoked so far."""
        revoked, stamps = sorted(self.revoked), dict(revoked_stamps)
        init = INIT + msgpack.packb(
            [self.positions[child.pid], revoked, self._config, stamps], default=str
        )
        with contextlib.suppress(OSError):  # died already: its channel's end says so
            child.conn.send_bytes(init)

    def attach(self, worker: WorkController) -> None:
        """Follow the worker's revoked set and rate limits (the remote commands change)."""
        self._sender = worker
        worker.revoked.on_add = self.forward_revoked
        self.forward_revoked(worker.revoked.ids())
        self._wake = revoked_stamps.on_change = worker.waker.wake  # any thread may change them
        worker.limiter.on_forget = self.rate_changed

    def rate_changed(self, name: str) -> None:
        """Set ``name``'s shared token bucket from its task's ``rate_limit`` now."""
        task = self.app.tasks.get(name)
        rate = None if task is None or self.limits_disabled else task.option("rate_limit")
        self.buckets.set_rate(name, parse_rate(rate))

    def _open(self) -> None:
        """The worker is up (its revoked set loaded): the children may start consuming."""
        self._opened = True
        self.slots.listening.start()
        successful_requests.feeds.append(self._successes)
        for name in list(self.app.tasks):
            self.rate_changed(name)
        self._flush_revoked()
        for child in list(self.children.values()):
            self._send_init(child)

    def _successes(self) -> list[str]:
        """Ids of the tasks the children stored SUCCESS for since the last look."""
        return self.slots.successes.take(tuple(self.positions.values()))

    def _announce(self, child: Child, data: bytes) -> None:
        """Send ``task_received`` for a message a child admitted, then let it go on."""
        with contextlib.suppress(MessageError):
            signals.task_received.send(sender=self._sender, request=decode_message(data))
        with contextlib.suppress(OSError):  # died: its channel's end says so
            child.conn.send_bytes(HEARD)

    def processed(self) -> int:
        return self.slots.processed()

    def task_totals(self) -> dict[str, int]:
        return self.slots.task_totals()

    def hold_ids(self) -> tuple[str, ...]:
        return self._hold_ids  # read by the heartbeat thread: a tuple, replaced whole

    def idle_slots(self) -> int:
        return 0  # nothing is handed to a child: it takes its own

    def submit(self, job: Job) -> bool:
        return False

    def busy_jobs(self) -> list[Job]:
        jobs = []
        for child in list(self.children.values()):
            job = child.job or self._running_job(child)
            if job is not None:
                jobs.append(job)
        return jobs

    def _running_job(self, child: Child, limits: list[float | None] | None = None) -> Job | None:
        position = self.positions.get(child.pid)
        running = self.slots.read(position) if position is not None else None
        return None if running is None else self._job(child, running, limits or [None, None])

    def _job(self, child: Child, running: Running, limits: list[float | None]) -> Job | None:
        """The classic pool's job for what a slot says a child runs (None when the slot
        could not hold the message: the child's hold still has it)."""
        if running.truncated:
            return None
        try:
            message = decode_message(running.data)
        except MessageError:
            return None
        task = self.app.tasks.get(message.task)

        def option(name: str, default: bool = False) -> bool:
            return bool(task.option(name)) if task is not None else default

        job = Job(
            Delivery(running.tag, running.queue, running.data),
            message,
            acks_late=running.acks_late,
            reject_on_worker_lost=option("reject_on_worker_lost"),
            acks_on_failure=option("acks_on_failure_or_timeout", True),
            time_limit=limits[0],
            soft_time_limit=limits[1],
            started=running.started,
            wall_started=running.wall_started,
            slot=child.pid,
        )
        job.hold = self.consumer_of(child)
        job.announced = True
        return job

    def async_jobs(self) -> list[Job]:
        """The async def tasks the children run, from their boards (``inspect active``)."""
        board, jobs = self.slots.async_board, []
        for child in list(self.children.values()):
            position = self.positions.get(child.pid)
            for entry in board.read(position) if position is not None else []:
                if (job := self._job(child, Running(*entry), [None, None])) is not None:
                    jobs.append(job)
        return jobs

    def unstarted(self) -> int:
        """Messages the children reserved and have not started (the autoscaler's backlog)."""
        return sum(self.slots.batch_size(p) for p in list(self.positions.values()))

    def waiting_jobs(self) -> list[Job]:
        """What the children reserved and have not started, as jobs (``inspect reserved``):
        the tags from their slots, the messages from their holds."""
        broker: Any = self.app.broker
        jobs = []
        for child in list(self.children.values()):
            position = self.positions.get(child.pid)
            tags = self.slots.peek_batch(position) if position is not None else []
            for delivery in broker.held_messages(self.consumer_of(child), tags) if tags else []:
                with contextlib.suppress(MessageError):
                    jobs.append(Job(delivery, decode_message(delivery.data), False, False))
        return jobs

    def _on_frame(self, child: Child, frame: bytes) -> list[Event]:
        if frame == READY:
            child.ready = True
        elif frame[:1] == LIMITED:  # a task with time limits started: time it
            child.job = self._running_job(child, list(msgpack.unpackb(frame[1:])))
            child.soft_sent = False
        elif frame[:1] == UNLIMITED:
            child.job = None
        elif frame[:1] == RECEIVED:
            self._announce(child, frame[1:])
        return []

    def _reap(self, child: Child, timed_out: bool = False) -> list[Event]:
        """A child's pipe closed: its task ends as in the classic pool (Lost), then the rest
        of its hold goes back to the queues (Released)."""
        if child.job is None:
            child.job = self._running_job(child)
        position = self.positions.pop(child.pid, None)
        records: list[tuple[str, bytes]] = []
        ack: list[str] = []
        if position is not None:
            self.slots.retire_count(position)
            for task_id in self.slots.successes.reset(position):
                successful_requests.add(task_id)
            records, ack = self.slots.unsettled(position)
        if position is not None and self.slots.usable(position):
            self.slots.release(position)  # read: its replacement may have it
        job = child.job
        if job is not None and not job.acks_late:
            ack.append(job.delivery.tag)
        self._settled.pop(child.pid, None)
        consumer = self.consumer_of(child)
        events = super()._reap(child, timed_out)
        self._hold_ids = tuple(self.consumer_of(c) for c in self.children.values())
        events.append(Released(consumer, ack, records=records))
        return events

    def quiesce(self) -> list[Event]:
        """A warm shutdown: every child finishes its task and leaves; what they reserved
        and did not start goes back now."""
        self._stopping = True
        for child in list(self.children.values()):
            with contextlib.suppress(OSError):
                child.conn.send_bytes(STOP)
        return [event for child in list(self.children.values()) for event in self._take(child)]

    def _take(self, child: Child) -> list[Event]:
        """The unstarted rest of ``child``'s batch, taken from it to go back."""
        position = self.positions.get(child.pid)
        tags = self.slots.take_batch(position) if position is not None else []
        return [Released(self.consumer_of(child), tags=tags)] if tags else []

    def next_deadline(self) -> float | None:
        due = [d for d in (super().next_deadline(), self._rebalance_at(), self._settle_at())
               if d is not None]  # fmt: skip
        return min(due) if due else None

    def _running(self) -> list[tuple[Child, Running]]:
        """What each child that runs a task runs, as its slot says."""
        found = []
        for child in list(self.children.values()):
            position = self.positions.get(child.pid)
            running = self.slots.read(position) if position is not None else None
            if running is not None:
                found.append((child, running))
        return found

    def _settle_at(self) -> float | None:
        """When a running task will have run SETTLE_AFTER; while any child runs one, at
        least every BUSY_LOOK: the child may have moved on to a longer task since."""
        running = self._running()
        if not running:
            return None
        now = time.monotonic()
        due = [r.started + SETTLE_AFTER for c, r in running if self._settled.get(c.pid) != r.tag]
        return max(min([*due, now + BUSY_LOOK]), now + 0.01)

    def _settle_for_children(self) -> list[Event]:
        """For a child whose task has run SETTLE_AFTER: acknowledge that task if it has no
        ``acks_late`` (the child would only after it ran; a worker killed meanwhile must
        not have it run again elsewhere), and store and acknowledge what the child ran
        before it in its batch (their results are not held back by a long task)."""
        events: list[Event] = []
        now = time.monotonic()
        for child, running in self._running():
            if now - running.started < SETTLE_AFTER or self._settled.get(child.pid) == running.tag:
                continue
            self._settled[child.pid] = running.tag
            records, acks = self.slots.unsettled(self.positions[child.pid])
            if not running.acks_late:
                acks.append(running.tag)
            if records or acks:
                events.append(Released(self.consumer_of(child), acks, tags=[], records=records))
        return events

    def _rebalance_at(self) -> float | None:
        """When a child that runs a task and holds unstarted messages has run it long enough
        for those to go to an idle sibling (None: no such child)."""
        due = []
        for child in self.children.values():
            position = self.positions[child.pid]
            if self.slots.batch_size(position):
                running = self.slots.read(position)
                if running is not None:
                    due.append(running.started + STEAL_AFTER)
        if not due:
            return None
        return max(min(due), time.monotonic() + STEAL_AFTER / 2)  # never a busy loop

    def _rebalance(self) -> list[Event]:
        """Give back what busy children reserved and did not start, when a sibling is
        idle: a busy child never holds a message an idle one could run (for long)."""
        now = time.monotonic()
        idle, stuck = False, []
        for child in list(self.children.values()):
            running = self.slots.read(self.positions[child.pid])
            if running is None:
                idle = idle or child.ready
            elif now - running.started >= STEAL_AFTER:
                stuck.append(child)
        if not idle or self._stopping:
            return []
        return [event for child in stuck for event in self._take(child)]

    def stop(self, cold: bool = False) -> list[Event]:
        """A cold stop kills every child (what they held goes back); a warm one asks them."""
        self._stopping = True
        if revoked_stamps.on_change == self._wake:  # its pipe is closed soon after
            revoked_stamps.on_change = None
        if cold:
            for child in list(self.children.values()):
                _kill(child.pid, signal.SIGKILL)
        events = super().stop(cold)
        if self._opened:
            successful_requests.merge()
            with contextlib.suppress(ValueError):
                successful_requests.feeds.remove(self._successes)
            self.slots.listening.stop()
        return events

    def reconfigure(self, change: dict[str, Any]) -> None:
        """Send a remote command's change to every child, and to every child forked later
        (the fork server's copy of the settings is the one from the start)."""
        if "queues" in change:
            self._config["queues"] = change["queues"]
        if "events" in change:
            self._config["events"] = change["events"]
        self._config["limits"].update(change.get("limits", {}))
        frame = CONFIG + msgpack.packb(change)
        for child in list(self.children.values()):
            with contextlib.suppress(OSError):
                child.conn.send_bytes(frame)

    def forward_revoked(self, task_ids: list[str]) -> None:
        """Tell every child (and every child forked from now on) these ids are revoked:
        queued here (the remote-control thread may call this), sent by the main loop."""
        self._revoked_news.extend(task_ids)

    def forward_stamps(self, headers: dict[str, Any], news_id: str | None = None) -> None:
        """The main loop obeyed a revoke by stamps: the children hear of it (and that it
        was obeyed, by its news id) with the revoked stamps' next change."""
        if news_id:
            self._obeyed.append(news_id)

    def _flush_stamps(self) -> None:
        """Send every child the revoked stamps now (the whole set: code in this process may
        have cleared it) and the news ids obeyed since the last time."""
        self._stamps_version = revoked_stamps.version
        obeyed, self._obeyed = self._obeyed, []
        frame = STAMPS + msgpack.packb([dict(revoked_stamps), obeyed], default=str)
        for child in list(self.children.values()):
            with contextlib.suppress(OSError):
                child.conn.send_bytes(frame)

    def terminate_async(self, task_ids: list[str], signum: int) -> None:
        """``revoke(terminate=True)`` of async def tasks: their children cancel them."""
        frame = TERMINATE + msgpack.packb([task_ids, signum])
        for child in list(self.children.values()):
            with contextlib.suppress(OSError):
                child.conn.send_bytes(frame)

    def _flush_revoked(self) -> None:
        news = [self._revoked_news.popleft() for _ in range(len(self._revoked_news))]
        self.revoked.update(news)
        if not news or not self._opened:
            return
        frame = REVOKE + msgpack.packb(news)
        for child in list(self.children.values()):
            with contextlib.suppress(OSError):
                child.conn.send_bytes(frame)

    def wait(self, timeout: float, waker: Waker, watch: Sequence[int] = ()) -> list[Event]:
        # The main loop's first wait: everything the children need to know is known.
        if not self._opened:
            self._open()
        elif self._revoked_news:
            self._flush_revoked()
        self.slots.listening.refresh()
        if self._opened and (self._obeyed or revoked_stamps.version != self._stamps_version):
            self._flush_stamps()
        events = super().wait(timeout, waker, watch)
        successful_requests.merge()
        if self._rebalance_at() is not None:
            events.extend(self._rebalance())
        events.extend(self._settle_for_children())
        return events

    def grow(self, n: int) -> int:
        return super().grow(max(0, min(n, self.slots.count // 2 - self.concurrency)))


def _no_runner(queue: str, data: bytes, event_fields: bool) -> tuple[str, bool, None, None]:
    raise AssertionError("a consuming child runs its own messages")  # pragma: no cover
