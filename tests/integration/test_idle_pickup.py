"""A worker that has been idle for a while picks up the next task at once, in both pools:
an idle consuming child wakes every second to renew its wait, and that renewal must never
wait on Redis itself (it once sat out the 10 s socket timeout on every renewal)."""

from __future__ import annotations

import time

import pytest

from minicelery import Celery
from tests.helpers import CHILDREN_CONSUME_ENV, WorkerFactory
from tests.integration.apps.basic import add

IDLE = 2.5  # seconds: more than two renewals of an idle wait (each 1 s)


@pytest.mark.parametrize("children_consume", ["0", "1"], ids=["classic", "children-consume"])
def test_a_task_sent_after_an_idle_spell_runs_at_once(
    app: Celery,
    worker_factory: WorkerFactory,
    monkeypatch: pytest.MonkeyPatch,
    children_consume: str,
) -> None:
    monkeypatch.setenv(CHILDREN_CONSUME_ENV, children_consume)
    worker_factory(concurrency=1)
    assert add.delay(1, 1).get(timeout=10) == 2  # the child has acknowledged a task
    time.sleep(IDLE)  # the scenario itself: an idle spell, not a synchronisation
    started = time.monotonic()
    assert add.delay(2, 2).get(timeout=15) == 4
    took = time.monotonic() - started
    assert took < 1.0, f"the task took {took:.2f}s after an idle spell"
