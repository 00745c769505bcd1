"""Celery's in-memory ``beat.Scheduler`` on ``memory://``, with the app's clock replaced: the
``lazy`` constructor and ``add()``, one due entry sent per ``tick()`` (which answers 0 then),
the heap of due times, an entry whose ``is_due`` raises or asks to wait while others are due,
the service running it with ``scheduler_cls``, and the beat's remote-control node (it
answers ``ping`` while the scheduler ticks, and falls silent when it stops)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from minicelery import Celery
from minicelery.beat import (
    EmbeddedService,
    PersistentScheduler,
    ScheduleEntry,
    Scheduler,
    Service,
    beat_nodename,
    event_t,
)
from minicelery.message import TaskMessage, decode_message
from minicelery.serialization import accepted_content_types
from tests.helpers import wait_until

UTC = dt.timezone.utc
TASK = "t.record"
START = dt.datetime(2024, 5, 6, 10, 0, tzinfo=UTC)


class Clock:
    """The app's clock (``app.now``), moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def taken(app: Celery) -> list[TaskMessage]:
    return [decode_message(d.data) for d in app.broker.reserve("test", ["celery"], 1000)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(make_app: Callable[..., Celery], clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Celery:
    app = make_app(beat_schedule={"configured": {"task": TASK, "schedule": 30.0}})
    monkeypatch.setattr(app, "now", clock)
    return app


def test_a_lazy_scheduler_holds_only_what_is_added(app: Celery) -> None:
    assert set(Scheduler(app).schedule) == {"configured"}
    scheduler = Scheduler(app=app, lazy=True)
    assert scheduler.schedule == {}
    entry = scheduler.add(name="mine", task=TASK, schedule=dt.timedelta(seconds=10), args=(1,))
    assert isinstance(entry, ScheduleEntry)
    assert scheduler.schedule == {"mine": entry}
    assert entry.last_run_at == START  # the app's clock, when no last run is given
    assert entry.total_run_count == 0


def test_tick_sends_one_due_entry_and_answers_zero(app: Celery, clock: Clock) -> None:
    scheduler = Scheduler(app=app, lazy=True)
    scheduler.add(name="every-10", task=TASK, schedule=10, args=(1, 2),
                  options={"task_id": "run-1"})  # fmt: skip
    assert scheduler.tick() == pytest.approx(10.0, abs=0.02)
    clock.advance(9)
    assert scheduler.tick() == pytest.approx(1.0, abs=0.02)
    assert taken(app) == []
    clock.advance(1)
    assert scheduler.tick() == 0
    [message] = taken(app)
    assert (message.id, message.task) == ("run-1", TASK)
    assert message.decode_body(accepted_content_types(["json"]))[:2] == ([1, 2], {})
    assert message.headers["celery_beat_task"] is True
    entry = scheduler.schedule["every-10"]
    assert (entry.total_run_count, entry.last_run_at) == (1, clock.now)
    assert scheduler.tick() == pytest.approx(10.0, abs=0.02)  # not sent twice
    assert taken(app) == []


def test_an_entry_whose_is_due_raises_is_retried_later_and_others_still_run(
    app: Celery, clock: Clock
) -> None:
    scheduler = Scheduler(app=app, lazy=True, max_interval=60)
    last_run = START - dt.timedelta(hours=1)
    broken = scheduler.add(name="broken", task=TASK, schedule=1, last_run_at=last_run)
    scheduler.add(name="healthy", task=TASK, schedule=1, last_run_at=last_run,
                  options={"task_id": "healthy"})  # fmt: skip

    def cannot_tell(last_run_at: dt.datetime) -> tuple[bool, float]:
        raise TypeError("cannot calculate the next run")

    broken.schedule.is_due = cannot_tell
    scheduler.populate_heap()
    times = {event.entry.name: event.time for event in scheduler._heap or []}
    now = START.timestamp()
    assert times["broken"] == pytest.approx(now + 60, abs=0.02)
    assert times["healthy"] == now
    scheduler.old_schedulers = scheduler.schedule
    scheduler._heap = [event_t(now - 2, 5, broken), event_t(now - 1, 5, scheduler.schedule[
        "healthy"])]  # fmt: skip
    assert scheduler.tick() == 0  # broken moved back; healthy on top: call again now
    assert taken(app) == []
    assert scheduler.tick() == 0
    assert [m.id for m in taken(app)] == ["healthy"]
    assert scheduler.schedule["broken"].total_run_count == 0


@pytest.mark.parametrize("first_due", [True, False])
def test_an_entry_that_takes_the_top_during_is_due_is_left_to_the_next_tick(
    app: Celery, first_due: bool
) -> None:
    scheduler = Scheduler(app=app, lazy=True)
    last_run = START - dt.timedelta(hours=1)
    first = scheduler.add(name="first", task=TASK, schedule=1, last_run_at=last_run)
    scheduler.old_schedulers = scheduler.schedule
    scheduler._heap = [event_t(scheduler._when(first, 0) - 1, 5, first)]

    def adds_second(last_run_at: dt.datetime) -> tuple[bool, float]:
        second = scheduler.add(name="second", task=TASK, schedule=1, last_run_at=last_run,
                               options={"task_id": "second"})  # fmt: skip
        assert scheduler._heap is not None
        scheduler._heap.insert(0, event_t(scheduler._when(second, 0) - 2, 5, second))
        return first_due, 1

    real_is_due = first.schedule.is_due
    first.schedule.is_due = adds_second
    assert scheduler.tick() < 0  # neither sent nor reheaped: the top is someone else
    assert taken(app) == []
    first.schedule.is_due = real_is_due
    assert scheduler.tick() == 0
    assert [m.id for m in taken(app)] == ["second"]
    assert scheduler.schedule["first"].total_run_count == 0


def test_a_changed_schedule_rebuilds_the_heap(app: Celery, clock: Clock) -> None:
    scheduler = Scheduler(app=app, lazy=True)
    scheduler.add(name="slow", task=TASK, schedule=100)
    assert scheduler.tick() == pytest.approx(100, abs=0.02)
    scheduler.add(name="fast", task=TASK, schedule=5)
    assert scheduler.tick() == pytest.approx(5, abs=0.02)
    scheduler.merge_inplace({"other": {"task": TASK, "schedule": 7}})
    assert set(scheduler.schedule) == {"other"}
    assert scheduler.tick() == pytest.approx(7, abs=0.02)


def test_the_service_runs_a_scheduler_class_given_by_path(app: Celery, clock: Clock) -> None:
    service = Service(app, max_interval=0.05, scheduler_cls="celery.beat:Scheduler")
    assert type(service.scheduler) is Scheduler
    assert isinstance(Service(app).scheduler, PersistentScheduler)  # the default
    clock.advance(30)
    thread = threading.Thread(target=service.start, daemon=True)
    thread.start()
    try:
        sent: list[TaskMessage] = []
        assert wait_until(lambda: bool(sent.extend(taken(app)) or sent), timeout=10)
        assert sent[0].task == TASK
    finally:
        service.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


# --------------------------------------------------------------------------- remote control


@pytest.fixture
def beat_node(app: Celery) -> Iterator[tuple[Service, str]]:
    """A beat answering remote control in a thread, as ``celerybeat-test@<host>``."""
    app.conf.beat_enable_remote_control = True
    app.conf.beat_remote_control_max_tick_age = 1.0
    service = Service(app, max_interval=0.1, scheduler_cls=Scheduler, hostname="celerybeat-test@%h")
    thread = threading.Thread(target=service.start, daemon=True)
    thread.start()
    node = beat_nodename(service.hostname)
    try:
        wait_until(lambda: app.control.ping(destination=[node], timeout=0.5), timeout=10)
        yield service, node
    finally:
        service.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_beat_node_names() -> None:
    host = socket.gethostname()
    assert beat_nodename() == f"celerybeat@{host}"
    assert beat_nodename("b1@%h") == f"b1@{host}"
    assert beat_nodename("example.com") == "celerybeat@example.com"


def test_a_ticking_beat_answers_ping_and_only_ping(
    app: Celery, beat_node: tuple[Service, str]
) -> None:
    _, node = beat_node
    deadline = time.monotonic() + 2.5  # past the 1 s staleness limit
    while time.monotonic() < deadline:
        assert app.control.ping(destination=[node], timeout=2) == [{node: {"ok": "pong"}}]
    assert app.control.inspect(destination=[node], timeout=0.3).active() is None


def test_a_wedged_beat_falls_silent(app: Celery, beat_node: tuple[Service, str]) -> None:
    service, node = beat_node
    released = threading.Event()

    def wedged() -> float:
        released.wait(30)
        return 0.1

    service.scheduler.tick = wedged  # type: ignore[method-assign]
    try:
        wait_until(lambda: app.control.ping(destination=[node], timeout=0.3) == [], timeout=10)
    finally:
        released.set()
    # Ticking again, it answers again.
    wait_until(lambda: app.control.ping(destination=[node], timeout=0.3), timeout=10)


def test_remote_control_is_off_by_default_and_in_a_worker(app: Celery) -> None:
    assert Service(app, scheduler_cls=Scheduler).remote_control is False
    app.conf.beat_enable_remote_control = True
    assert Service(app, scheduler_cls=Scheduler).remote_control is True
    # Embedded in a worker, the worker's own node answers for the process.
    assert EmbeddedService(app).service.remote_control is False
