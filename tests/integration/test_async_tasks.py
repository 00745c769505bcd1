"""``async def`` tasks in a real worker (prefork children that consume, the default): many
run at once on each child's event loop, with their results, retries and time limits as
sync tasks have them, and a sync task that blocks does not hold them up."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from minicelery import Celery, chain, chord, group, states
from minicelery.exceptions import TaskRevokedError, TimeLimitExceeded
from tests.helpers import RedisServer, WorkerFactory, pid_alive, pointed_at, wait_until
from tests.integration.apps import aiotasks
from tests.integration.apps.aiotasks import (
    add,
    autoretried,
    block,
    clock,
    explode,
    gauge,
    hard_limited,
    limited,
    long_nap,
    nap,
    progress,
    retry_twice,
    soft_limited,
    total,
    whoami,
)

APP = "tests.integration.apps.aiotasks"


@pytest.fixture
def aioapp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(aiotasks.app, redis_server, key_prefix) as pointed:
        yield pointed


def test_200_sleeping_tasks_run_at_once_on_one_child(
    aioapp: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    nap.delay(0, "warm").get(timeout=10)  # the loop thread starts with the first one
    started = time.monotonic()
    results = [nap.delay(0.5, i) for i in range(200)]
    values = [r.get(timeout=20) for r in results]
    elapsed = time.monotonic() - started
    assert values == list(range(200))
    assert all(r.state == states.SUCCESS for r in results)
    assert elapsed < 5.0, elapsed


def test_a_blocking_sync_task_does_not_delay_async_ones(
    aioapp: Celery, worker_factory: WorkerFactory
) -> None:
    """Async tasks that run when a sync task blocks the child's thread end, and their
    results are stored, on time: the loop thread settles them meanwhile."""
    worker_factory(app_module=APP, concurrency=1)
    nap.delay(0, "warm").get(timeout=10)
    napping = [nap.delay(0.5, i) for i in range(5)]
    blocked = block.delay(3)  # reserved behind them: they run when it starts
    started = time.monotonic()
    assert [r.get(timeout=10) for r in napping] == list(range(5))
    assert time.monotonic() - started < 2.0  # not after the 3 s block
    assert not blocked.ready()
    assert blocked.get(timeout=10) == "blocked"
    assert nap.delay(0, "after").get(timeout=10) == "after"


def test_failures_and_the_request_of_each_coroutine(
    aioapp: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    failing = explode.delay("bad")
    mine = [whoami.delay(0.2) for _ in range(10)]
    with pytest.raises(ValueError, match="bad"):
        failing.get(timeout=10)
    assert failing.state == states.FAILURE
    for result in mine:
        seen = result.get(timeout=10)
        assert seen["id"] == seen["before"] == result.id
        assert seen["retries"] == 0 and seen["hostname"]


def test_retry_and_autoretry(
    aioapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    assert retry_twice.delay(runs + ":r").get(timeout=10) == 2
    assert client.lrange(runs + ":r", 0, -1) == [b"0", b"1", b"2"]
    result = autoretried.delay(runs + ":a")
    with pytest.raises(KeyError):
        result.get(timeout=10)
    assert client.lrange(runs + ":a", 0, -1) == [b"run", b"run"]


def test_update_state_is_seen_while_it_runs(
    aioapp: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    result = progress.delay(5)
    wait_until(lambda: result.state == "PROGRESS" or None, timeout=10)
    assert result.info["step"] in range(5)
    assert result.get(timeout=10) == 5


def test_time_limits_end_one_coroutine_not_its_neighbours(
    aioapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    neighbours = [nap.delay(1.0, i) for i in range(5)]
    soft = soft_limited.delay(runs)
    hard = hard_limited.delay()
    assert soft.get(timeout=10) == "cleaned up"
    assert client.lrange(runs, 0, -1) == [b"cleaned up"]
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=10)
    assert hard.state == states.FAILURE
    assert [r.get(timeout=10) for r in neighbours] == list(range(5))


def test_async_concurrency_bounds_what_runs_at_once(
    aioapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module=APP, concurrency=1, extra_args=("--async-concurrency", "10"))
    results = [gauge.delay(runs, 0.3) for _ in range(40)]
    for result in results:
        result.get(timeout=20)
    seen = [int(n) for n in client.lrange(runs, 0, -1)]
    assert len(seen) == 40
    assert max(seen) == 10


def test_revoke_terminate_cancels_one_coroutine(
    aioapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    doomed = long_nap.delay(runs, 30)
    spared = long_nap.delay(runs, 1.5)
    wait_until(lambda: client.llen(runs) == 2 or None, timeout=10)
    started = time.monotonic()
    aioapp.control.revoke(doomed.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=10)
    assert doomed.state == states.REVOKED
    assert time.monotonic() - started < 5
    assert spared.get(timeout=10) == "woke"


def test_async_tasks_of_a_child_that_dies_run_again(
    aioapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    """Not acknowledged until they end, they go back to the queue with the child's hold
    and a new child runs them (as acks_late tasks)."""
    worker = worker_factory(app_module=APP, concurrency=1)
    results = [long_nap.delay(runs, 2) for _ in range(5)]
    wait_until(lambda: client.llen(runs) == 5 or None, timeout=10)
    (child,) = worker.children()
    os.kill(child, signal.SIGKILL)
    assert [r.get(timeout=30) for r in results] == ["woke"] * 5
    assert client.llen(runs) == 10  # each ran again, once


def test_workflows_states_and_rate_limits_with_events_on(
    aioapp: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1, extra_args=("-E",))
    assert chain(add.s(1, 2), add.s(3), add.s(4)).delay().get(timeout=10) == 10
    assert group(add.s(i, i) for i in range(10)).delay().get(timeout=10) == [
        2 * i for i in range(10)
    ]
    assert chord((add.s(i, 1) for i in range(5)), total.s()).delay().get(timeout=10) == 15
    started = time.monotonic()
    results = [limited.delay(i) for i in range(10)]
    wait_until(lambda: results[0].state == states.STARTED or None, timeout=5)
    assert [r.get(timeout=10) for r in results] == list(range(10))
    assert time.monotonic() - started >= 0.7  # 20/s: the tenth starts 0.45 s after the first


def test_inspect_active_lists_the_running_coroutines(
    aioapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker = worker_factory(app_module=APP, concurrency=1)
    results = [long_nap.delay(runs, 2) for _ in range(5)]
    wait_until(lambda: client.llen(runs) == 5 or None, timeout=10)
    replies = aioapp.control.inspect(timeout=2).active() or {}
    (active,) = replies.values()
    assert sorted(a["id"] for a in active) == sorted(r.id for r in results)
    assert all(a["name"] == long_nap.name and a["args"] == [runs, 2] for a in active)
    assert {a["worker_pid"] for a in active} == set(worker.children())
    assert [r.get(timeout=10) for r in results] == ["woke"] * 5
    wait_until(lambda: list((aioapp.control.inspect(timeout=1).active() or {}).values())
               == [[]] or None, timeout=10)  # fmt: skip


@pytest.mark.timeout(90)
def test_async_tasks_run_once_through_a_redis_outage(
    private_redis: RedisServer, key_prefix: str
) -> None:
    """After an outage the child looks at its hold for messages it never saw (a lost
    reply's) and gives them back: the async tasks it runs are not among them."""
    factory = WorkerFactory(private_redis.url, key_prefix)
    runs = f"{key_prefix}:runs"
    try:
        with pointed_at(aiotasks.app, private_redis, key_prefix) as app:
            factory(app_module=APP, concurrency=1)
            results = [long_nap.delay(runs, 18) for _ in range(3)]
            client = private_redis.client()
            wait_until(lambda: client.llen(runs) == 3 or None, timeout=10)
            os.kill(private_redis.pid, signal.SIGSTOP)
            try:
                time.sleep(11)  # past the socket timeout (10 s): the child sees it fail
            finally:
                os.kill(private_redis.pid, signal.SIGCONT)
            assert [r.get(timeout=30) for r in results] == ["woke"] * 3
            assert client.llen(runs) == 3
            assert app.AsyncResult(results[0].id).state == states.SUCCESS
    finally:
        if pid_alive(private_redis.pid):
            os.kill(private_redis.pid, signal.SIGCONT)
        factory.cleanup()
        if factory.workers:
            print(factory.report())


def _reserve_scripts_run(client: redis.Redis) -> int:
    """How many scripts Redis ran so far (a child's reserves are EVALSHA calls)."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_child_running_async_tasks_waits_for_messages_without_polling(
    private_redis: RedisServer, key_prefix: str
) -> None:
    """With an async task running and the queue dry the child blocks on the queue's
    wake-up token (not a reserve every few milliseconds), and a task sent meanwhile
    starts at once. A Redis of the test's own: only this worker's scripts are counted."""
    factory = WorkerFactory(private_redis.url, key_prefix)
    runs = f"{key_prefix}:runs"
    try:
        with pointed_at(aiotasks.app, private_redis, key_prefix):
            factory(app_module=APP, concurrency=1)
            client = private_redis.client()
            assert nap.delay(0, "warm").get(timeout=10) == "warm"
            running = long_nap.delay(runs, 3)
            wait_until(lambda: client.llen(runs) == 1 or None, timeout=10)
            before = _reserve_scripts_run(client)
            time.sleep(1.0)  # the window measured, not a synchronisation
            scripts = _reserve_scripts_run(client) - before
            delays = []
            for _ in range(5):
                sent = time.time()
                delays.append(clock.delay().get(timeout=10) - sent)
            assert not running.ready()  # all of it ran beside the long one
            assert running.get(timeout=10) == "woke"
    finally:
        factory.cleanup()
        if factory.workers:
            print(factory.report())
    print(f"scripts in 1 s: {scripts}; start delays (ms): "
          f"{[round(d * 1000, 1) for d in delays]}")  # fmt: skip
    # The child's: two a second (the wait's chained reserve, the round trip after it); the
    # main process's heartbeats run about six more (0.5 s apart here). A poll made ~26.
    assert scripts <= 12, scripts
    assert sorted(delays)[2] < 0.012, delays  # the median: one sample may meet a busy core
