"""A chord whose header fails, on a real redis-server and a real prefork worker, while the
client already waits on it: as in Celery 5.7, ``get()`` raises the header task's own error
and the errbacks linked to the body run (once per task of a group body)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from minicelery import Celery, chord, group
from minicelery.exceptions import ChordError
from tests.helpers import ManagedProcess, RedisServer, WorkerFactory, pointed_at, wait_until
from tests.integration.apps import canvas_tasks as ct

APP = "tests.integration.apps.canvas_tasks"
T = 20  # generous timeout for a get() on a loaded machine


@pytest.fixture
def canvas_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(ct.app, redis_server, key_prefix) as app:
        yield app


@pytest.fixture
def worker(worker_factory: WorkerFactory, canvas_app: Celery) -> ManagedProcess:
    return worker_factory(APP, concurrency=2)


def test_get_raises_the_header_error_of_a_chord_failing_while_it_waits(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:errbacks"
    late_failure = ct.fail.si().set(countdown=1)  # fails after get() has started waiting
    result = chord([ct.add.si(1, 1), late_failure], ct.tsum.s()).apply_async(
        link_error=ct.old_style_errback.s(key=key)
    )
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=T)
    with pytest.raises(ChordError):
        result.get(timeout=T, follow_parents=False)
    assert wait_until(lambda: redis_client.lrange(key, 0, -1), timeout=T) == [result.id.encode()]


def test_each_task_of_a_group_body_fails_with_the_header_error_and_calls_its_errbacks(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:errbacks"
    body = group(ct.tsum.s(), ct.tsum.s())
    result = chord([ct.add.si(1, 1), ct.fail.si()], body).apply_async(
        link_error=ct.old_style_errback.s(key=key)
    )
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=T)
    assert all(isinstance(member.result, ValueError) for member in result.results)
    wait_until(lambda: redis_client.llen(key) >= 2, timeout=T)
    assert sorted(redis_client.lrange(key, 0, -1)) == sorted(r.id.encode() for r in result.results)
