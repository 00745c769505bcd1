"""Retries and time limits, observed from outside: real ``minicelery worker`` processes (prefork)
on a real redis-server, running the tasks of ``tests.integration.apps.retries``.

Tasks count their executions in Redis lists (``<retries>@<start time>`` entries written through
their own Redis client); tests look at the states the result goes through, the exception
``get()`` raises, the broker's scheduled set and the worker's child processes. Celery 5 is the
reference for every expected behaviour.

Everything synchronises by polling (``wait_until``) or ``get(timeout=...)``; ``time.sleep``
happens only inside tasks.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from minicelery import Celery, states
from minicelery.exceptions import MaxRetriesExceededError, TaskRevokedError, TimeLimitExceeded
from minicelery.redislayer.keys import KeySchema
from minicelery.result import AsyncResult
from tests.helpers import (
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    pid_alive,
    pointed_at,
    wait_until,
)
from tests.integration.apps.retries import (
    BACKOFF,
    COUNTDOWN,
    autoretry_backoff,
    cleanup_on_soft_limit,
    flaky,
    hard_limited,
    ignore_soft_limit,
    pid,
    retry_always,
    retry_at_eta,
    retry_slowly,
    retry_slowly_expiring,
    retry_then_sleep,
    retry_with_exc,
    sleeper,
    soft_limited,
)
from tests.integration.apps.retries import app as worker_app

RETRIES = "tests.integration.apps.retries"
LATENCY = 1.0  # generous bound on how late a due message may start (scheduler + reserve)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def retries_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    """The ``tests.integration.apps.retries`` app, in this process, pointed at the test's
    Redis and key prefix (what its workers get from the environment)."""
    with pointed_at(worker_app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.fixture
def runs(key_prefix: str) -> str:
    """The Redis list the test's tasks record their executions in (removed with the prefix)."""
    return f"{key_prefix}:runs"


# --------------------------------------------------------------------------- helpers


