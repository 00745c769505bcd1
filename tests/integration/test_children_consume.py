"""Prefork children that consume by themselves (``--children-consume``): the worker's own
tests of crashes, shutdown, time limits, revokes and recycling, run again in that mode (the
whole integration suite runs so with ``MC_TEST_CHILDREN_CONSUME=1``), and what only this
mode has: the main process off the per-task path, children's holds kept alive and given
back when the whole worker dies.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from minicelery import Celery
from minicelery.exceptions import WorkerLostError
from minicelery.redislayer.keys import KeySchema
from minicelery.result import AsyncResult
from tests.helpers import CHILDREN_CONSUME_ENV, WorkerFactory, kill_pid, wait_until
from tests.integration.apps.basic import (
    add,
    die,
    record,
    record_and_sleep,
    record_late,
    sleep,
    sleep_late,
)
from tests.integration.test_retries_and_time_limits import (  # noqa: F401 - run again here
    retries_app,
    test_hard_time_limit_kills_and_replaces_the_child,
    test_soft_time_limit_lets_the_task_clean_up,
)
from tests.integration.test_revoke_and_rate_limits import (  # noqa: F401
    test_a_worker_started_after_the_revoke_skips_the_task,
    test_terminate_stops_the_running_task_and_the_worker_goes_on,
)
from tests.integration.test_worker_lifecycle import (  # noqa: F401
    hold_sizes,
    queued,
    test_child_dying_mid_task_is_replaced,
    test_cold_shutdown_stops_running_tasks,
    test_three_children_run_three_tasks_at_once,
    test_warm_shutdown_finishes_running_task_and_gives_back_reserved,
)

TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture(autouse=True)
def _children_consume(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(CHILDREN_CONSUME_ENV, "1")
    yield


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def test_the_main_process_is_off_the_path_of_every_task(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(concurrency=2)
    assert "--children-consume" in " ".join(worker.proc.args)  # type: ignore[arg-type]
    assert add.delay(1, 1).get(timeout=10) == 2
    before = cpu_seconds(worker.pid)
    results = [add.delay(n, 1) for n in range(2000)]
    assert [r.get(timeout=30) for r in results] == [n + 1 for n in range(2000)]
    used = cpu_seconds(worker.pid) - before
    # The classic pool's main process spends ~70 ms of CPU per 1,000 tasks.
    assert used < 0.06, f"the main process used {used:.3f}s of CPU for 2,000 tasks"


def test_a_long_task_keeps_its_childs_hold_alive(
    app: Celery, worker_factory: WorkerFactory, runs: str, client: redis.Redis
) -> None:
    """Another worker recovers the holds of consumers silent for 1 s: the main process
    heartbeats its children's consumer ids, so a 3 s task is not taken from its child."""
    fast_recovery = {"MC_TEST_LOST_TIMEOUT": "1", "MC_TEST_HEARTBEAT": "0.2"}
    worker_factory(concurrency=1, env=fast_recovery)
    long = sleep_late.delay(3, "once")
    wait_until(lambda: hold_sizes(client, app.conf.key_prefix) == 1, timeout=10)
    second = worker_factory(concurrency=1, env=fast_recovery)
    assert long.get(timeout=15) == "once"
    assert record.delay(runs, "after").get(timeout=10) == 1
    assert f"sleep_late[{long.id}] received" not in second.output(), "recovered, run twice"


def test_nothing_is_lost_when_the_whole_worker_is_killed(
    app: Celery, worker_factory: WorkerFactory, client: redis.Redis
) -> None:
    prefix = app.conf.key_prefix
    quick_recovery = {"MC_TEST_LOST_TIMEOUT": "1"}
    first = worker_factory(concurrency=2, env=quick_recovery)
    running = [sleep_late.delay(2, n) for n in range(2)]
    backlog = [add.delay(n, 0) for n in range(6)]
    wait_until(lambda: hold_sizes(client, prefix) >= 2, timeout=10)
    children = first.children()
    first.kill()  # the main process: its children die with it (no one enforces limits)
    first.wait_exit(timeout=10)
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children), timeout=10)
    worker_factory(concurrency=2, env=quick_recovery)
    assert [r.get(timeout=20) for r in running] == [0, 1]
    assert [r.get(timeout=20) for r in backlog] == list(range(6))
    wait_until(lambda: hold_sizes(client, prefix) == 0 and queued(client, prefix) == 0)


def queue_a_busy_task_and_two_behind(app: Celery, client: redis.Redis) -> list[AsyncResult]:
    """Queued before the worker starts: its one child reserves all three at once."""
    results = [sleep.delay(2, "busy"), add.delay(0, 0), add.delay(1, 0)]
    wait_until(lambda: queued(client, app.conf.key_prefix) == 3, timeout=10)
    return results


