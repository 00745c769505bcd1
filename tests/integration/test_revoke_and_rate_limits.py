"""Revocation and rate limits on real workers (prefork) and a real redis-server.

Revoked ids live in Redis, so a worker started after the revoke still skips the task; a
revoked countdown task never runs; ``terminate=True`` stops the task in its child and the
result is REVOKED. Rate limits hold a task back without holding up others, and can be
changed on a running worker.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from minicelery import Celery, states
from minicelery.exceptions import TaskRevokedError
from tests.helpers import ManagedProcess, WorkerFactory, wait_until
from tests.integration.apps.control import (
    free,
    late_failing,
    late_sleeper,
    late_timing_out,
    limited,
    record,
    sleeper,
)

APP = "tests.integration.apps.control"


def marks(client: redis.Redis, key: str) -> list[tuple[str, float]]:
    found = []
    for raw in client.lrange(key, 0, -1):
        label, _, when = raw.decode().partition("@")
        found.append((label, float(when)))
    return found


def labels(client: redis.Redis, key: str) -> list[str]:
    return [label for label, _ in marks(client, key)]


def revoked_signals(client: redis.Redis, capp: Celery) -> list[dict[str, object]]:
    """What the app's ``task_revoked`` receiver was told, in order."""
    key = f"{capp.conf.key_prefix}:revoked-signals"
    return [json.loads(raw) for raw in client.lrange(key, 0, -1)]


def start(worker_factory: WorkerFactory, concurrency: int = 1) -> ManagedProcess:
    return worker_factory(app_module=APP, concurrency=concurrency)


def wait_worker_listening(capp: Celery, timeout: float = 15.0) -> None:
    """A worker that answers ping has subscribed to remote control."""
    wait_until(lambda: capp.control.ping(timeout=0.5), timeout, message="no worker answered ping")


# --------------------------------------------------------------------------- revocation


def test_a_worker_started_after_the_revoke_skips_the_task(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    doomed = record.delay(runs, "doomed")
    doomed.revoke()
    after = record.delay(runs, "after")
    start(worker_factory)
    assert after.get(timeout=20) == "after"
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=10)
    assert capp.AsyncResult(doomed.id).state == states.REVOKED
    assert labels(client, runs) == ["after"]
    told = revoked_signals(client, capp)
    assert told == [{"id": doomed.id, "task": record.name, "terminated": False, "signum": None,
                     "expired": False}]  # fmt: skip


def test_a_revoked_countdown_task_never_runs(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    start(worker_factory)
    wait_worker_listening(capp)
    doomed = record.apply_async((runs, "doomed"), countdown=1.0)
    capp.control.revoke(doomed.id)
    later = record.apply_async((runs, "later"), countdown=1.5)
    assert later.get(timeout=20) == "later"
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=10)
    assert labels(client, runs) == ["later"]


def test_revoking_a_reserved_task_while_the_worker_is_busy(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    start(worker_factory, concurrency=1)
    wait_worker_listening(capp)
    busy = sleeper.delay(runs, "busy", 1.0)
    wait_until(lambda: labels(client, runs) == ["busy"], 15)
    doomed = record.delay(runs, "doomed")  # reserved by the busy worker, not started
    replies = capp.control.revoke(doomed.id, reply=True, timeout=2.0, limit=1)
    assert replies and "flagged as revoked" in next(iter(replies[0].values()))["ok"]
    assert busy.get(timeout=20) == "busy"
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=10)
    assert record.delay(runs, "after").get(timeout=10) == "after"
    assert labels(client, runs) == ["busy", "after"]


@pytest.mark.parametrize("task", [sleeper, late_sleeper], ids=["early-ack", "acks-late"])
def test_terminate_stops_the_running_task_and_the_worker_goes_on(
    capp: Celery,
    worker_factory: WorkerFactory,
    client: redis.Redis,
    runs: str,
    task: object,
) -> None:
    start(worker_factory, concurrency=1)
    wait_worker_listening(capp)
    running = task.delay(runs, "long", 30.0)  # type: ignore[attr-defined]
    wait_until(lambda: labels(client, runs) == ["long"], 15)
    began = time.monotonic()
    running.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        running.get(timeout=10)
    assert time.monotonic() - began < 8
    assert capp.AsyncResult(running.id).state == states.REVOKED
    # The child was replaced; the worker runs the next task, and the revoked one never again.
    assert record.delay(runs, "next").get(timeout=15) == "next"
    assert labels(client, runs) == ["long", "next"]
    told = revoked_signals(client, capp)
    assert told == [{"id": running.id, "task": task.name, "terminated": True,  # type: ignore[attr-defined]
                     "signum": 15, "expired": False}]  # fmt: skip


