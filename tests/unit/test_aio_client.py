"""The asyncio client on ``memory://`` (fakeredis's asyncio client, which runs the Lua
scripts): what it publishes is what the sync calls publish, and what it awaits is read as
``get()`` reads it. The worker side is in tests/integration/test_aio_client.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from minicelery import Celery, group, signals, states
from minicelery.exceptions import TimeoutError
from minicelery.redislayer.aioredis import numeric_host
from minicelery.result import GroupResult
from minicelery.serialization import exception_to_dict
from minicelery.trace import build_meta

T = TypeVar("T")


def run(app: Celery, make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await make()
        finally:
            await app.aio.aclose()

    return asyncio.run(main())


def queued(app: Celery, queue: str = "celery") -> list[bytes]:
    client = app.broker.client  # type: ignore[attr-defined]
    return list(client.lrange(app.broker.keys.queue(queue, 0), 0, -1))  # type: ignore[attr-defined]


def test_adelay_publishes_the_message_delay_publishes(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    sync_id = add.delay(1, 2).id
    async_id = run(app, lambda: add.adelay(1, 2)).id
    first, second = queued(app)
    assert second.replace(async_id.encode(), sync_id.encode()) == first


def test_aapply_async_options_and_asend_task(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    async def send() -> None:
        await add.aapply_async((1, 2), queue="other", priority=0, task_id="given-id")
        await app.asend_task("by.name", (3,), queue="other")
        await add.aapply_async((1, 2), countdown=60)

    run(app, send)
    assert len(queued(app, "other")) == 2
    assert b"given-id" in queued(app, "other")[0]
    assert b"by.name" in queued(app, "other")[1]
    scheduled = app.broker.client.zrange(app.broker.keys.scheduled, 0, -1)  # type: ignore[attr-defined]
    assert len(scheduled) == 1


def test_a_group_is_published_in_one_round_and_signals_follow_the_publish(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    seen: list[int] = []

    def after(**kwargs: Any) -> None:
        seen.append(len(queued(app)))  # the message is in Redis when the signal is sent

    signals.after_task_publish.connect(after)
    try:
        result = run(app, lambda: group(add.s(i, i) for i in range(5)).aapply_async())
    finally:
        signals.after_task_publish.disconnect(after)
    assert len(result.results) == 5
    assert len(queued(app)) == 5
    assert seen == [5] * 5


def test_aget_and_await_read_a_stored_result_and_raise_a_failure(app: Celery) -> None:
    app.backend.store("ok", build_meta("ok", states.SUCCESS, 42))
    app.backend.store("bad", build_meta("bad", states.FAILURE, exception_to_dict(KeyError("m"))))
    ok, bad = app.AsyncResult("ok"), app.AsyncResult("bad")

    async def read() -> tuple[Any, Any, Any]:
        with pytest.raises(KeyError):
            await bad
        return await ok, await ok.aget(timeout=1), await bad.aget(propagate=False)

    value, again, error = run(app, read)
    assert (value, again) == (42, 42)
    assert isinstance(error, KeyError)


def test_timeout_raises_timeout_error_unless_the_record_is_ready(app: Celery) -> None:
    app.backend.store("done", build_meta("done", states.SUCCESS, 1))

    async def read() -> Any:
        with pytest.raises(TimeoutError):
            await app.AsyncResult("never").aget(timeout=0.1)
        return await app.AsyncResult("done").aget(timeout=0)

    assert run(app, read) == 1


def test_a_group_result_awaits_every_member_in_order(app: Celery) -> None:
    for i in range(20):
        app.backend.store(f"m{i}", build_meta(f"m{i}", states.SUCCESS, i))
    grouped = GroupResult("g", [app.AsyncResult(f"m{i}") for i in range(20)], app=app)
    assert run(app, grouped.aget) == list(range(20))


def test_no_thread_is_started(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    before = threading.active_count()

    async def scenario() -> list[Any]:
        results = [await add.adelay(i, i) for i in range(20)]
        for result in results:
            app.backend.store(result.id, build_meta(result.id, states.SUCCESS, 0))
        values = list(await asyncio.gather(*results))
        # Counted in the loop: asyncio.run() joins its executor's threads when it ends.
        assert threading.active_count() == before
        return values

    assert run(app, scenario) == [0] * 20


def test_progress_records_reach_on_message_before_the_ready_one(app: Celery) -> None:
    app.backend.store("p", build_meta("p", "PROGRESS", {"done": 1}))
    seen: list[str] = []

    async def read() -> Any:
        waiting = asyncio.ensure_future(app.AsyncResult("p").aget(timeout=5,
                                        on_message=lambda m: seen.append(m["status"])))  # fmt: skip
        while not seen:
            await asyncio.sleep(0.01)
        app.backend.store("p", build_meta("p", states.SUCCESS, 7))
        return await waiting

    assert run(app, read) == 7
    assert seen == ["PROGRESS", "SUCCESS"]


def test_aiter_states_gives_each_record_up_to_the_ready_one(app: Celery) -> None:
    app.backend.store("s", build_meta("s", "PROGRESS", {"done": 1}))

    async def read() -> list[tuple[str, Any]]:
        seen: list[tuple[str, Any]] = []
        async for meta in app.AsyncResult("s").aiter_states(timeout=5):
            seen.append((meta["status"], meta["result"]))
            if len(seen) == 1:
                app.backend.store("s", build_meta("s", "PROGRESS", {"done": 2}))
            elif len(seen) == 2:
                app.backend.store("s", build_meta("s", states.SUCCESS, 3))
        return seen

    assert run(app, read) == [("PROGRESS", {"done": 1}), ("PROGRESS", {"done": 2}),
                              ("SUCCESS", 3)]  # fmt: skip


def test_aiter_states_times_out(app: Celery) -> None:
    async def read() -> None:
        with pytest.raises(TimeoutError):
            async for _ in app.AsyncResult("never").aiter_states(timeout=0.2):
                pass

    run(app, read)


def test_eager_tasks_run_here_and_await_at_once(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_always_eager=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    async def scenario() -> tuple[int, list[int]]:
        value = await (await add.adelay(1, 2))
        grouped = await group(add.s(i, i) for i in range(3)).aapply_async()
        return value, await grouped

    assert asyncio.run(scenario()) == (3, [0, 2, 4])
    assert queued(app) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6380/1", "redis://127.0.0.1:6380/1"),
        ("redis://user:pw@localhost/2?x=1", "redis://user:pw@127.0.0.1:6379/2?x=1"),
        ("redis://127.0.0.1:7/0", "redis://127.0.0.1:7/0"),
        ("redis://[::1]:7/0", "redis://[::1]:7/0"),
    ],
)
def test_host_names_are_resolved_before_connecting(url: str, expected: str) -> None:
    assert numeric_host(url) == expected
