"""``Reject`` and revoke as Celery 5.7 ends them, on a real worker and redis-server: a
message rejected with requeue comes back marked ``redelivered``; one rejected for good ends
FAILURE; a revoke marks a task that has not started REVOKED at once, and leaves the state of
a task another worker started."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from minicelery import Celery, states
from minicelery.exceptions import Reject
from tests.helpers import RedisServer, WorkerFactory, pointed_at, wait_until
from tests.integration.apps import rejects

APP = "tests.integration.apps.rejects"


@pytest.fixture
def rapp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(rejects.app, redis_server, key_prefix) as pointed:
        yield pointed


def deliveries(client: redis.Redis, key: str) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in client.lrange(key, 0, -1)]


def test_a_requeued_reject_comes_back_redelivered_and_succeeds(
    rapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    result = rejects.reject_then_succeed.delay(runs)
    assert result.get(timeout=10) == "second-pass"
    assert result.status == states.SUCCESS
    assert deliveries(client, runs) == [
        {"redelivered": False, "retries": 0},
        {"redelivered": True, "retries": 0},
    ]


def test_a_reject_without_requeue_ends_failure(
    rapp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    result = rejects.reject_for_good.delay(runs)
    with pytest.raises(Reject):
        result.get(timeout=10)
    assert (result.status, result.ready(), result.failed()) == (states.FAILURE, True, True)
    assert len(deliveries(client, runs)) == 1


def test_revoke_marks_tasks_not_started_and_leaves_those_started_elsewhere(
    rapp: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)
    wait_until(lambda: rapp.control.ping(timeout=0.5), 15, message="no worker answered ping")
    backend = rapp.backend
    started, progress, waiting = (str(uuid.uuid4()) for _ in range(3))
    backend.store_result(started, {"hostname": "other@host"}, states.STARTED)
    backend.store_result(progress, {"current": 1}, "PROGRESS")

    # The worker replies once the records are written.
    assert rapp.control.revoke([started, progress, waiting], reply=True, timeout=10)
    assert backend.get_state(started) == states.STARTED
    assert backend.get_state(progress) == "PROGRESS"
    assert backend.get_state(waiting) == states.REVOKED
    assert rapp.AsyncResult(waiting).state == states.REVOKED
