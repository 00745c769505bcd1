"""A message that keeps killing its worker ends in the dead-letter store (beyond Celery)."""

from __future__ import annotations

import pytest
import redis

from minicelery import Celery, states
from minicelery.exceptions import WorkerLostError
from tests.helpers import WorkerFactory, wait_until
from tests.integration.apps.basic import die_rejected


def test_a_message_that_keeps_killing_its_worker_is_dead_lettered(
    app: Celery, worker_factory: WorkerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    runs = f"{key_prefix}:runs"
    worker = worker_factory(concurrency=1)
    result = die_rejected.delay(runs)
    with pytest.raises(WorkerLostError):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    # task_max_worker_lost defaults to 3: run, requeued, run, requeued, run, dead-lettered.
    assert redis_client.llen(runs) == 3
    letters = wait_until(lambda: app.broker.dead_letters(), timeout=5)
    assert [letter.id for letter in letters] == [result.id]
    assert "killed its worker process 3 times" in letters[0].reason
    worker.wait_for_line("Dead-lettered a message")
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}