def test_inspect_reserved_lists_a_childs_unstarted_batch(
    app: Celery, worker_factory: WorkerFactory, client: redis.Redis
) -> None:
    busy, *behind = queue_a_busy_task_and_two_behind(app, client)
    worker_factory(concurrency=1)
    inspect = app.control.inspect(timeout=1.0)

    def reserved() -> list[str]:
        replies = inspect.reserved() or {}
        return [task["id"] for tasks in replies.values() for task in tasks]

    assert wait_until(reserved, timeout=10) == [r.id for r in behind]
    assert busy.get(timeout=10) == "busy" and [r.get(timeout=10) for r in behind] == [0, 1]
    assert reserved() == []


def test_autoscale_grows_for_a_childs_unstarted_batch(
    app: Celery, worker_factory: WorkerFactory, client: redis.Redis
) -> None:
    busy, *behind = queue_a_busy_task_and_two_behind(app, client)
    worker_factory(concurrency=1, extra_args=["--autoscale=2,1"])
    inspect = app.control.inspect(timeout=1.0)

    def processes() -> int:
        return sum(len(s["pool"]["processes"]) for s in (inspect.stats() or {}).values())

    wait_until(lambda: processes() == 2, timeout=10, message="the pool did not grow")
    # The new child took the batch over: both ran while the first task still runs.
    assert [r.get(timeout=1.5) for r in behind] == [0, 1]
    assert busy.get(timeout=10) == "busy"


@pytest.mark.parametrize("recorder", [record, record_late], ids=["early ack", "acks_late"])
def test_what_a_killed_child_ran_is_stored_and_not_run_again(
    app: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str, recorder: Any
) -> None:
    """A child stores and acknowledges what it ran with its next round trip; killed first,
    the main process does both from what the child noted in its slot."""
    first = recorder.delay(runs, "first")
    doomed = die.delay("kill")
    wait_until(lambda: queued(client, app.conf.key_prefix) == 2, timeout=10)
    worker_factory(concurrency=1)  # its one child reserves both at once
    with pytest.raises(WorkerLostError):
        doomed.get(timeout=15)
    assert first.get(timeout=10) == 1
    assert record.delay(runs, "after").get(timeout=10) == 2
    assert client.lrange(runs, 0, -1) == [b"first", b"after"], "ran again"
    wait_until(lambda: hold_sizes(client, app.conf.key_prefix) == 0, timeout=10)


def test_a_running_task_without_acks_late_is_acknowledged_for_its_child(
    app: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    """The child acknowledges it only after it ran; the main process does so once it has
    run for a moment, so a worker killed meanwhile does not have it run again."""
    prefix = app.conf.key_prefix
    quick_recovery = {"MC_TEST_LOST_TIMEOUT": "1", "MC_TEST_HEARTBEAT": "0.2"}
    first = worker_factory(concurrency=1, env=quick_recovery)
    record_and_sleep.delay(runs, "long", 30)
    wait_until(lambda: client.llen(runs) == 1, timeout=10)
    wait_until(lambda: hold_sizes(client, prefix) == 0, timeout=5, message="never acknowledged")
    children = first.children()
    first.kill()
    first.wait_exit(timeout=10)
    for child in children:
        kill_pid(child)
    worker_factory(concurrency=1, env=quick_recovery)

    def first_forgotten() -> bool:
        members = client.zrange(KeySchema(prefix).consumers, 0, -1)
        return not any(f":{first.pid}:".encode() in m for m in members)

    wait_until(first_forgotten, timeout=10, message="the dead worker's holds not recovered")
    assert record.delay(runs, "after").get(timeout=10) == 2
    assert client.lrange(runs, 0, -1) == [b"long", b"after"]


def test_a_childs_results_are_stored_at_once_after_redis_forgot_the_scripts(
    app: Celery, worker_factory: WorkerFactory, client: redis.Redis
) -> None:
    """When Redis has forgotten the store script (restarted, flushed), a child's results
    are refused once and go again in the same round trip, the script loaded: none is lost,
    and none waits for the next wait's second."""
    worker_factory(concurrency=1)
    assert add.delay(0, 0).get(timeout=10) == 0
    for n in range(3):
        client.script_flush()
        started = time.monotonic()
        assert add.delay(n, 1).get(timeout=10) == n + 1
        assert time.monotonic() - started < 0.6
    # Acknowledged with their results: the hold is empty once the results are there.
    keys = KeySchema(app.conf.key_prefix)
    wait_until(lambda: not any(client.hlen(k) for k in client.keys(keys.hold("*"))), 10)
