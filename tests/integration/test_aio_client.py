"""The asyncio client against a real redis-server and a real worker: ``adelay`` and
``aapply_async`` send what ``delay`` sends, ``aget`` and ``await`` give what ``get()``
gives (values, raised errors, timeouts), many awaits share one reading connection, and
no thread is started for any of it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import Celery, chain, chord, group
from minicelery.exceptions import TimeoutError
from minicelery.redislayer.aioredis import async_client
from tests.helpers import RedisServer, WorkerFactory, pointed_at
from tests.integration.apps import basic
from tests.integration.apps import canvas_tasks as ct

APP = "tests.integration.apps.basic"
CANVAS_APP = "tests.integration.apps.canvas_tasks"


@pytest.fixture
def canvas_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(ct.app, redis_server, key_prefix) as pointed:
        yield pointed


def run(app: Celery, coro: Any) -> Any:
    """Run ``coro`` in a new event loop, closing the app's asyncio connections after."""

    async def main() -> Any:
        try:
            return await coro
        finally:
            await app.aio.aclose()

    return asyncio.run(main())


def test_two_hundred_sends_and_awaits_share_one_reader_and_start_no_thread(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=2)
    threads_before = threading.active_count()

    async def scenario() -> tuple[list[int], list[int], int]:
        results = [await basic.add.adelay(i, i) for i in range(200)]
        by_aget = await asyncio.gather(*(r.aget(timeout=30) for r in results[:100]))
        by_await = await asyncio.gather(*results[100:])
        assert app.aio.waiter is not None
        assert app.aio.waiter.watched == {}  # every finished await has left the rounds
        # Counted in the loop: asyncio.run() joins its executor's threads when it ends.
        assert threading.active_count() == threads_before
        return list(by_aget), list(by_await), app.aio.waiter.rounds

    by_aget, by_await, rounds = run(app, scenario())
    assert by_aget == [2 * i for i in range(100)]
    assert by_await == [2 * i for i in range(100, 200)]
    assert 0 < rounds < 200  # waits were batched: far fewer round trips than awaits
    assert threading.active_count() == threads_before


def test_aapply_async_takes_apply_async_options(app: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(app_module=APP, concurrency=1)

    async def scenario() -> tuple[Any, str, float]:
        started = time.monotonic()
        result = await basic.add.aapply_async((2, 3), task_id="aio-fixed-id", countdown=1)
        value = await result.aget(timeout=20)
        return value, result.id, time.monotonic() - started

    value, task_id, took = run(app, scenario())
    assert (value, task_id) == (5, "aio-fixed-id")
    assert took >= 0.9  # the countdown held it back


def test_asend_task_by_name(app: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(app_module=APP, concurrency=1)

    async def scenario() -> Any:
        return await (await app.asend_task(basic.mul.name, (6, 7)))

    assert run(app, scenario()) == 42


def test_a_failing_task_raises_its_error_and_propagate_false_returns_it(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)

    async def scenario() -> Any:
        result = await basic.fail.adelay("kaput")
        with pytest.raises(ValueError, match="kaput"):
            await result
        return await result.aget(propagate=False), result.state

    error, state = run(app, scenario())
    assert isinstance(error, ValueError)
    assert state == "FAILURE"


def test_a_timeout_raises_timeout_error(app: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(app_module=APP, concurrency=1)

    async def scenario() -> float:
        result = await basic.sleep.adelay(5)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await result.aget(timeout=0.3)
        return time.monotonic() - started

    took = run(app, scenario())
    assert 0.25 <= took < 2


def test_a_new_await_joins_a_blocked_round_at_once(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    """While one await blocks on a long task, a second for a quick task is answered in far
    less than the one-second slice: the reader is woken, not waited out."""
    worker_factory(app_module=APP, concurrency=2)

    async def scenario() -> float:
        slow = await basic.sleep.adelay(3, "slow")
        waiting = asyncio.ensure_future(slow.aget(timeout=20))
        quick = await basic.add.adelay(1, 1)
        assert await quick.aget(timeout=10) == 2
        await asyncio.sleep(0.2)  # let the reader block again on the slow one alone
        started = time.monotonic()
        done = basic.add.delay(2, 2)  # sent and finished while the reader blocks
        done.get(timeout=10)
        assert await done.aget(timeout=10) == 4
        took = time.monotonic() - started
        assert await waiting == "slow"
        return took

    assert run(app, scenario()) < 0.5


def test_group_chain_and_chord_values(canvas_app: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(app_module=CANVAS_APP, concurrency=2)

    async def scenario() -> tuple[Any, Any, Any, Any]:
        grouped = await group(ct.add.s(i, i) for i in range(10)).aapply_async()
        chained = await chain(ct.add.s(1, 2), ct.mul.s(10)).aapply_async()
        header = [ct.add.s(i, 1) for i in range(5)]
        chorded = await chord(header, ct.tsum.s()).aapply_async()
        called = chord(header)(ct.tsum.s())
        return (await grouped.aget(timeout=30), await chained, await chorded,
                await called.aget(timeout=30))  # fmt: skip

    grouped, chained, chorded, called = run(canvas_app, scenario())
    assert grouped == [2 * i for i in range(10)]
    assert chained == 30
    assert chorded == called == sum(range(1, 6))


def test_a_failed_chain_link_raises_from_the_last_result(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)

    async def scenario() -> None:
        result = await chain(basic.fail.si("first link"), basic.add.s(1)).aapply_async()
        with pytest.raises(ValueError, match="first link"):
            await result.aget(timeout=20)

    run(app, scenario())


def test_a_thousand_concurrent_sends_are_coalesced(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    """Sends made at once share round trips (and connections): none fails for want of a
    connection, and every task runs."""
    worker_factory(app_module=APP, concurrency=2)

    async def scenario() -> tuple[list[int], int]:
        results = await asyncio.gather(*(basic.add.adelay(i, 0) for i in range(1000)))
        flushes = app.aio.publisher.flushes
        return list(await asyncio.gather(*(r.aget(timeout=60) for r in results))), flushes

    values, flushes = run(app, scenario())
    assert values == list(range(1000))
    assert flushes < 100


def test_scripts_forgotten_by_redis_are_loaded_again(
    app: Celery, worker_factory: WorkerFactory, client: Any
) -> None:
    """A Redis restarted (or SCRIPT FLUSHed) between two sends or two waits answers
    NOSCRIPT: the client loads the script again and nothing is lost."""
    worker_factory(app_module=APP, concurrency=1)

    async def scenario() -> list[int]:
        values = [await (await basic.add.adelay(1, 1))]
        client.script_flush()
        values.append(await (await basic.add.adelay(2, 2)))
        client.script_flush()
        results = await asyncio.gather(*(basic.add.adelay(i, 0) for i in range(3)))
        client.script_flush()
        values += await asyncio.gather(*results)
        return values

    assert run(app, scenario()) == [2, 4, 0, 1, 2]


def test_a_host_name_is_reached_without_a_resolver_thread(redis_server: RedisServer) -> None:
    """asyncio would resolve ``localhost`` in an executor thread; the client resolves it
    before connecting, so no thread is started."""
    url = redis_server.url.replace("127.0.0.1", "localhost")
    assert "localhost" in url
    threads = threading.active_count()

    async def ping() -> tuple[Any, int]:
        client = async_client(url)
        try:  # counted in the loop: asyncio.run() joins the executor's threads at its end
            return await client.ping(), threading.active_count()
        finally:
            await client.aclose()

    assert asyncio.run(ping()) == (True, threads)
