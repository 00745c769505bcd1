"""The beat on ``memory://`` with a clock the tests advance: crontab and interval entries sent
at the right time, each run sent once by several schedulers (the lease and the atomic claim),
restarts that neither repeat nor skip, entries from ``add_periodic_task`` and
``on_after_configure``, configuration errors, and the lease's life cycle."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest

from minicelery import Celery
from minicelery.beat import LEASE, EmbeddedService, PersistentScheduler, Service
from minicelery.broker.coordination import Coordinator, coordinator_for
from minicelery.broker.redis import RedisBroker
from minicelery.exceptions import ImproperlyConfigured
from minicelery.message import TaskMessage, decode_message
from minicelery.schedules import crontab, solar
from minicelery.serialization import accepted_content_types
from tests.helpers import wait_until

UTC = dt.timezone.utc
TASK = "t.record"
ACCEPT = accepted_content_types(["json"])


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, *fields: int) -> None:
        self.now = dt.datetime(*fields, tzinfo=UTC).timestamp()  # type: ignore[misc]

    def advance(self, seconds: float) -> None:
        self.now += seconds


def taken(app: Celery, queue: str = "celery") -> list[TaskMessage]:
    """Take every message waiting on ``queue``."""
    broker = app.broker
    return [decode_message(d.data) for d in broker.reserve("test", [queue], 1000)]


def leader(app: Celery, owner: str, clock: FakeClock, **kwargs: Any) -> PersistentScheduler:
    """A scheduler holding the beat lease (as its Service would)."""
    scheduler = PersistentScheduler(app, owner=owner, clock=clock, **kwargs)
    held, _ = scheduler.coordinator.hold_lease(LEASE, owner, 3600)
    assert held
    return scheduler


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2024, 5, 6, 10, 7, 30, tzinfo=UTC))


# --------------------------------------------------------------------------- when


def test_a_crontab_entry_fires_at_the_right_minute(
    make_app: Callable[..., Celery], clock: FakeClock
) -> None:
    app = make_app(
        beat_schedule={"quarter": {"task": TASK, "schedule": crontab(minute="*/15"), "args": [7]}}
    )
    scheduler = leader(app, "a", clock, max_interval=3600)
    assert scheduler.tick() == pytest.approx(450.0)  # first seen at 10:07:30; due 10:15
    clock.set(2024, 5, 6, 10, 14, 59)
    assert scheduler.tick() == pytest.approx(1.0)
    assert taken(app) == []
    clock.set(2024, 5, 6, 10, 15, 0)
    assert scheduler.tick() == pytest.approx(900.0)
    [message] = taken(app)
    assert message.task == TASK
    assert message.decode_body(ACCEPT)[:2] == ([7], {})
    clock.advance(0.5)
    scheduler.tick()
    assert taken(app) == []  # sent once, not again within the minute
    clock.set(2024, 5, 6, 10, 30, 20)
    scheduler.tick()
    assert len(taken(app)) == 1
    assert scheduler.entries["quarter"].total_run_count == 2
    assert scheduler.coordinator.counts(LEASE) == {"quarter": 2}


def test_a_solar_entry_fires_at_sunset(make_app: Callable[..., Celery]) -> None:
    clock = FakeClock(dt.datetime(2026, 6, 21, 20, 0, tzinfo=UTC))
    london_sunset = solar("sunset", 51.5074, -0.1278)  # 20:21 UTC that day
    app = make_app(beat_schedule={"dusk": {"task": TASK, "schedule": london_sunset}})
    scheduler = leader(app, "a", clock, max_interval=86400)
    assert 19 * 60 < scheduler.tick() < 23 * 60
    assert taken(app) == []
    clock.set(2026, 6, 21, 20, 25)
    assert 23 * 3600 < scheduler.tick() < 25 * 3600  # sent; next: tomorrow's sunset
    assert [m.task for m in taken(app)] == [TASK]


def test_crontab_follows_the_app_timezone(make_app: Callable[..., Celery]) -> None:
    app = make_app(
        timezone="Europe/Paris",
        beat_schedule={"morning": {"task": TASK, "schedule": crontab(minute=0, hour=7)}},
    )
    clock = FakeClock(dt.datetime(2024, 7, 1, 4, 0, tzinfo=UTC))  # 06:00 in Paris
    scheduler = leader(app, "a", clock, max_interval=86400)
    assert scheduler.tick() == pytest.approx(3600.0)
    clock.set(2024, 7, 1, 5, 0, 0)  # 07:00 in Paris
    scheduler.tick()
    assert len(taken(app)) == 1


def test_an_interval_entry_runs_on_its_grid(
    make_app: Callable[..., Celery], clock: FakeClock
) -> None:
    app = make_app(beat_schedule={"ten": {"task": TASK, "schedule": 10.0}})
    scheduler = leader(app, "a", clock)
    start = clock.now
    assert scheduler.tick() == pytest.approx(10.0)  # first run one interval after first seen
    clock.advance(9.9)
    scheduler.tick()
    assert taken(app) == []
    clock.now = start + 10.4  # sent late: the next run stays at start + 20
    assert scheduler.tick() == pytest.approx(9.6)
    assert len(taken(app)) == 1
    clock.now = start + 20
    scheduler.tick()
    assert len(taken(app)) == 1
    clock.now = start + 95  # no beat for a while: the missed runs count as one
    assert scheduler.tick() == pytest.approx(5.0)
    assert len(taken(app)) == 1
    clock.now = start + 100
    scheduler.tick()
    assert len(taken(app)) == 1


def test_entry_options_route_and_delay_the_message(
    make_app: Callable[..., Celery], clock: FakeClock
) -> None:
    app = make_app(
        beat_schedule={
            "routed": {
                "task": TASK,
                "schedule": dt.timedelta(seconds=5),
                "args": (1, 2),
                "kwargs": {"z": 3},
                "options": {"queue": "periodic", "priority": 9, "expires": 30},
            },
            "later": {"task": TASK, "schedule": 5, "options": {"countdown": 60}},
        }
    )
    scheduler = leader(app, "a", clock)
    scheduler.tick()  # first seen: due one interval later
    clock.advance(5)
    scheduler.tick()
    [message] = taken(app, "periodic")
    assert message.decode_body(ACCEPT)[:2] == ([1, 2], {"z": 3})
    assert message.headers["expires"] is not None
    assert taken(app) == []  # "later" waits in the scheduled set
    assert app.broker.next_due() is not None


# --------------------------------------------------------------------------- once


def test_two_schedulers_send_each_run_once_over_twenty_runs(
    make_app: Callable[..., Celery], clock: FakeClock
) -> None:
    app = make_app(beat_schedule={"tick": {"task": TASK, "schedule": 1.0}})
    first = PersistentScheduler(app, owner="a", clock=clock)
    second = PersistentScheduler(app, owner="b", clock=clock)
    coordinator = first.coordinator
    assert coordinator.hold_lease(LEASE, "a", 3600)[0]
    first.tick()
    second.tick()
    sent = 0
    for step in range(1, 21):
        clock.advance(1.0)
        if step == 6:  # the lease changes hands
            assert coordinator.release_lease(LEASE, "a")
            assert coordinator.hold_lease(LEASE, "b", 3600)[0]
        holder, other = (first, second) if step < 6 else (second, first)
        other.tick()  # due, but not the lease holder: sends nothing
        holder.tick()
        sent += len(taken(app))
    assert sent == 20
    assert coordinator.counts(LEASE) == {"tick": 20}
    assert first.entries["tick"].total_run_count == 5
    assert second.entries["tick"].total_run_count == 15


def test_a_stale_claim_sends_nothing(make_app: Callable[..., Celery], clock: FakeClock) -> None:
    """Without any lease (owner None) the claim alone keeps a run single: a beat that read
    the last run before another beat sent it cannot send it again."""
    app = make_app(beat_schedule={"tick": {"task": TASK, "schedule": 1.0}})
    first = PersistentScheduler(app, owner=None, clock=clock)
    second = PersistentScheduler(app, owner=None, clock=clock)
    first.tick()
    clock.advance(1.0)
    [mark] = first.coordinator.marks(LEASE, ["tick"], "unused").values()
    second.tick()  # sends the run
    entry = first.entries["tick"]
    assert not first.publish_run(entry, mark, clock.now)  # the stale reader's attempt
    first.tick()
    assert len(taken(app)) == 1


def test_only_the_lease_holder_sends(make_app: Callable[..., Celery], clock: FakeClock) -> None:
    app = make_app(beat_schedule={"tick": {"task": TASK, "schedule": 1.0}})
    follower = PersistentScheduler(app, owner="b", clock=clock)
    leader(app, "a", clock)
    follower.tick()
    clock.advance(5)
    assert follower.entries["tick"].is_due().is_due
    follower.tick()
    assert taken(app) == []


def test_a_restart_neither_repeats_nor_skips_a_run(
    make_app: Callable[..., Celery], clock: FakeClock
) -> None:
    app = make_app(beat_schedule={"ten": {"task": TASK, "schedule": 10.0}})
    start = clock.now
    leader(app, "a", clock).tick()
    clock.now = start + 10
    leader(app, "a", clock).tick()
    assert len(taken(app)) == 1
    # A new process at the same moment does not send the run again...
    assert leader(app, "a", clock).tick() == pytest.approx(10.0)
    assert taken(app) == []
    # ...and one started just before the next run does not postpone it.
    clock.now = start + 19.5
    restarted = leader(app, "a", clock)
    assert restarted.tick() == pytest.approx(0.5)
    clock.now = start + 20
    restarted.tick()
    assert len(taken(app)) == 1


# --------------------------------------------------------------------------- entries


def test_add_periodic_task_from_on_after_configure(make_app: Callable[..., Celery]) -> None:
    app = make_app()

    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    calls: list[Any] = []

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
        calls.append(sender)
        sender.add_periodic_task(10.0, add.s(2, 2), name="add every 10")
        sender.add_periodic_task(30.0, add.s(1), args=(5,), queue="periodic", expires=10)
        sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1), add, args=(1, 1))

    app.ensure_configured()
    app.ensure_configured()
    assert calls == [app]
    schedule = app.conf.beat_schedule
    assert schedule["add every 10"] == {
        "schedule": 10.0,
        "task": "t.add",
        "args": (2, 2),
        "kwargs": {},
        "options": {},
    }
    assert schedule["t.add(5, 1)"]["options"] == {"queue": "periodic", "expires": 10}
    assert schedule["t.add(1, 1)"]["schedule"] == crontab(hour=7, minute=30, day_of_week=1)
    start = FakeClock(dt.datetime(2024, 5, 6, tzinfo=UTC))
    scheduler = PersistentScheduler(app, owner=None, clock=start)
    assert set(scheduler.entries) == {"add every 10", "t.add(5, 1)", "t.add(1, 1)"}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"schedule": 10}, "'task' must be a task name"),
        ({"task": TASK}, "'schedule' is missing"),
        ({"task": TASK, "schedule": "*/5"}, "'schedule' must be seconds"),
        ({"task": TASK, "schedule": -1}, "run_every must be positive"),
        ({"task": TASK, "schedule": 10, "every": 5}, "unknown keys ['every']"),
        ({"task": TASK, "schedule": 10, "args": 5}, "'args' has the wrong type"),
        ({"task": TASK, "schedule": 10, "kwargs": [1]}, "'kwargs' has the wrong type"),
        ("t.record every 10", "must be a dict with 'task' and 'schedule'"),
    ],
)
def test_bad_entries_are_named_in_a_clear_error(
    make_app: Callable[..., Celery], entry: Any, fragment: str
) -> None:
    app = make_app(beat_schedule={"broken": entry})
    with pytest.raises(ImproperlyConfigured) as caught:
        PersistentScheduler(app)
    assert "beat_schedule['broken']" in str(caught.value)
    assert fragment in str(caught.value)


def test_beat_schedule_must_be_a_dict(make_app: Callable[..., Celery]) -> None:
    with pytest.raises(ImproperlyConfigured, match="'beat_schedule' must be a dict"):
        make_app(beat_schedule=[("every", 10)])


def test_a_task_that_cannot_be_sent_is_logged_and_retried_later(
    make_app: Callable[..., Celery], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        beat_schedule={
            "broken": {"task": TASK, "schedule": 5.0, "args": [object()]},
            "fine": {"task": TASK, "schedule": 5.0},
        }
    )
    scheduler = leader(app, "a", clock)
    scheduler.tick()
    clock.advance(5)
    with caplog.at_level(logging.INFO, logger="minicelery.beat"):
        assert scheduler.tick() == pytest.approx(5.0)
    assert "Message Error" in caplog.text
    assert "Scheduler: Sending due task fine (t.record)" in caplog.text
    assert len(taken(app)) == 1
    clock.advance(1)
    scheduler.tick()  # the broken entry waits for its next due time
    assert caplog.text.count("Message Error") == 1


# --------------------------------------------------------------------------- the lease


def test_lease_take_extend_release(broker: RedisBroker) -> None:
    lease = coordinator_for(broker)
    assert lease.hold_lease("beat", "a", 10) == (True, 10.0)
    held, left = lease.hold_lease("beat", "b", 10)
    assert not held and 9.0 < left <= 10.0
    assert lease.hold_lease("beat", "a", 20) == (True, 20.0)  # extended
    assert not lease.release_lease("beat", "b")  # never someone else's
    assert lease.lease_holder("beat") == "a"
    assert lease.release_lease("beat", "a")
    assert lease.lease_holder("beat") is None
    assert lease.hold_lease("beat", "b", 10)[0]


def test_an_unrenewed_lease_passes_to_the_other_beat(make_app: Callable[..., Celery]) -> None:
    app = make_app(beat_schedule={"tick": {"task": TASK, "schedule": 60.0}})
    first = Service(app, owner="a", lease_timeout=0.2)
    second = Service(app, owner="b", lease_timeout=0.2)
    assert first.step() <= 0.2 / 3 + 1e-6
    assert first.is_leader
    wait = second.step()
    assert not second.is_leader
    assert 0.1 < wait <= 0.25  # sleeps until the leader's lease would run out
    # The first beat dies (stops renewing): the second takes over once the lease expires.
    wait_until(lambda: second.step() and second.is_leader, timeout=5)
    assert not first.scheduler.coordinator.hold_lease(LEASE, "a", 0.2)[0]


def test_an_embedded_beat_sends_and_stops_promptly(
    make_app: Callable[..., Celery], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(beat_schedule={"fast": {"task": TASK, "schedule": 0.05}})
    coordinator: Coordinator = coordinator_for(app.broker)
    beat = EmbeddedService(app, lease_timeout=1.0)
    with caplog.at_level(logging.INFO, logger="minicelery.beat"):
        beat.start()
        wait_until(lambda: coordinator.counts(LEASE).get("fast", 0) >= 3, timeout=10)
        beat.stop(timeout=5)
    assert not beat.thread.is_alive()
    assert coordinator.lease_holder(LEASE) is None  # released on a clean stop
    assert "now the beat that sends" in caplog.text
    assert "Scheduler: Sending due task fast (t.record)" in caplog.text


def test_an_unreachable_redis_is_logged_once_and_retried_with_backoff(
    make_app: Callable[..., Celery], caplog: pytest.LogCaptureFixture
) -> None:
    closed = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused
    entries = {"t": {"task": TASK, "schedule": 1}}
    app = make_app(
        broker=closed,
        backend=closed,
        beat_schedule=entries,
        broker_connection_retry_on_startup=False,  # fail each try at once
    )
    service = Service(app, owner="a", lease_timeout=1.0)
    with caplog.at_level(logging.INFO, logger="minicelery.beat"):
        waits = [service.step() for _ in range(2)]
    assert 0 < waits[0] < waits[1] <= 5.0  # backing off
    assert caplog.text.count("Redis is unreachable") == 1
    assert not service.is_leader
