"""Prefork children replaced on purpose: ``--max-tasks-per-child`` (after N tasks) and
``--max-memory-per-child`` (after a task that leaves the child above N KiB resident), seen
from outside through the PIDs tasks report, with a real worker on a real redis-server.

Celery's semantics: the task that reaches the limit finishes and keeps its result; the
child leaves afterwards and a fresh one takes its place; nothing is lost or failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from minicelery import Celery, states
from tests.helpers import RedisServer, WorkerFactory, pointed_at, wait_until
from tests.integration.apps.lifecycle import app as lifecycle_app
from tests.integration.apps.lifecycle import hog, pid, rss_kib

LIFECYCLE = "tests.integration.apps.lifecycle"
TIMEOUT = 20.0


@pytest.fixture
def app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(lifecycle_app, redis_server, key_prefix) as pointed:
        yield pointed


def pids_one_by_one(count: int) -> list[int]:
    """Run ``pid`` ``count`` times, each after the previous one finished."""
    return [pid.delay().get(timeout=TIMEOUT) for _ in range(count)]


def test_max_tasks_per_child_replaces_the_child_every_n_tasks(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(LIFECYCLE, concurrency=1, extra_args=["--max-tasks-per-child", "2"])
    first_child = wait_until(worker.children, timeout=TIMEOUT)

    seen = pids_one_by_one(6)

    assert seen[0] == first_child[0]
    assert [seen[0], seen[2], seen[4]] == [seen[1], seen[3], seen[5]], seen
    assert len({seen[0], seen[2], seen[4]}) == 3, seen
    # The third child retired after its second task too: the replaced children are gone
    # (reaped, not zombies) and one fresh child serves.
    wait_until(
        lambda: len(worker.children()) == 1 and not set(worker.children()) & set(seen),
        timeout=TIMEOUT,
        message=lambda: f"children {worker.children()} after tasks ran in {seen}",
    )
    assert worker.is_alive(), worker.describe()


def test_max_tasks_per_child_loses_nothing_under_a_backlog(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    """Twenty tasks queued at once on two children replaced after every task: each one
    succeeds, and no child ran more than one."""
    results = [pid.delay() for _ in range(20)]
    worker_factory(LIFECYCLE, concurrency=2, extra_args=["--max-tasks-per-child", "1"])

    seen = [result.get(timeout=TIMEOUT) for result in results]

    assert all(result.state == states.SUCCESS for result in results)
    assert len(set(seen)) == 20, seen


def test_max_memory_per_child_replaces_the_child_after_the_task(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    """A task that leaves 60 MB behind in a child limited to its starting size plus 30 MB:
    the task succeeds, then the child is replaced; below the limit, it is kept."""
    probe = worker_factory(LIFECYCLE, concurrency=1)
    baseline = rss_kib.delay().get(timeout=TIMEOUT)
    probe.stop()
    limit = baseline + 30_000
    worker = worker_factory(
        LIFECYCLE, concurrency=1, extra_args=["--max-memory-per-child", str(limit)]
    )

    before = pids_one_by_one(3)
    hogged = hog.delay(60)
    hog_pid = hogged.get(timeout=TIMEOUT)
    after = pids_one_by_one(2)

    assert len(set(before)) == 1, f"replaced below the limit ({limit} KiB): {before}"
    assert hogged.state == states.SUCCESS
    assert hog_pid == before[0]
    assert after[0] == after[1] != hog_pid, (before, hog_pid, after)
    worker.wait_for_line("exceeds the memory limit", timeout=TIMEOUT)
