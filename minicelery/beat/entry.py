"""One periodic task of a schedule (Celery's ``ScheduleEntry``): what to send, on which
schedule, when it last ran and how often; and ``BeatLazyFunc``, an argument computed when
the task is sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from ..schedules import maybe_schedule, schedstate
from ..utils.time import maybe_make_aware

EDITABLE = ("task", "args", "kwargs", "options", "schedule")


class BeatLazyFunc:
    """An argument of a ``beat_schedule`` entry called each time the task is sent, e.g.
    ``'kwargs': {'sent_at': BeatLazyFunc(datetime.now)}``."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._func = func
        self._args = args
        self._kwargs = kwargs

    def __call__(self) -> Any:
        return self.delay()

    def delay(self) -> Any:
        return self._func(*self._args, **self._kwargs)


def evaluate_args(args: Any) -> list[Any]:
    """The entry's positional arguments, lazy ones called."""
    return [arg() if isinstance(arg, BeatLazyFunc) else arg for arg in args or ()]


def evaluate_kwargs(kwargs: Any) -> dict[str, Any]:
    """The entry's keyword arguments, lazy ones called."""
    return {k: v() if isinstance(v, BeatLazyFunc) else v for k, v in (kwargs or {}).items()}


class ScheduleEntry:
    """A periodic task as Celery's scheduler keeps it. ``schedule`` is seconds, a
    ``timedelta`` or a schedule object; ``last_run_at`` defaults to now (the first run comes
    one period after the entry is first seen)."""

    def __init__(
        self,
        name: str | None = None,
        task: str | None = None,
        last_run_at: dt.datetime | None = None,
        total_run_count: int | None = None,
        schedule: Any = None,
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        relative: bool = False,
        app: Any = None,
    ) -> None:
        self.app = app
        self.name = name
        self.task = task
        self.args = args
        self.kwargs = kwargs or {}
        self.options = options or {}
        self.schedule = maybe_schedule(schedule, relative, app=app)
        self.last_run_at = last_run_at or self.default_now()
        self.total_run_count = total_run_count or 0

    def default_now(self) -> dt.datetime:
        """The schedule's clock (the app's when the schedule has none)."""
        clock = getattr(self.schedule, "now", None) or self.app.now
        now: dt.datetime = clock()
        return now

    _default_now = default_now

    def _next_instance(self, last_run_at: dt.datetime | None = None) -> ScheduleEntry:
        """A copy that has run once more, last at ``last_run_at`` (default now)."""
        fields = dict(self)
        fields.update(
            last_run_at=last_run_at or self.default_now(),
            total_run_count=self.total_run_count + 1,
        )
        return self.__class__(**fields)

    __next__ = next = _next_instance

    def __reduce__(self) -> Any:
        return self.__class__, (
            self.name, self.task, self.last_run_at, self.total_run_count,
            self.schedule, self.args, self.kwargs, self.options,
        )  # fmt: skip

    def update(self, other: ScheduleEntry) -> None:
        """Take the editable fields (task, schedule, args, kwargs, options) of ``other``,
        keeping this entry's run history."""
        for attr in EDITABLE:
            setattr(self, attr, getattr(other, attr))

    def is_due(self) -> schedstate:
        """The schedule's answer for this entry's last run: ``(is_due, next_check)``."""
        result: schedstate = self.schedule.is_due(self.last_run_at)
        return result

    def when(self) -> float:
        """Now by this entry's clock, as epoch seconds (the scheduler's heap time)."""
        return maybe_make_aware(self.default_now()).timestamp()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(vars(self).items())

    def __repr__(self) -> str:
        call = f"{self.task}(*{list(self.args or ())}, **{self.kwargs or {}})"
        return f"<{type(self).__name__}: {self.name} {call} {self.schedule}"

    def __lt__(self, other: object) -> bool:
        # In the heap the time and priority decide; equal ones may go in any order.
        if isinstance(other, ScheduleEntry):
            return id(self) < id(other)
        return NotImplemented

    def editable_fields_equal(self, other: object) -> bool:
        return all(getattr(self, attr) == getattr(other, attr, None) for attr in EDITABLE)

    def __eq__(self, other: object) -> bool:
        """Entries are equal when their editable fields are (their run history aside)."""
        return self.editable_fields_equal(other)

    __hash__ = None  # type: ignore[assignment]
