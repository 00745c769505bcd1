"""A task's result does not depend on the tasks reserved with it: it can be read once the
task has run, while a later one of the same reserve still runs, and it survives that later
one's child being killed at its hard time limit.

The messages are queued before the worker starts, so one reserve takes them together (one
slot, a prefetch window of four), as they are in a busy worker.
"""

from __future__ import annotations

import time

import pytest

from minicelery import Celery, states
from minicelery.exceptions import TimeLimitExceeded
from tests.helpers import WorkerFactory

BASIC = "tests.integration.apps.basic"
ONE_RESERVE = ["--prefetch-multiplier", "4"]


def test_a_result_is_readable_while_a_later_task_of_its_reserve_runs(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    sleep = app.tasks[f"{BASIC}.sleep"]
    quick = sleep.delay(0.1, "quick")
    slow = sleep.delay(4.0, "slow")
    worker_factory(BASIC, concurrency=1, extra_args=ONE_RESERVE)
    started = time.monotonic()

    assert quick.get(timeout=3.0) == "quick"

    assert time.monotonic() - started < 3.0
    assert slow.state != states.SUCCESS  # the slow one still runs: it did not wait for it
    assert slow.get(timeout=10) == "slow"


def test_a_result_survives_a_later_task_of_its_reserve_being_killed(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    sleep = app.tasks[f"{BASIC}.sleep"]
    quick = sleep.delay(0.1, "quick")
    killed = sleep.apply_async((30, "killed"), time_limit=1.5)
    worker_factory(BASIC, concurrency=1, extra_args=ONE_RESERVE)

    with pytest.raises(TimeLimitExceeded):
        killed.get(timeout=15)

    assert quick.get(timeout=5) == "quick"
    assert quick.state == states.SUCCESS
