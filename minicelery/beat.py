"""The beat: sends periodic tasks when they are due. Any number of beats may run at once: a
lease in Redis elects the one that sends, and each run is claimed and published in one atomic
step, so it goes out exactly once however the lease changes hands. Last runs live in Redis, so
a restart neither repeats nor skips a run."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import signals
from .exceptions import ImproperlyConfigured, MiniceleryError, OperationalError
from .schedules import BaseSchedule, maybe_schedule, schedstate

if TYPE_CHECKING:
    from .app import Celery
    from .broker.coordination import Coordinator

logger = logging.getLogger(__name__)

LEASE = "beat"  # the lease's name, and the name of the marks of the entries' last runs
DEFAULT_MAX_INTERVAL = 300.0  # Celery's: what beat_max_loop_interval = 0 means
ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
UTC = dt.timezone.utc
Clock = Callable[[], float]


class SchedulingError(MiniceleryError):
    """A periodic task could not be sent (its entry is retried at its next due time)."""


@dataclass
class ScheduleEntry:
    """One periodic task: what to send and when; ``last_run_at`` comes from Redis."""

    name: str
    task: str
    schedule: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    last_run_at: dt.datetime | None = None
    total_run_count: int = 0

    def is_due(self) -> schedstate:
        assert self.last_run_at is not None, "the scheduler sets last_run_at first"
        due, next_check = self.schedule.is_due(self.last_run_at)
        return schedstate(bool(due), float(next_check))

    def run_time(self, now: float) -> float:
        """The mark this run leaves: the schedule's own run time when it has one."""
        if isinstance(self.schedule, BaseSchedule) and self.last_run_at is not None:
            return self.schedule.run_time(self.last_run_at).timestamp()
        return now

    def __repr__(self) -> str:
        return (
            f"<ScheduleEntry: {self.name} {self.task}(*{list(self.args)}, **{self.kwargs}) "
            f"{self.schedule!r}>"
        )


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


