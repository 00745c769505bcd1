"""Celery's in-memory scheduler: entries in a dict, their next due times in a heap, one due
entry sent per ``tick()``. The base class of custom schedulers (and what ``Scheduler`` means
in Celery's API); the beat service's default keeps its state in Redis instead
(``PersistentScheduler``)."""

from __future__ import annotations

import copy
import heapq
import logging
import numbers
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..exceptions import MiniceleryError
from ..schedules import humanize_seconds
from .entry import ScheduleEntry, evaluate_args, evaluate_kwargs

logger = logging.getLogger(__name__)

DEFAULT_MAX_INTERVAL = 300.0  # Celery's: what beat_max_loop_interval = 0 means
PRIORITY = 5  # every entry's: the time alone orders the heap


class SchedulingError(MiniceleryError):
    """A periodic task could not be sent (its entry is retried at its next due time)."""


class event_t(NamedTuple):  # Celery's lower-case name
    """One heap item: when ``entry`` is next worth checking (epoch seconds)."""

    time: float
    priority: int
    entry: Any


class Scheduler:
    """Decides which entries are due and sends them, in this process's memory.

    ``lazy=True`` leaves the schedule empty (``beat_schedule`` is not read), for a scheduler
    built to be inspected or filled with :meth:`add`.
    """

    Entry: type[ScheduleEntry] = ScheduleEntry
    max_interval: float = DEFAULT_MAX_INTERVAL
    sync_every: float = 3 * 60
    sync_every_tasks: int | None = None

    def __init__(
        self,
        app: Any,
        schedule: dict[str, Any] | None = None,
        max_interval: float | None = None,
        Producer: Any = None,
        lazy: bool = False,
        sync_every_tasks: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.app = app
        self.data: dict[str, Any] = {} if schedule is None else schedule
        self.max_interval = max_interval or app.conf.beat_max_loop_interval or self.max_interval
        self.Producer = Producer
        self._heap: list[event_t] | None = None
        self.old_schedulers: dict[str, Any] | None = None
        every = app.conf.beat_sync_every if sync_every_tasks is None else sync_every_tasks
        self.sync_every_tasks = every or None
        self._last_sync: float | None = None
        self._tasks_since_sync = 0
        if not lazy:
            self.setup_schedule()

    # -- the schedule ---------------------------------------------------------------------
    def get_schedule(self) -> dict[str, Any]:
        return self.data

    def set_schedule(self, schedule: dict[str, Any]) -> None:
        self.data = schedule

    schedule = property(get_schedule, set_schedule)

    def setup_schedule(self) -> None:
        self.install_default_entries(self.data)
        self.merge_inplace(self.app.conf.beat_schedule)

    def install_default_entries(self, data: Mapping[str, Any]) -> None:
        """Nothing to add: results in Redis expire by themselves (no cleanup task)."""

    def add(self, **kwargs: Any) -> ScheduleEntry:
        """Add (or replace) the entry built from ``kwargs``; returns it."""
        entry = self.Entry(app=self.app, **kwargs)
        self.schedule[str(entry.name)] = entry
        return entry

    def _maybe_entry(self, name: str, entry: Any) -> ScheduleEntry:
        if isinstance(entry, self.Entry):
            entry.app = self.app
            return entry
        return self.Entry(**dict(entry, name=name, app=self.app))

    def update_from_dict(self, entries: Mapping[str, Any]) -> None:
        self.schedule.update({name: self._maybe_entry(name, e) for name, e in entries.items()})

    def merge_inplace(self, entries: Mapping[str, Any]) -> None:
        """Make the schedule hold exactly ``entries``, keeping the run history of those it
        already had."""
        schedule = self.schedule
        for name in set(schedule) ^ set(entries):
            schedule.pop(name, None)
        for name, spec in entries.items():
            entry = self.Entry(**dict(spec, name=name, app=self.app))
            if schedule.get(name):
                schedule[name].update(entry)
            else:
                schedule[name] = entry

    def schedules_equal(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
        if old is None or new is None:
            return old is new
        if set(old) != set(new):
            return False
        return all(new.get(name) and new[name] == entry for name, entry in old.items())

    # -- timing -----------------------------------------------------------------------------
    def adjust(self, n: float | None, drift: float = -0.010) -> float | None:
        return n + drift if n and n > 0 else n

    def _when(self, entry: ScheduleEntry, next_time_to_run: float | None) -> float:
        """The epoch time ``next_time_to_run`` seconds from now by ``entry``'s clock."""
        return entry.when() + (self.adjust(next_time_to_run) or 0)

    def is_due(self, entry: ScheduleEntry) -> Any:
        return entry.is_due()

    def _checked(self, entry: ScheduleEntry) -> tuple[bool, Any]:
        """``is_due`` of ``entry``; one whose next run cannot be worked out is logged and
        checked again ``max_interval`` later, so it does not stop the other entries."""
        try:
            due, next_check = self.is_due(entry)
        except Exception:
            return self._is_due_failed(entry)
        return bool(due), next_check

    def _is_due_failed(self, entry: ScheduleEntry) -> tuple[bool, float]:
        logger.error(
            "beat: Cannot calculate the next run of %r, trying again in %s.",
            entry.name, humanize_seconds(self.max_interval), exc_info=True,
        )  # fmt: skip
        return False, self.max_interval

    def populate_heap(self) -> None:
        """Rebuild the heap from the schedule."""
        self._heap = []
        for entry in self.schedule.values():
            due, next_check = self._checked(entry)
            self._heap.append(event_t(self._when(entry, 0 if due else next_check), PRIORITY, entry))
        heapq.heapify(self._heap)

    def tick(self) -> float:
        """Send the entry at the top of the heap if it is due; return the seconds until the
        next call is worth making (0: call again now; negative: the heap's top changed while
        this call ran)."""
        if self._heap is None or not self.schedules_equal(self.old_schedulers, self.schedule):
            self.old_schedulers = copy.copy(self.schedule)
            self.populate_heap()
        heap = self._heap
        assert heap is not None
        if not heap:
            return self.max_interval
        event = heap[0]
        entry = event.entry
        now = self._when(entry, 0)
        if event.time > now:
            return min(event.time - now, self.max_interval)
        due, next_check = self._checked(entry)
        if heap[0] is not event:
            # An entry was added while is_due ran and took the top: leave the rest to the
            # next call rather than dispatch (or reheap) the wrong one.
            return self._until_top()
        heapq.heappop(heap)
        if due:
            next_entry = self.reserve(entry)
            self.apply_entry(entry, producer=self.producer)
            heapq.heappush(heap, event_t(self._when(next_entry, next_check), event.priority,
                                         next_entry))  # fmt: skip
            return 0
        # Ready by the heap's time, but the entry asks to wait: reheap it at that time, or it
        # sits on top and the entries behind it never get their turn.
        delay = float(next_check) if isinstance(next_check, numbers.Real) else self.max_interval
        heapq.heappush(heap, event_t(self._when(entry, delay), event.priority, entry))
        if heap[0].entry is not entry:
            return 0
        return min(self.adjust(delay) or 0, self.max_interval)

    def _until_top(self) -> float:
        assert self._heap
        top = self._heap[0]
        return min(top.time - self._when(top.entry, 0), self.max_interval)

    # -- sending ----------------------------------------------------------------------------
    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:
        """Record the run before sending it: a send that fails does not repeat forever."""
        new_entry = self.schedule[str(entry.name)] = next(entry)
        return new_entry

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            result = self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            logger.error("Message Error: %s", exc, exc_info=True)
        else:
            logger.debug("%s sent. id->%s", entry.task, getattr(result, "id", None))

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send ``entry``'s task now (marked with the ``celery_beat_task`` header)."""
        entry = self.reserve(entry) if advance else entry
        task = self.app.tasks.get(entry.task)
        options = dict(entry.options)
        options["headers"] = {**(options.get("headers") or {}), "celery_beat_task": True}
        args, kwargs = evaluate_args(entry.args), evaluate_kwargs(entry.kwargs)
        try:
            if task is not None:
                return task.apply_async(args, kwargs, producer=producer, **options)
            return self.send_task(entry.task, args, kwargs, producer=producer, **options)
        except Exception as exc:
            raise SchedulingError(f"Couldn't apply scheduled task {entry.name}: {exc}") from exc
        finally:
            self._tasks_since_sync += 1
            if self.should_sync():
                self._do_sync()

    def send_task(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("producer", None)
        return self.app.send_task(*args, **kwargs)

    @property
    def producer(self) -> Any:
        """Celery passes a kombu producer around; messages here go through the app."""
        return None

    # -- persistence ------------------------------------------------------------------------
    def should_sync(self) -> bool:
        if not self._last_sync or time.monotonic() - self._last_sync > self.sync_every:
            return True
        return bool(self.sync_every_tasks and self._tasks_since_sync >= self.sync_every_tasks)

    def _do_sync(self) -> None:
        try:
            logger.debug("beat: Synchronizing schedule...")
            self.sync()
        finally:
            self._last_sync = time.monotonic()
            self._tasks_since_sync = 0

    def sync(self) -> None:
        """Save the schedule (nothing to save in memory)."""

    def close(self) -> None:
        self.sync()

    @property
    def info(self) -> str:
        return ""