def start_worker(
    worker_factory: WorkerFactory,
    concurrency: int = 1,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    return worker_factory(
        app_module=RETRIES, concurrency=concurrency, extra_args=extra_args, env=env
    )


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entries(client: redis.Redis, key: str) -> list[str]:
    return [text(raw) for raw in client.lrange(key, 0, -1)]


def attempts(client: redis.Redis, key: str) -> list[tuple[int, float]]:
    """``(request.retries, start time)`` of each recorded execution, in order."""
    found = []
    for entry in entries(client, key):
        label, _, when = entry.partition("@")
        if label.isdigit():
            found.append((int(label), float(when)))
    return found


def marks(client: redis.Redis, key: str) -> dict[str, float]:
    """``label -> time`` of the ``label@time`` entries whose label is not a number."""
    found = {}
    for entry in entries(client, key):
        label, _, when = entry.partition("@")
        if when and not label.isdigit():
            found[label] = float(when)
    return found


def gaps(found: list[tuple[int, float]]) -> list[float]:
    """Seconds between the starts of consecutive attempts."""
    return [later[1] - earlier[1] for earlier, later in itertools.pairwise(found)]


def fresh(app: Celery, task_id: str) -> AsyncResult:
    """A result handle without a cached state."""
    return app.AsyncResult(task_id)


def scheduled(client: redis.Redis, prefix: str) -> list[tuple[bytes, float]]:
    """The broker's scheduled (eta/countdown) messages with their due times."""
    found: list[Any] = client.zrange(KeySchema(prefix).scheduled, 0, -1, withscores=True)
    return [(bytes(entry), float(score)) for entry, score in found]


def queued(client: redis.Redis, prefix: str, queue: str = "celery") -> int:
    return sum(int(client.llen(KeySchema(prefix).queue(queue, p))) for p in range(10))


def get_collecting_states(
    result: AsyncResult, timeout: float
) -> tuple[Any, BaseException | None, list[tuple[str, Any]]]:
    """``get()`` with ``on_message``: (value, raised exception, distinct ``(state, retries)``
    records in the order they were written)."""
    seen: list[tuple[str, Any]] = []

    def on_message(meta: dict[str, Any]) -> None:
        record = (str(meta["status"]), meta.get("retries"))
        if not seen or seen[-1] != record:  # a record can be read twice (GET, then BLPOP)
            seen.append(record)

    try:
        return result.get(timeout=timeout, on_message=on_message), None, seen
    except Exception as exc:
        return None, exc, seen


def children_of(worker: ManagedProcess, count: int) -> list[int]:
    """Wait until the worker has exactly ``count`` live children; return their PIDs."""
    found: list[int] = []

    def settled() -> bool:
        found[:] = worker.children()
        return len(found) == count

    wait_until(
        settled,
        timeout=10,
        message=lambda: f"expected {count} children, have {found}\n{worker.describe()}",
    )
    return sorted(found)


def outcome(result: AsyncResult, timeout: float = 15) -> tuple[Any, BaseException | None]:
    """``(value, None)`` or ``(None, exception)`` of ``get()``."""
    try:
        return result.get(timeout=timeout), None
    except Exception as exc:
        return None, exc


# --------------------------------------------------------------------------- retry()


def test_retry_runs_max_retries_plus_one_times_then_raises_max_retries_exceeded(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    worker = start_worker(worker_factory)
    result = retry_always.delay(runs)
    value, raised, seen = get_collecting_states(result, timeout=15)

    assert isinstance(raised, MaxRetriesExceededError), (value, raised, worker.describe())
    assert retry_always.name in str(raised)
    found = attempts(redis_client, runs)
    assert [retries for retries, _ in found] == [0, 1, 2]
    # Every attempt after the first starts a countdown after the previous one started.
    for gap in gaps(found):
        assert COUNTDOWN <= gap < COUNTDOWN + LATENCY, gaps(found)
    # Between the attempts the state is RETRY; the worker writes nothing else.
    assert seen == [
        (states.RETRY, 0),
        (states.RETRY, 1),
        (states.FAILURE, 2),
    ], seen
    assert fresh(retries_app, result.id).state == states.FAILURE
    assert fresh(retries_app, result.id).retries == 2


def test_retry_with_exc_ends_with_that_exception(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    start_worker(worker_factory)
    result = retry_with_exc.delay(runs)

    # While waiting for its next attempt the task is in RETRY, with the exception as info.
    wait_until(
        lambda: fresh(retries_app, result.id).state == states.RETRY,
        timeout=10,
        message=lambda: f"never saw RETRY (state {fresh(retries_app, result.id).state})",
    )
    info = fresh(retries_app, result.id).info
    assert isinstance(info, ValueError), info
    assert re.fullmatch(r"attempt \d failed", str(info)), info

    with pytest.raises(ValueError, match="attempt 2 failed"):
        result.get(timeout=15)
    assert result.state == states.FAILURE
    assert [retries for retries, _ in attempts(redis_client, runs)] == [0, 1, 2]


def test_retry_once_then_succeed_via_a_broker_scheduled_message(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    runs: str,
) -> None:
    countdown = 1.0
    start_worker(worker_factory)
    result = flaky.delay(runs, 1, countdown)

    # The retry waits in the broker's scheduled set (not in a worker), due a countdown after
    # the first attempt started; meanwhile the task is in RETRY and nothing is queued.
    waiting = wait_until(
        lambda: scheduled(redis_client, key_prefix),
        timeout=10,
        message="the retry never showed up in the scheduled set",
    )
    ((entry, due),) = waiting
    assert result.id.encode() in entry
    ((_, first_start),) = attempts(redis_client, runs)
    assert countdown <= due - first_start < countdown + LATENCY
    # As in Celery, the retry is sent before the worker records RETRY, so the state can lag
    # the scheduled entry by a moment; it must still show well before the retry is due.
    wait_until(
        lambda: fresh(retries_app, result.id).state == states.RETRY,
        timeout=countdown / 2,
        message=lambda: f"never saw RETRY (state {fresh(retries_app, result.id).state})",
    )
    assert queued(redis_client, key_prefix) == 0

    assert result.get(timeout=15) == "succeeded after 1 retries"
    assert result.state == states.SUCCESS
    found = attempts(redis_client, runs)
    assert [retries for retries, _ in found] == [0, 1]
    (gap,) = gaps(found)
    assert countdown <= gap < countdown + LATENCY
    assert scheduled(redis_client, key_prefix) == []


def test_retry_at_an_eta(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    start_worker(worker_factory)
    assert retry_at_eta.delay(runs, 0.5).get(timeout=15) == 1

    found = attempts(redis_client, runs)
    assert [retries for retries, _ in found] == [0, 1]
    eta = marks(redis_client, runs)["eta"]
    assert eta - found[0][1] >= 0.5
    assert eta <= found[1][1] < eta + LATENCY


# --------------------------------------------------------------------------- autoretry_for


def test_autoretry_backs_off_exponentially_then_raises_the_original_error(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    start_worker(worker_factory)
    result = autoretry_backoff.delay(runs)

    with pytest.raises(ConnectionError, match="attempt 3 failed"):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    found = attempts(redis_client, runs)
    assert [retries for retries, _ in found] == [0, 1, 2, 3]
    # retry_backoff=BACKOFF, no jitter: BACKOFF * 2**retries seconds before each new attempt.
    # (A fractional base is minicelery's: Celery 5 uses int(max(1, retry_backoff)) seconds.)
    measured = gaps(found)
    for attempt, gap in enumerate(measured):
        expected = BACKOFF * 2**attempt
        assert expected <= gap < expected + LATENCY, measured
    assert measured == sorted(measured), measured


def test_exception_not_in_autoretry_for_fails_at_once(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    runs: str,
) -> None:
    start_worker(worker_factory)
    result = autoretry_backoff.delay(runs, "ValueError")

    with pytest.raises(ValueError, match="attempt 0 failed"):
        result.get(timeout=10)
    assert result.state == states.FAILURE
    assert [retries for retries, _ in attempts(redis_client, runs)] == [0]
    assert scheduled(redis_client, key_prefix) == []
    assert queued(redis_client, key_prefix) == 0


# --------------------------------------------------------------------------- time limits


def test_soft_time_limit_lets_the_task_clean_up(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    worker = start_worker(worker_factory)
    children = children_of(worker, 1)
    sent = time.monotonic()
    result = soft_limited.delay(runs)

    assert result.get(timeout=10) == "cleaned up"
    took = time.monotonic() - sent
    assert 0.4 < took < 1.5, f"took {took:.2f}s with a 0.5 s soft limit"
    assert result.state == states.SUCCESS
    times = marks(redis_client, runs)
    assert 0.4 < times["soft"] - times["started"] < 1.2, times
    assert children_of(worker, 1) == children, "a soft limit must not replace the child"


def test_hard_time_limit_kills_and_replaces_the_child(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    worker = start_worker(worker_factory)
    sent = time.monotonic()
    result = hard_limited.delay(runs)

    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=10)
    took = time.monotonic() - sent
    assert 0.4 < took < 2.0, f"took {took:.2f}s with a 0.5 s hard limit"
    assert result.state == states.FAILURE
    worker.wait_for_line(f"Hard time limit (0.5s) exceeded for {hard_limited.name}[{result.id}]")

    killed = int(entries(redis_client, runs)[0])
    wait_until(lambda: not pid_alive(killed), timeout=5, message=f"child {killed} still alive")
    (replacement,) = children_of(worker, 1)
    assert replacement != killed
    assert pid.delay().get(timeout=10) == replacement, "the new child runs the next task"
    assert worker.is_alive()


def test_worker_soft_and_hard_time_limit_options(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    start_worker(worker_factory, extra_args=("--soft-time-limit", "0.5", "--time-limit", "1.5"))
    sent = time.monotonic()
    result = ignore_soft_limit.delay(runs, 5.0)

    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=10)
    took = time.monotonic() - sent
    assert 1.4 < took < 3.0, f"took {took:.2f}s with a 1.5 s hard limit"
    times = marks(redis_client, runs)
    assert 0.4 < times["soft"] - times["started"] < 1.2, times


def test_apply_async_time_limits(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    start_worker(worker_factory, concurrency=2)
    sent = time.monotonic()
    hard = sleeper.apply_async((f"{key_prefix}:hard", 5.0), time_limit=0.5)
    soft = cleanup_on_soft_limit.apply_async((f"{key_prefix}:soft",), soft_time_limit=0.5)

    assert soft.get(timeout=10) == "cleaned up"
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=10)
    took = time.monotonic() - sent
    assert took < 2.0, f"took {took:.2f}s with 0.5 s limits"


def test_task_time_limit_setting(
    retries_app: Celery, worker_factory: WorkerFactory, runs: str
) -> None:
    start_worker(worker_factory, env={"MC_TEST_TASK_TIME_LIMIT": "0.5"})
    sent = time.monotonic()
    result = sleeper.delay(runs, 5.0)

    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=10)
    took = time.monotonic() - sent
    assert took < 2.0, f"took {took:.2f}s with task_time_limit=0.5"


def test_worker_time_limit_option_overrides_the_task_time_limit_setting(
    retries_app: Celery, worker_factory: WorkerFactory, runs: str
) -> None:
    # Celery: WorkController.time_limit = app.either('task_time_limit', time_limit, ...): the
    # command line wins; the setting is only the default.
    start_worker(
        worker_factory,
        extra_args=("--time-limit", "0.5"),
        env={"MC_TEST_TASK_TIME_LIMIT": "30"},
    )
    sent = time.monotonic()
    value, raised = outcome(sleeper.delay(runs, 3.0))
    took = time.monotonic() - sent
    assert isinstance(raised, TimeLimitExceeded), f"{value!r} / {raised!r} after {took:.1f}s"
    assert took < 2.0, f"took {took:.2f}s with --time-limit 0.5"


# --------------------------------------------------------------------------- retries and
# the options of the original message (Celery re-sends them: Context.as_execution_options)


@pytest.mark.parametrize("how", ["apply_async", "task-attribute"])
def test_retried_message_keeps_the_original_expiry(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
    how: str,
) -> None:
    # Expires 1.5 s after the first send; attempts are 1 s apart: the second attempt runs,
    # the third is expired on arrival (the retry carries the same absolute ``expires``).
    start_worker(worker_factory)
    if how == "apply_async":
        result = retry_slowly.apply_async((runs,), expires=1.5)
    else:
        result = retry_slowly_expiring.delay(runs)
    value, raised = outcome(result)

    found = [retries for retries, _ in attempts(redis_client, runs)]
    assert isinstance(raised, TaskRevokedError), f"{value!r} / {raised!r}, ran {found}"
    assert fresh(retries_app, result.id).state == states.REVOKED
    assert found == [0, 1]


def test_retried_message_keeps_its_time_limit(
    retries_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    runs: str,
) -> None:
    start_worker(worker_factory)
    sent = time.monotonic()
    value, raised = outcome(retry_then_sleep.apply_async((runs, 3.0), time_limit=1.0))
    took = time.monotonic() - sent

    found = [retries for retries, _ in attempts(redis_client, runs)]
    assert found == [0, 1]
    assert isinstance(raised, TimeLimitExceeded), f"{value!r} / {raised!r} after {took:.1f}s"
    assert took < 2.5, f"took {took:.2f}s with time_limit=1.0"