class Scheduler:
    """Decides which entries are due and sends them, each run claimed once in Redis.

    ``clock`` (epoch seconds) is injectable so tests can advance time instead of waiting.
    """

    def __init__(
        self,
        app: Celery,
        owner: str | None = None,
        clock: Clock = time.time,
        max_interval: float | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.app = app
        self.owner = owner
        self.clock = clock
        self.max_interval = max_interval or app.conf.beat_max_loop_interval or DEFAULT_MAX_INTERVAL
        self.entries = {e.name: e for e in load_entries(app, app.conf.beat_schedule, clock)}
        self._coordinator = coordinator
        self._retry_at: dict[str, float] = {}

    @property
    def coordinator(self) -> Coordinator:
        """The lease and the last runs in Redis, reached on first use: checking a schedule
        (worker -B, before it forks) needs no Redis, and a beat that starts before Redis
        waits for it in its loop (``broker_connection_retry_on_startup``)."""
        if self._coordinator is None:
            from .broker.coordination import coordinator_for

            self._coordinator = coordinator_for(self.app.broker)
        return self._coordinator

    def tick(self) -> float:
        """Send every due entry; return the seconds until one may next be due."""
        now = self.clock()
        marks = self.coordinator.marks(LEASE, list(self.entries), _mark(now))
        waits = [self.max_interval]
        for name, entry in self.entries.items():
            waits.append(self._maybe_due(entry, marks[name], now))
        return max(min(waits), 0.0)

    def _maybe_due(self, entry: ScheduleEntry, mark: str, now: float) -> float:
        if self._retry_at.get(entry.name, 0.0) > now:
            return self._retry_at[entry.name] - now
        entry.last_run_at = _from_mark(mark)
        due, next_check = entry.is_due()
        if not due:
            return next_check
        run_at = entry.run_time(now)
        try:
            sent = self.apply_entry(entry, mark, run_at)
        except OperationalError:
            raise
        except (MiniceleryError, TypeError, ValueError) as exc:
            logger.error("Message Error: %s", exc, exc_info=True)
            self._retry_at[entry.name] = now + max(next_check, 1.0)
            return max(next_check, 1.0)
        if not sent:
            return 0.0  # another beat sent it: read the new mark at once
        entry.last_run_at = _from_mark(_mark(run_at))
        entry.total_run_count += 1
        due, next_check = entry.is_due()
        return 0.0 if due else next_check

    def apply_entry(self, entry: ScheduleEntry, expected: str, run_at: float) -> bool:
        """Publish ``entry``'s task if its run (last mark ``expected``) is still unclaimed;
        False when another beat claimed it first."""
        task = self.app.tasks.get(entry.task)
        message, queue, priority = self.app.prepare_message(
            entry.task, list(entry.args), dict(entry.kwargs), task, **entry.options
        )
        outgoing = self.app.outgoing(message, queue, priority)
        mark = _mark(run_at)
        if not self.coordinator.publish_once(
            LEASE, entry.name, expected, mark, outgoing, self.owner
        ):
            logger.debug("Scheduler: %s was sent by another beat", entry.name)
            return False
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        logger.debug("%s sent. id->%s run->%s", entry.task, message.id, mark)
        self.app.published(message, queue)
        return True


class _Stopper:
    """A stop flag a signal handler may set, and a sleep that setting it cuts short."""

    def __init__(self) -> None:
        self.stopped = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def stop(self) -> None:
        self.stopped = True
        # A full pipe means already woken; a closed one, already finished.
        with contextlib.suppress(OSError):
            os.write(self._write, b"x")

    def wait(self, seconds: float) -> None:
        if not self.stopped:
            select.select([self._read], [], [], max(seconds, 0.0))

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Service:
    """Runs a :class:`Scheduler` while holding the beat lease; stands by while another beat
    holds it, ready to take over when that lease runs out (its holder died)."""

    def __init__(
        self,
        app: Celery,
        max_interval: float | None = None,
        clock: Clock = time.time,
        owner: str | None = None,
        lease_timeout: float | None = None,
    ) -> None:
        app.ensure_configured()
        self.app = app
        self.owner = owner or default_owner()
        self.lease_timeout = lease_timeout or app.conf.beat_lease_timeout or 5.0
        self.scheduler = Scheduler(app, self.owner, clock, max_interval)
        self.is_leader = False
        self._outage: float | None = None
        self._stopper = _Stopper()

    @property
    def max_interval(self) -> float:
        return self.scheduler.max_interval

    def start(self) -> None:
        """Run until :meth:`stop` (safe to call from a signal handler or another thread)."""
        logger.info("beat: Starting...")
        signals.beat_init.send(sender=self)
        try:
            while not self._stopper.stopped:
                self._stopper.wait(self.step())
        finally:
            self._resign()

    def stop(self, wait: bool = False) -> None:
        self._stopper.stop()

    def step(self) -> float:
        """Hold (or seek) the lease and send what is due; return the seconds to sleep."""
        try:
            delay = self._step()
        except OperationalError as exc:
            return self._on_outage(exc)
        except Exception:
            logger.exception("beat: unexpected error; retrying")
            return min(self.lease_timeout / 3, 5.0)
        if self._outage is not None:
            logger.warning("beat: Redis is reachable again")
            self._outage = None
        return delay

    def _step(self) -> float:
        coordinator = self.scheduler.coordinator
        held, left = coordinator.hold_lease(LEASE, self.owner, self.lease_timeout)
        if not held:
            if self.is_leader:
                logger.warning("beat: another beat took over sending the periodic tasks")
            self.is_leader = False
            # Wake when the holder's lease would run out unless renewed: a dead holder is
            # replaced right then.
            return (left or self.lease_timeout / 3) + 0.01
        if not self.is_leader:
            logger.info("beat: %s is now the beat that sends (leader)", self.owner)
            self.is_leader = True
        return min(self.scheduler.tick(), self.lease_timeout / 3)

    def _on_outage(self, exc: OperationalError) -> float:
        if self._outage is None:
            logger.error("beat: %s; retrying", exc)
            self._outage = 0.1
        self.is_leader = False
        self._outage = min(self._outage * 2, 5.0)
        return self._outage

    def _resign(self) -> None:
        """Hand the lease over at once rather than when it runs out. Only a leader has one
        to give back: a beat stopped while it waited for Redis to come up has nothing to do
        here and must not wait for Redis again."""
        try:
            if self.is_leader and self.scheduler.coordinator.release_lease(LEASE, self.owner):
                logger.info("beat: released the lease")
        except OperationalError as exc:
            logger.warning("beat: could not release the lease (%s)", exc)
        self.is_leader = False
        self._stopper.close()


class EmbeddedService:
    """A beat in a thread of another process (``worker -B``)."""

    def __init__(self, app: Celery, max_interval: float | None = None, **kwargs: Any) -> None:
        self.service = Service(app, max_interval=max_interval, **kwargs)
        self.thread = threading.Thread(target=self._run, name="Beat", daemon=True)

    def _run(self) -> None:
        signals.beat_embedded_init.send(sender=self)
        try:
            self.service.start()
        except Exception:
            logger.exception("beat: stopped by an unexpected error")

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.service.stop()
        if self.thread.is_alive():
            self.thread.join(timeout)
