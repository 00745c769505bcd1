"""The event loop thread of a child that runs ``async def`` tasks (:mod:`minicelery.worker.
aioloop`) and an async task's run in two halves (:mod:`minicelery.trace_async`), without a
worker: time limits inside the coroutine, cancellation, the request of each coroutine."""

from __future__ import annotations

import asyncio
import select
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import Celery, states
from minicelery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from minicelery.task import Context
from minicelery.trace_async import begin, finish
from minicelery.worker.aioloop import AioLoop, Ended


@pytest.fixture
def aio() -> Iterator[AioLoop]:
    loop = AioLoop()
    try:
        yield loop
    finally:
        loop.close()


def ended(aio: AioLoop, count: int, timeout: float = 5.0) -> dict[str, Ended]:
    """Wait (on the wake-up pipe, as a child does) for ``count`` coroutines to end."""
    found: dict[str, Ended] = {}
    while len(found) < count:
        ready, _, _ = select.select([aio.wake_fd], [], [], timeout)
        assert ready, f"only {sorted(found)} ended"
        found.update((e.key, e) for e in aio.take())
    return found


async def sleeps(seconds: float, value: Any = None) -> Any:
    await asyncio.sleep(seconds)
    return value


async def cleans_up() -> str:
    try:
        await asyncio.sleep(5)
    except SoftTimeLimitExceeded:
        await asyncio.sleep(0.01)  # it may still await while it cleans up
        return "cleaned up"
    return "slept"


def test_many_coroutines_wait_at_once(aio: AioLoop) -> None:
    for i in range(50):
        aio.submit(str(i), sleeps(0.2, i))
    found = ended(aio, 50, timeout=2.0)
    assert {k: e.value for k, e in found.items()} == {str(i): i for i in range(50)}
    assert aio.in_flight == 0


def test_soft_limit_is_raised_inside_the_coroutine(aio: AioLoop) -> None:
    aio.submit("soft", cleans_up(), (None, 0.1))
    aio.submit("neighbour", sleeps(0.3, "ok"))
    found = ended(aio, 2)
    assert found["soft"].value == "cleaned up" and found["soft"].exc is None
    assert found["neighbour"].value == "ok"


def test_hard_limit_cancels_with_time_limit_exceeded(aio: AioLoop) -> None:
    aio.submit("hard", sleeps(5), (0.1, None))
    aio.submit("neighbour", sleeps(0.3, "ok"))
    found = ended(aio, 2)
    assert isinstance(found["hard"].exc, TimeLimitExceeded)
    assert not found["hard"].cancelled
    assert found["neighbour"].value == "ok"


def test_cancel_ends_it_cancelled(aio: AioLoop) -> None:
    aio.submit("doomed", sleeps(5))
    aio.cancel("doomed")
    found = ended(aio, 1)
    assert found["doomed"].cancelled


def test_each_coroutine_sees_its_own_request(app: Celery, aio: AioLoop) -> None:
    @app.task(bind=True)
    async def whoami(self: Any, seconds: float) -> str | None:
        await asyncio.sleep(seconds)
        return str(self.request.id)

    begun = {}
    for i in range(10):
        request = Context(id=f"id-{i}", task=whoami.name, args=[0.05 * (10 - i)], kwargs={},
                          is_eager=False, called_directly=False)  # fmt: skip
        begun[f"id-{i}"] = begin(app, whoami, request)
        aio.submit(f"id-{i}", begun[f"id-{i}"].coro)
    for key, end in ended(aio, 10).items():
        assert end.value == key
        outcome = finish(app, begun[key], end.value, end.exc, end.runtime)
        assert outcome.state == states.SUCCESS
        assert app.AsyncResult(key).get(timeout=1) == key


def test_a_failure_is_classified_as_run_task_does(app: Celery, aio: AioLoop) -> None:
    @app.task
    async def explode() -> None:
        raise ValueError("bad")

    request = Context(id="x", task=explode.name, args=[], kwargs={}, is_eager=False,
                      called_directly=False)  # fmt: skip
    started = begin(app, explode, request)
    aio.submit("x", started.coro)
    end = ended(aio, 1)["x"]
    outcome = finish(app, started, end.value, end.exc, end.runtime)
    assert outcome.state == states.FAILURE
    assert "ValueError: bad" in (outcome.traceback or "")
    assert app.AsyncResult("x").state == states.FAILURE