# --------------------------------------------------------------------------- rate limits


def test_a_rate_limited_task_is_spread_out_and_does_not_hold_up_others(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    start(worker_factory, concurrency=2)
    wait_worker_listening(capp)
    slow = [limited.delay(runs, f"limited-{i}") for i in range(8)]
    fast = [free.delay(runs, f"free-{i}") for i in range(8)]
    for result in fast:
        result.get(timeout=20)
    for result in slow:
        result.get(timeout=20)
    found = marks(client, runs)
    limited_times = [when for label, when in found if label.startswith("limited")]
    free_times = [when for label, when in found if label.startswith("free")]
    # 5/s with a burst of one: eight runs need at least 7 x 0.2 s.
    assert limited_times[-1] - limited_times[0] >= 1.2
    # The free tasks, sent after all the limited ones, finish long before them.
    assert max(free_times) < limited_times[-1] - 0.5


def test_the_rate_limit_changes_at_runtime(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    start(worker_factory, concurrency=2)
    wait_worker_listening(capp)
    replies = capp.control.rate_limit(free.name, "4/s", reply=True, timeout=2.0, limit=1)
    assert replies == [{next(iter(replies[0])): {"ok": "new rate limit set successfully"}}]
    for result in [free.delay(runs, f"a{i}") for i in range(6)]:
        result.get(timeout=20)
    first = [when for _, when in marks(client, runs)]
    assert first[-1] - first[0] >= 1.0  # 4/s: six runs need at least 5 x 0.25 s
    capp.control.rate_limit(free.name, None, reply=True, timeout=2.0, limit=1)
    client.delete(runs)
    for result in [free.delay(runs, f"b{i}") for i in range(6)]:
        result.get(timeout=20)
    second = [when for _, when in marks(client, runs)]
    assert second[-1] - second[0] < 0.6


def test_a_bad_rate_limit_is_an_error_reply(capp: Celery, worker_factory: WorkerFactory) -> None:
    start(worker_factory)
    wait_worker_listening(capp)
    replies = capp.control.rate_limit(free.name, "lots", reply=True, timeout=2.0, limit=1)
    assert replies and "invalid rate limit" in next(iter(replies[0].values()))["error"]
    replies = capp.control.rate_limit("no.such.task", "1/s", reply=True, timeout=2.0, limit=1)
    assert replies and "unknown task" in next(iter(replies[0].values()))["error"]


# --------------------------------------------------------------------------- acks


def test_acks_on_failure_or_timeout_off_keeps_failed_and_reruns_timed_out_messages(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    start(worker_factory, concurrency=1)
    failing = late_failing.delay(runs)
    with pytest.raises(ValueError, match="boom"):
        failing.get(timeout=15)
    # Celery rejects it without requeueing; here it waits in the dead-letter store.
    letters = wait_until(lambda: capp.broker.dead_letters(), 10)
    assert len(letters) == 1 and letters[0].task == late_failing.name
    assert "acks_on_failure_or_timeout" in letters[0].reason
    client.delete(runs)
    timing_out = late_timing_out.delay(runs)
    # Killed at its hard limit, stored as failed, sent back, and run again.
    wait_until(lambda: capp.AsyncResult(timing_out.id).state == states.SUCCESS, 20)
    assert labels(client, runs) == ["run", "run"]


# --------------------------------------------------------------------------- workflows


def test_a_revoked_or_killed_header_task_still_ends_its_chord(
    capp: Celery, worker_factory: WorkerFactory, runs: str
) -> None:
    from minicelery import chord
    from minicelery.exceptions import ChordError
    from tests.integration.apps.control import gather, nap

    revoked_part = record.s(runs, "b").set(task_id="revoked-part")
    capp.control.revoke("revoked-part")
    result = chord([record.s(runs, "a"), revoked_part], gather.s()).apply_async()
    start(worker_factory, concurrency=1)
    with pytest.raises(ChordError, match="revoked-part"):
        result.get(timeout=20, propagate=True, follow_parents=False)
    # A header task killed at its hard time limit (its process lost) fails the chord too.
    timed = chord([nap.s(10.0).set(task_id="timed-part", time_limit=0.5)], gather.s())
    timed_result = timed.apply_async()
    with pytest.raises(ChordError, match="timed-part"):
        timed_result.get(timeout=30, follow_parents=False)
