"""The worker's main process: hands reserved messages to the pool, acknowledges them, and
shuts down warm (finish what runs) or cold (stop now) without losing a message."""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .. import signals
from ..events.event import LamportClock
from ..events.worker import WorkerEvents
from ..serialization import accepted_content_types
from . import endings
from . import inspection as _inspection  # noqa: F401 - registers the inspect commands
from .admission import Admission
from .autoscale import Autoscaler
from .commands import run_command
from .consumer import Consumer
from .control import ControlServer
from .errands import Errands
from .intake import job_for
from .options import POOLS, WorkerOptions, expand_hostname, note_task_modules, resolve_concurrency
from .outbox import ACK_DELAY, Outbox
from .pool import Event, Job, Lost, Pool, Released, Results, Wake, Waker
from .pools import consume_settings, make_pool
from .state import Gate
from .steering import Steering

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["POOLS", "WorkController", "WorkerOptions", "expand_hostname"]

logger = logging.getLogger("minicelery.worker")
job_logger = logging.getLogger("minicelery.worker.job")


class WorkController(Steering):
    """One worker: a consumer (broker threads), a pool, and the loop between them."""

    def __init__(self, app: Celery, options: WorkerOptions) -> None:
        self.app = app
        conf = app.conf
        self.options = options
        self.hostname = expand_hostname(options.hostname)
        self.consumer_id = f"{self.hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = resolve_concurrency(options.concurrency, conf.worker_concurrency,
                                               options.pool)  # fmt: skip
        if options.pool == "solo":
            self.concurrency = 1
        if options.autoscale and options.pool == "prefork":
            self.concurrency = options.autoscale[0]  # prefetch is sized for the most processes
        multiplier = options.prefetch_multiplier
        if multiplier is None:
            multiplier = conf.worker_prefetch_multiplier
        self.prefetch = max(1, self.concurrency * max(multiplier, 1))
        self.refill_at = max(1, self.prefetch // 2)
        queues = list(options.queues) or [conf.task_default_queue]
        self.queues = [q for q in queues if q not in set(options.exclude_queues)]
        self.accept = accepted_content_types(conf.accept_content)
        note_task_modules(conf, app.tasks)
        self.waker = Waker()
        self.max_tasks_per_child = options.max_tasks_per_child or conf.worker_max_tasks_per_child
        consume = consume_settings(self, max(multiplier, 1))
        self.pool: Pool = make_pool(app, options, self.concurrency, self.hostname, self.accept,
                                    self.max_tasks_per_child, consume)  # fmt: skip
        self.autoscaler: Autoscaler | None = None
        if options.autoscale and options.pool == "prefork":
            self.autoscaler = Autoscaler(self.pool, *options.autoscale,
                                         keepalive=conf.worker_autoscale_keepalive)  # fmt: skip
        self._consumer: Consumer | None = None
        self.outbox = Outbox(app, self.consumer_id, self.concurrency)
        self.errands = Errands(self.waker.wake, inline=True)  # threaded once Redis is real
        self.unsent_limit: int = conf.worker_unsent_limit
        self.reconciling = False  # see endings.reconcile_hold
        self._riding: list[str] = []  # early acks sent with the reserve under way
        self._repark = False  # a wait brought messages: wait again once they are dispatched
        self.gate = Gate(conf.worker_disable_rate_limits)
        self.admission = Admission(
            self.gate, lambda delivery: job_for(self, delivery),
            lambda name: self.app.tasks[name].option("rate_limit"),
        )  # fmt: skip
        self.buffer = self.admission.buffer
        self.terminated: dict[str, int] = {}  # task id -> signal, for revoke(terminate=True)
        self.control: ControlServer | None = None
        self.totals: collections.Counter[str] = collections.Counter()
        self.clock = LamportClock()  # moved on by every remote-control command received
        self.warm = False
        self.cold = False
        self.started_at = time.time()
        self.processed = 0
        self._lock = threading.Lock()
        self.events: WorkerEvents | None = None  # with -E (worker_send_task_events)
        if conf.worker_send_task_events:
            self.events = self._make_events()
        self.pool.attach(self)

    def _make_events(self) -> WorkerEvents:
        stats = lambda: (len(self.pool.busy_jobs()), self.processed + self.pool.processed())  # noqa: E731
        freq = self.app.conf.worker_heartbeat_interval
        return WorkerEvents(self.app, self.hostname, freq, stats, self.pool)

    def _room(self) -> int:
        """How many more messages to reserve: prefetch minus what is buffered or running."""
        # Jobs waiting for their rate limit do not stop other messages being reserved,
        # up to one prefetch window of them.
        # Acks Redis has not confirmed still hold their messages (see Outbox.acks_in_flight).
        waiting = self.admission.waiting()
        if self.pool.consumes or self.backlogged():
            return 0
        return (
            self.prefetch
            - len(self.buffer)
            - len(self.pool.busy_jobs())
            - max(0, waiting - self.prefetch)
            - self.outbox.acks_in_flight()
            - self.errands.holding()
        )

    def backlogged(self) -> bool:
        """Whether Redis owes this worker more than ``worker_unsent_limit`` writes (results,
        acks, requeues...): while it does, the worker takes no new work, so an outage
        costs a bounded amount of memory."""
        return self.outbox.unsent() + len(self.errands) >= self.unsent_limit

    @property
    def revoked(self) -> Any:
        return self.gate.revoked

    @property
    def limiter(self) -> Any:
        return self.gate.limiter

    def waiting_jobs(self) -> list[Job]:
        """Reserved messages not started yet, as jobs (for ``inspect reserved``)."""
        return [*self.admission.waiting_jobs(), *self.pool.waiting_jobs()]

    # -- running -------------------------------------------------------------------------
    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            conf = self.app.conf
            self._consumer = Consumer(
                self.app.broker,
                self.consumer_id,
                self.queues,
                self.waker.wake,
                conf.worker_heartbeat_interval,
                conf.worker_lost_timeout,
            )
            self._consumer.also_alive = self.pool.hold_ids
        return self._consumer

    def start(self) -> int:
        """Run until shut down; returns the process exit code."""
        # Fork before any thread exists, and before this process imports the Redis client or
        # connects: children that never touch Redis themselves stay small.
        self.pool.start()
        try:
            self.app.broker.ping()
            self.app.broker.heartbeat(self.consumer_id)
            self.outbox.open_lane()
            if not self.outbox.socketless:
                self.errands = Errands(self.waker.wake)
                self.errands.start()
            self.control = ControlServer(
                self.app.broker.mailbox(), self.hostname, self.waker.wake, self.revoked.update
            )
            self.control.start()
        except BaseException:
            self.pool.stop()
            raise
        self.consumer.start()
        if self.events is not None:
            self.events.start()  # worker-online; its thread starts after the fork
        logger.warning("%s ready.", self.hostname)
        signals.worker_ready.send(sender=self)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _loop(self) -> None:
        while not self.warm:
            self._serve_control()
            if self.autoscaler is not None:
                waiting = len(self.buffer) + len(self.admission.ready) + self.pool.unstarted()
                self.autoscaler.step(waiting)
            if self.consumer.hold_suspect and self.consumer.retry_in() == 0:
                self._reconcile_hold()
            self._dispatch()  # idle slots first, from what is already reserved
            if self._repark:
                self._repark = False
                self.consumer.repark(self._room())
            if self._flush_outbox() and self._refill():
                self._dispatch()
                self._flush_outbox()
            timeout = self.consumer.retry_in() or (0.0 if self._refill_due() else self._idle_wait())
            gate_due = self.gate.next_in()
            if gate_due is not None and self.pool.idle_slots() > 0:
                timeout = min(timeout, gate_due)
            for event in self.pool.wait(timeout, self.waker, self._watched()):
                self._handle(event)
        logger.warning("worker: %s shutdown (MainProcess)", "Cold" if self.cold else "Warm")
        signals.worker_shutting_down.send(
            sender=self.hostname, sig="SIGTERM", how="Cold" if self.cold else "Warm", exitcode=0
        )
        self._stop_taking()
        while not self.cold and self.pool.busy_jobs():
            for event in self.pool.wait(1.0, self.waker, self._watched(waiting=False)):
                self._handle(event)
            self._flush_outbox()
            self.outbox.flush_acks(self.consumer)

    def _stop_taking(self) -> None:
        """Take no more messages; give back those reserved and not started."""
        self.consumer.stopping.set()
        for event in self.pool.quiesce():
            self._handle(event)
        self._give_back_buffer()

    def _shutdown(self) -> None:
        for event in self.pool.stop(cold=self.cold):
            self._handle(event, shutting_down=True)
        # The threads are daemons: one stuck on a hung Redis is left behind, not waited for.
        self.consumer.stop(timeout=2.0)
        self.outbox.put_back_acks(self._riding)  # a reserve abandoned: its acks go again
        self._riding = []
        if self.control is not None:
            self.control.stop(timeout=1.0)
        self._give_back_buffer()
        self._flush_outbox(force=True)
        self.outbox.flush_acks(self.consumer)
        budget = self.app.conf.worker_shutdown_timeout
        self.outbox.close(budget / 2)
        broker, consumer_id = self.app.broker, self.consumer_id
        # Last, once everything before it went out: what is still held goes back.
        self.errands.add("unregister", lambda: broker.unregister(consumer_id))
        self.errands.drain(budget / 2)
        if self.events is not None:
            self.events.stop()  # worker-offline, after every task's last event
        signals.worker_shutdown.send(sender=self)
        self.waker.close()

    def _reconcile_hold(self) -> None:
        if not self.reconciling:
            self.reconciling = True
            endings.reconcile_hold(self)

    def _watched(self, waiting: bool = True) -> list[int]:
        """Broker sockets for the main loop's select: the idle wait, and the lane while it
        owes replies."""
        fds = [self.consumer.watch_fd()] if waiting else []
        fds.append(self.outbox.lane_fd())
        return [fd for fd in fds if fd is not None]

    def _flush_outbox(self, force: bool = False) -> bool:
        """Send the children's results and the acks that follow them (see
        :class:`Outbox`); False while Redis is unreachable."""
        return self.outbox.flush(self.consumer, self.pool.idle_slots() > 0, force)

    def _refill_due(self) -> bool:
        """Whether to talk to the broker now. Under load the round trip that acknowledges and
        reserves is batched: reserving waits until half the prefetch window is free, and
        acks wait at most ``ACK_DELAY`` (so a task acknowledged early is acknowledged within
        milliseconds of starting, as Celery's at-most-once semantics need). With idle slots
        or dry queues, acks go at once."""
        if self._room() >= self.refill_at and not self.consumer.parked:
            return True
        if not self.outbox.acks or self.outbox.lane is not None:
            return False
        if self.pool.idle_slots() > 0 or self.consumer.parked:
            return True
        return time.monotonic() - self.outbox.acks_since >= ACK_DELAY

    def _idle_wait(self) -> float:
        if self.outbox.acks and self.outbox.lane is None:
            return max(0.0, self.outbox.acks_since + ACK_DELAY - time.monotonic())
        lane_due = self.outbox.wait_for()
        return 1.0 if lane_due is None else lane_due

    def _refill(self) -> bool:
        """Acknowledge and reserve when due; True if new messages arrived."""
        if not self._refill_due():
            return False
        room = self._room()
        if self.outbox.lane is not None and room >= self.refill_at:
            # The acks land first, so what this worker holds never exceeds its prefetch
            # window: early ones ride in the reserve, on its connection; the others follow
            # their results on the lane and count against the window until Redis confirms
            # them (Redis may run the two connections' commands in either order). The
            # messages come with a wake-up.
            early = self.outbox.take_early_acks()
            if self.outbox.acks:
                self._flush_outbox(force=True)
                room = self._room()
            if room > 0 and self.consumer.fetch_start(room, early):
                self._riding = early  # confirmed by the reserve's reply, or sent again
                return False
            # Not sent (no room, a reserve under way, or Redis away): the acks go on the lane
            # and the loop tries again when woken. Never a round trip from here.
            self.outbox.put_back_acks(early)
            return False
        deliveries = self.consumer.fetch(room if room >= self.refill_at else 0, self.outbox.acks)
        self.buffer.extend(deliveries)
        self._serve_control(catch_up=bool(deliveries))
        return bool(deliveries)

    def _give_back_buffer(self) -> None:
        """Reserved but not started: back to the front of their queues, at once."""
        endings.give_back(self, self.admission.take_all())

    def _dispatch(self) -> None:
        while not self.warm and self.pool.idle_slots() > 0:
            step = self.admission.next(self.pool.busy_jobs())
            if step is None:
                return
            verdict, job = step
            self._announce(job)
            if verdict == Gate.REVOKED:
                endings.discard_revoked(self, job)
            elif verdict == Gate.RUN:
                self._start(job)

    def _start(self, job: Job) -> None:
        job.wall_started = time.time()
        job.event_fields = self.task_events
        if not self.pool.submit(job):
            self.admission.ready.appendleft(job)  # its process had died: the next one
            return
        if not job.acks_late:
            self.outbox.add_ack(job.delivery.tag, early=True)
        if self.events is not None:
            self.events.started(job.message, job.slot)

    def _announce(self, job: Job) -> None:
        """Log, signal and send ``task-received`` once per job, when it is first let through:
        a retry held back behind its last attempt is announced after that attempt's
        ``task-retried``, so monitors see one attempt end before the next begins."""
        if job.announced:
            return
        job.announced = True
        job_logger.info("Task %s[%s] received", job.message.task, job.message.id)
        signals.task_received.send(sender=self, request=job.message)
        if self.events is not None:
            self.events.received(job.message)

    def _serve_control(self, catch_up: bool = False) -> None:
        if self.control is None:
            return
        if catch_up:  # tasks came: first the commands sent before them (see catch_up)
            self.control.catch_up()
        for cmd in self.control.pending():
            self.clock.adjust(cmd.get("clock") or 0)
            reply = run_command(self, cmd["method"], cmd.get("arguments") or {})
            if cmd.get("ticket"):
                send = functools.partial(self.control.reply, cmd["ticket"], reply)
                self.errands.add("reply", send)

    def _on_wake(self, event: Wake) -> None:
        lane = self.outbox.lane
        if lane is not None and event.fd == lane.fileno():
            self.outbox.read_lane(self.consumer)
            return
        woken = self.consumer.on_wake()
        riding, self._riding = self._riding, []
        if self.consumer.hold_suspect:
            # The reply was lost: Redis may not have run the acks that rode with the reserve.
            # Acknowledging again is harmless; not doing it would have the hold check give
            # back tasks that already started.
            self.outbox.put_back_acks(riding)
        if woken:
            self.buffer.extend(woken)
            self._serve_control(catch_up=True)
            self._repark = True  # after the dispatch: a new task starts first

    def _handle(self, event: Event, shutting_down: bool = False) -> None:
        if isinstance(event, Wake):
            self._on_wake(event)
            return
        if isinstance(event, Results):
            self.outbox.add_results(event.results)
            return
        if isinstance(event, Released):
            endings.release_hold(self, event)
            return
        self.processed += 1
        job = event.job
        self.totals[job.message.task] += 1
        self.admission.release(job.message.id)
        signum = self.terminated.pop(job.message.id, None)
        if isinstance(event, Lost) and signum is not None:
            endings.discard_revoked(self, job, terminated=signum)
        elif isinstance(event, Lost):
            endings.handle_lost(self, event, shutting_down)
        else:
            endings.finished(self, event)
