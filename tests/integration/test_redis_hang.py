"""While Redis hangs (SIGSTOP), the worker goes on supervising: a task past its hard time
limit is killed on time and its child replaced, and once Redis is back every result is
stored (FAILURE with TimeLimitExceeded for the killed task) and the worker lives on.

The hang lasts ``HANG`` seconds here; ``python -m bench.soak`` hangs Redis for longer."""

from __future__ import annotations

import os
import signal
import time

import pytest

from minicelery import Celery, states
from minicelery.exceptions import TimeLimitExceeded
from tests.helpers import RedisServer, WorkerFactory, pointed_at, wait_until

HANG = float(os.environ.get("MC_TEST_HANG", "12"))  # seconds Redis is stopped for


@pytest.mark.timeout(90 + HANG)
def test_time_limit_enforced_and_children_replaced_while_redis_hangs(
    private_redis: RedisServer, key_prefix: str
) -> None:
    from tests.integration.apps import basic

    factory = WorkerFactory(private_redis.url, key_prefix)
    try:
        with pointed_at(basic.app, private_redis, key_prefix) as app:
            _run_through_a_hang(app, private_redis, factory)
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        factory.cleanup()
        if factory.workers:
            print(factory.report())


def _run_through_a_hang(app: Celery, server: RedisServer, factory: WorkerFactory) -> None:
    worker = factory(concurrency=2)
    before = [basic_add(app, i) for i in range(5)]
    assert [r.get(timeout=10) for r in before] == [2 * i for i in range(5)]
    children = set(worker.children())
    sleep = app.tasks["tests.integration.apps.basic.sleep"]
    # The other child runs a task whose limit comes after the first kill: the loop must
    # still be supervising then, not stuck storing the first one's failure.
    second = sleep.apply_async((30, "late"), time_limit=6)
    worker.wait_for_line(f"sleep[{second.id}] received", timeout=10)
    quick = [sleep.delay(0.5, i) for i in range(3)]
    # Redis stops the moment the slow task starts: nothing of it is acknowledged or stored.
    slow = app.tasks["tests.integration.apps.basic.stop_process_then_sleep"].apply_async(
        (server.pid, 30), time_limit=3
    )
    worker.wait_for_line(f"stop_process_then_sleep[{slow.id}] received", timeout=10)
    wait_until(lambda: _stopped(server.pid), timeout=5, message="redis-server was not stopped")
    stopped_at = time.monotonic()
    try:
        # The limits are enforced while Redis is stopped: about 3 s after the task started,
        # and then the other one's.
        worker.wait_for_line("Hard time limit (3.0s) exceeded", timeout=8)
        killed_after = time.monotonic() - stopped_at
        worker.wait_for_line("Hard time limit (6.0s) exceeded", timeout=8)
        # ...and the killed child is replaced, still without Redis.
        wait_until(
            lambda: len(worker.children()) >= 2 and set(worker.children()) != children,
            timeout=5,
            message=lambda: f"children {worker.children()} (were {children})",
        )
        assert time.monotonic() - stopped_at < HANG, "the worker stalled with Redis"
        assert killed_after < 6.0
        assert worker.is_alive()
        remaining = HANG - (time.monotonic() - stopped_at)
        time.sleep(max(0.0, remaining))  # the outage itself: nothing to wait for
    finally:
        os.kill(server.pid, signal.SIGCONT)
    for killed in (slow, second):
        with pytest.raises(TimeLimitExceeded):
            killed.get(timeout=30)
        assert killed.state == states.FAILURE
    assert sorted(r.get(timeout=30) for r in quick) == [0, 1, 2]
    after = [basic_add(app, i) for i in range(5)]
    assert [r.get(timeout=30) for r in after] == [2 * i for i in range(5)]
    assert worker.is_alive()
    output = worker.output()
    assert output.count(f"[{slow.id}] received") == 1, "the killed task ran twice"


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def basic_add(app: Celery, i: int):  # type: ignore[no-untyped-def]
    return app.tasks["tests.integration.apps.basic.add"].delay(i, i)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGQUIT], ids=["warm", "cold"])
def test_shutdown_obeyed_while_redis_hangs(
    private_redis: RedisServer, key_prefix: str, how: signal.Signals
) -> None:
    """A worker told to stop while Redis hangs stops in bounded time: it gives up on the
    writes Redis never took (the messages stay held, for another worker to recover)."""
    factory = WorkerFactory(private_redis.url, key_prefix)
    try:
        worker = factory(concurrency=1)
        os.kill(private_redis.pid, signal.SIGSTOP)
        wait_until(lambda: _stopped(private_redis.pid), timeout=5)
        asked = time.monotonic()
        worker.send_signal(how)
        assert worker.wait_exit(60) == 0
        assert time.monotonic() - asked < 45
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
        factory.cleanup()
        if factory.workers:
            print(factory.report())
