"""The beat service's default scheduler: any number of beats may run at once, a lease in Redis
elects the one that sends, and each run is claimed and published in one atomic step, so it
goes out exactly once however the lease changes hands. Last runs live in Redis (where Celery's
keeps a shelve file), so a restart neither repeats nor skips a run."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ImproperlyConfigured, MiniceleryError, OperationalError
from ..schedules import BaseSchedule, maybe_schedule
from .entry import ScheduleEntry, evaluate_args, evaluate_kwargs
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..app import Celery
    from ..broker.coordination import Coordinator

logger = logging.getLogger(__name__)

LEASE = "beat"  # the lease's name, and the name of the marks of the entries' last runs
ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
UTC = dt.timezone.utc
Clock = Callable[[], float]


def run_time(entry: ScheduleEntry, now: float) -> float:
    """The mark a run of ``entry`` leaves: the schedule's own run time when it has one."""
    if isinstance(entry.schedule, BaseSchedule) and entry.last_run_at is not None:
        return entry.schedule.run_time(entry.last_run_at).timestamp()
    return now


def load_entries(
    app: Celery, beat_schedule: Mapping[str, Any], clock: Clock
) -> list[ScheduleEntry]:
    """The entries of ``beat_schedule``, each checked; ImproperlyConfigured names the bad one."""
    return [_entry(app, name, spec, clock) for name, spec in beat_schedule.items()]


def _entry(app: Celery, name: Any, spec: Any, clock: Clock) -> ScheduleEntry:
    where = f"beat_schedule[{name!r}]"
    if not isinstance(name, str) or not name:
        raise ImproperlyConfigured(f"{where}: an entry's name must be a non-empty string")
    if not isinstance(spec, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict with 'task' and 'schedule'")
    unknown = sorted(set(spec) - ENTRY_KEYS)
    if unknown:
        raise ImproperlyConfigured(f"{where}: unknown keys {unknown} (known: {sorted(ENTRY_KEYS)})")
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ImproperlyConfigured(f"{where}: 'task' must be a task name")
    return ScheduleEntry(
        name=name,
        task=task,
        schedule=_schedule(app, where, spec, clock),
        args=tuple(_typed(where, spec, "args", (list, tuple), ())),
        kwargs=dict(_typed(where, spec, "kwargs", Mapping, {})),
        options=dict(_typed(where, spec, "options", Mapping, {})),
        app=app,
    )


def _typed(where: str, spec: Mapping[str, Any], key: str, kind: Any, default: Any) -> Any:
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ImproperlyConfigured(f"{where}: {key!r} has the wrong type ({value!r})")
    return value


def _schedule(app: Celery, where: str, spec: Mapping[str, Any], clock: Clock) -> Any:
    """The entry's schedule, bound to the app (timezone) and to the scheduler's clock."""
    if spec.get("schedule") is None:
        raise ImproperlyConfigured(f"{where}: 'schedule' is missing")
    try:
        value = maybe_schedule(spec["schedule"], bool(spec.get("relative", False)))
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from exc
    if not callable(getattr(value, "is_due", None)):
        raise ImproperlyConfigured(
            f"{where}: 'schedule' must be seconds, a timedelta, schedule(...) or crontab(...)"
        )
    if isinstance(value, BaseSchedule):
        value = copy.copy(value)
        value.app = value._app or app
        if value.nowfun is None:
            value.nowfun = lambda: dt.datetime.fromtimestamp(clock(), UTC)
    return value


def _mark(timestamp: float) -> str:
    return repr(round(timestamp, 6))


def _from_mark(mark: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(mark), UTC)


class PersistentScheduler(Scheduler):
    """Decides which entries are due and sends them, each run claimed once in Redis.

    ``clock`` (epoch seconds) is injectable so tests can advance time instead of waiting;
    ``owner`` names the beat holding the lease.
    """

    def __init__(
        self,
        app: Celery,
        schedule: dict[str, Any] | None = None,
        max_interval: float | None = None,
        Producer: Any = None,
        lazy: bool = False,
        *,
        owner: str | None = None,
        clock: Clock = time.time,
        coordinator: Coordinator | None = None,
        **kwargs: Any,
    ) -> None:
        self.owner = owner
        self.clock = clock
        self._coordinator = coordinator
        self._retry_at: dict[str, float] = {}
        super().__init__(app, schedule, max_interval, Producer, lazy, **kwargs)

    def setup_schedule(self) -> None:
        """The entries of ``beat_schedule``, each checked (their last runs are in Redis)."""
        entries = load_entries(self.app, self.app.conf.beat_schedule, self.clock)
        self.schedule.update({str(entry.name): entry for entry in entries})

    @property
    def entries(self) -> dict[str, ScheduleEntry]:
        """The entries by name (the schedule)."""
        entries: dict[str, ScheduleEntry] = self.schedule
        return entries

    @property
    def coordinator(self) -> Coordinator:
        """The lease and the last runs in Redis, reached on first use: checking a schedule
        (worker -B, before it forks) needs no Redis, and a beat that starts before Redis
        waits for it in its loop (``broker_connection_retry_on_startup``)."""
        if self._coordinator is None:
            from ..broker.coordination import coordinator_for

            self._coordinator = coordinator_for(self.app.broker)
        return self._coordinator

    def tick(self) -> float:
        """Send every due entry; return the seconds until one may next be due."""
        now = self.clock()
        marks = self.coordinator.marks(LEASE, list(self.entries), _mark(now))
        waits = [self.max_interval]
        for name, entry in self.entries.items():
            waits.append(self._maybe_due(name, entry, marks[name], now))
        return max(min(waits), 0.0)

    def _maybe_due(self, name: str, entry: ScheduleEntry, mark: str, now: float) -> float:
        retry_at = self._retry_at.get(name, 0.0)
        if retry_at > now:
            return retry_at - now
        entry.last_run_at = _from_mark(mark)
        due, next_check = self._checked(entry)
        if not due:
            return float(next_check)
        run_at = run_time(entry, now)
        try:
            sent = self.publish_run(entry, mark, run_at)
        except OperationalError:
            raise
        except (MiniceleryError, TypeError, ValueError) as exc:
            logger.error("Message Error: %s", exc, exc_info=True)
            wait = max(float(next_check), 1.0)
            self._retry_at[name] = now + wait
            return wait
        if not sent:
            return 0.0  # another beat sent it: read the new mark at once
        entry.last_run_at = _from_mark(_mark(run_at))
        entry.total_run_count += 1
        due, next_check = self._checked(entry)
        return 0.0 if due else float(next_check)

    def publish_run(self, entry: ScheduleEntry, expected: str, run_at: float) -> bool:
        """Publish ``entry``'s task if its run (last mark ``expected``) is still unclaimed;
        False when another beat claimed it first."""
        name, task_name = str(entry.name), str(entry.task)
        options = dict(entry.options)
        options["headers"] = {**(options.get("headers") or {}), "celery_beat_task": True}
        message, queue, priority = self.app.prepare_message(
            task_name, evaluate_args(entry.args), evaluate_kwargs(entry.kwargs),
            self.app.tasks.get(task_name), **options,
        )  # fmt: skip
        outgoing = self.app.outgoing(message, queue, priority)
        mark = _mark(run_at)
        if not self.coordinator.publish_once(LEASE, name, expected, mark, outgoing, self.owner):
            logger.debug("Scheduler: %s was sent by another beat", name)
            return False
        logger.info("Scheduler: Sending due task %s (%s)", name, task_name)
        logger.debug("%s sent. id->%s run->%s", task_name, message.id, mark)
        self.app.published(message, queue)
        return True
