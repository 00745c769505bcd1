"""``Task.replace()`` and ``Task.add_to_chord()`` with a real prefork worker: the
replacement fills the replaced task's result, keeps its links and its place in chains,
groups and chords, and a chord waits for the parts its header tasks add."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from minicelery import Celery, chain, chord, group
from tests.helpers import ManagedProcess, RedisServer, WorkerFactory, pointed_at, wait_until
from tests.integration.apps import replace_tasks as rt

APP = "tests.integration.apps.replace_tasks"
T = 20  # generous timeout for a get() on a loaded machine


@pytest.fixture
def replace_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(rt.app, redis_server, key_prefix) as app:
        yield app


@pytest.fixture
def worker(worker_factory: WorkerFactory, replace_app: Celery) -> ManagedProcess:
    return worker_factory(APP, concurrency=2)


def echoed(client: redis.Redis, key: str, count: int) -> list[str]:
    values = wait_until(lambda: client.lrange(key, 0, -1) if client.llen(key) >= count else None)
    return sorted(value.decode() for value in values)


def test_replacements_take_the_tasks_place_in_chains_groups_and_chords(
    worker: ManagedProcess, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:echo"
    c = chain(rt.identity.s("Hello "), rt.replace_with_chain.s(key), rt.add.s("world"))
    c.link(rt.echo.s(key=key))
    assert c.delay().get(timeout=T) == "Hello world"
    g = group(rt.identity.s(42), rt.replace_with_chain.s(1337, key), rt.identity.s(7))
    assert g.delay().get(timeout=T) == [42, 1337, 7]
    header = chord((rt.identity.s(1), rt.replace_with_chain.s(2, key)), rt.identity.s())
    assert header.delay().get(timeout=T) == [1, 2]
    assert rt.nesting.delay(2).get(timeout=T) == [0, 1, 2]
    # The inner chains' links (three) and the outer chain's, each called once.
    assert echoed(redis_client, key, 4) == ["1337", "2", "Hello ", "Hello world"]


def test_a_failing_replacement_calls_every_errback_and_fails_the_chain(
    worker: ManagedProcess, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:echo"
    c = chain(rt.identity.s("x"), rt.replace_with_failing_chain.s(key), rt.add.s("y"))
    c.link_error(rt.echo.si("outer errback", key=key))
    with pytest.raises(ValueError, match="expected"):
        c.delay().get(timeout=T)
    assert echoed(redis_client, key, 2) == ["inner errback", "outer errback"]


def test_groups_replacing_tasks_and_parts_added_to_a_chord(worker: ManagedProcess) -> None:
    c1 = chord(
        [
            chord([rt.add.s(1, 2), rt.add.s(3, 4)], rt.add_to_all.s(5)) | rt.tsum.s(),
            chord([rt.add.s(6, 7), rt.add.s(0, 0)], rt.add_to_all.s(8)) | rt.tsum.s(),
        ],
        rt.add_to_all.s(9),
    )
    assert c1().get(timeout=T) == [29, 38]
    added = group([rt.add_to_all_to_chord.s([1, 2, 3], 4)]) | rt.identity.s()
    assert sorted(added().get(timeout=T)) == [0, 5, 6, 7]
