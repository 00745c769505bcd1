"""The dashboard's reader of the event stream: one thread that takes events in batches, merges
task events into the history in Redis, feeds the workers' state and the metrics, and keeps the
short series the charts draw. It resumes where the history's cursor says after a restart."""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ..events.state import TASK_STATES, State, Task
from .history import History
from .metrics import Metrics
from .records import first_seen, merge, to_record, to_task

if TYPE_CHECKING:
    from ..app import Celery
    from ..events.receiver import EventReceiver
    from .inspector import Inspector

logger = logging.getLogger(__name__)

CACHE_SIZE = 5_000  # recent task records kept in memory: most events hit one of these
WINDOW = 300  # seconds of per-second rates kept for the charts
QUEUE_POLL = 1.0  # seconds between queue-length polls
TRIM_EVERY = 10.0  # seconds between history trims
ENABLE_EVENTS_EVERY = 10.0  # as Flower: turn task events on in workers started without -E
# Runtime buckets (seconds) of the runtime chart: Prometheus's defaults, plus infinity.
RUNTIME_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    float("inf"),
)


class Collector:
    """Reads every event once, in order; ``version`` moves on after each batch, so pages
    know when there is something new to show."""

    def __init__(
        self,
        app: Celery,
        history: History,
        metrics: Metrics,
        inspector: Inspector | None = None,
        enable_events: bool = True,
    ) -> None:
        self.app = app
        self.history = history
        self.metrics = metrics
        self.inspector = inspector
        self.enable_events = enable_events
        self.state = State()  # its workers; tasks live in the history
        self.cache: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self.version = 0
        self.events_seen = 0
        self.rates: collections.OrderedDict[int, collections.Counter[str]] = (
            collections.OrderedDict()
        )
        self.runtimes: dict[str, list[int]] = {}
        self.queues: dict[str, int] = {}
        self.scheduled = 0
        self.dead = 0
        self.known_queues: set[str] = {str(app.conf.task_default_queue)}
        self.lag = 0.0  # seconds between the newest event's timestamp and its handling
        self._stop = threading.Event()
        self._receiver: EventReceiver | None = None
        self._thread: threading.Thread | None = None
        self._due: dict[str, float] = {}

    # -- the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="dashboard-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Read and apply until stopped; an error (Redis away) is logged, then retried."""
        while not self._stop.is_set():
            try:
                receiver = self._receiver = self._open()
                while not self._stop.is_set():
                    events = receiver.poll(0.5)
                    if events:
                        self.apply(events, receiver.position)
                    self.periodic()
            except Exception:
                logger.warning("Reading events failed; retrying in a second", exc_info=True)
                self._stop.wait(1.0)

    def _open(self) -> EventReceiver:
        """A receiver at the history's cursor (the newest event when there is none)."""
        receiver: EventReceiver = self.app.events.Receiver()
        # Whatever was merged after the stored cursor is read again: start from the store.
        self.cache.clear()
        cursor = self.history.cursor()
        if cursor is not None:
            receiver.position = cursor
        return receiver

    # -- events ---------------------------------------------------------------------------
    def apply(self, events: list[dict[str, Any]], position: bytes | None) -> None:
        """Merge one batch of events and store its effects with the stream position."""
        ids = {str(e["uuid"]) for e in events if e["type"].startswith("task-") and e.get("uuid")}
        new = self._load(ids)
        dirty: set[str] = set()
        children: dict[str, set[str]] = collections.defaultdict(set)
        for event in events:
            kind = event["type"]
            if kind.startswith("worker-"):
                self.state.event(event)
                self.metrics.worker_event(event)
            elif kind.startswith("task-") and event.get("uuid"):
                uuid = str(event["uuid"])
                self._task_event(self.cache[uuid], event)
                dirty.add(uuid)
                if event.get("parent_id") and uuid in new:
                    children[str(event["parent_id"])].add(uuid)
        records = {uuid: to_record(self.cache[uuid]) for uuid in dirty}
        seen = {uuid: first_seen(records[uuid]) for uuid in new if uuid in records}
        self.history.save(records, seen, children, position)
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        self.events_seen += len(events)
        self.lag = max(0.0, time.time() - float(events[-1].get("timestamp") or time.time()))
        self.version += 1

    def _load(self, ids: set[str]) -> set[str]:
        """Put the tasks of ``ids`` in the cache (from the history when stored there);
        the ids that are new to the history."""
        missing = [uuid for uuid in ids if uuid not in self.cache]
        stored = self.history.load(missing)
        for uuid in missing:
            record = stored.get(uuid)
            self.cache[uuid] = to_task(record) if record is not None else Task(uuid)
        for uuid in ids:
            self.cache.move_to_end(uuid)
        return {uuid for uuid in missing if uuid not in stored}

    def _task_event(self, task: Task, event: dict[str, Any]) -> None:
        merge(task, event)
        name = task.name or ""
        self.metrics.task_event(event, name, task.times, task.fields.get("eta"))
        state = TASK_STATES.get(event["type"])
        if state is not None:
            second = int(float(event.get("timestamp") or time.time()))
            self.rates.setdefault(second, collections.Counter())[state] += 1
            while len(self.rates) > WINDOW:
                self.rates.popitem(last=False)
        runtime = event.get("runtime")
        if runtime is not None and name:
            counts = self.runtimes.setdefault(name, [0] * len(RUNTIME_BUCKETS))
            counts[bisect.bisect_left(RUNTIME_BUCKETS, float(runtime))] += 1
        queue = event.get("queue") or event.get("routing_key")
        if queue:
            self.known_queues.add(str(queue))

    # -- every second ---------------------------------------------------------------------
    def periodic(self, now: float | None = None) -> None:
        """Queue lengths, history trims, lost workers and enabling events, each when due."""
        now = now or time.monotonic()
        if self._is_due("queues", QUEUE_POLL, now):
            self.poll_queues()
        if self._is_due("trim", TRIM_EVERY, now):
            self.history.trim()
        if self.enable_events and self._is_due("enable", ENABLE_EVENTS_EVERY, now):
            self.app.control.enable_events()
        for worker in self.state.workers.values():
            if not worker.alive:
                self.metrics.worker_lost(worker.hostname)

    def _is_due(self, what: str, every: float, now: float) -> bool:
        if now < self._due.get(what, 0.0):
            return False
        self._due[what] = now + every
        return True

    def poll_queues(self) -> None:
        names = set(self.known_queues)
        if self.inspector is not None:
            names |= self.inspector.queue_names()
        queues = self.app.broker.queue_sizes(sorted(names))
        scheduled, dead = self.history.scheduled_count(), self.history.dead_count()
        if (queues, scheduled, dead) != (self.queues, self.scheduled, self.dead):
            self.queues, self.scheduled, self.dead = queues, scheduled, dead
            self.version += 1
        self.metrics.queues(queues, scheduled, dead)

    # -- for the pages --------------------------------------------------------------------
    def rate_series(self, seconds: int = 60) -> tuple[int, dict[str, list[int]]]:
        """Tasks per second by state over the last ``seconds``: (first second, series)."""
        end = int(time.time())
        start = end - seconds + 1
        series: dict[str, list[int]] = {}
        for second, counts in list(self.rates.items()):
            if second < start or second > end:
                continue
            for state, count in counts.items():
                series.setdefault(state, [0] * seconds)[second - start] = count
        return start, series
