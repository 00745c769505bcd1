"""Both halves of asyncio support together, as a user of an async web framework meets them:
``async def`` tasks on a ``-c 1`` worker with its defaults, sent with ``adelay`` and read with
``aget`` and ``await`` from one event loop that starts no thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from minicelery import Celery
from tests.helpers import RedisServer, WorkerFactory, pointed_at
from tests.integration.apps import aiotasks
from tests.integration.apps.aiotasks import nap

APP = "tests.integration.apps.aiotasks"


@pytest.fixture
def aioapp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(aiotasks.app, redis_server, key_prefix) as pointed:
        yield pointed


def test_200_async_tasks_sent_and_awaited_from_asyncio_in_under_5_seconds(
    aioapp: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(app_module=APP, concurrency=1)

    async def main() -> tuple[list[int], float, int, int]:
        before = threading.active_count()
        started = time.monotonic()
        results = [await nap.adelay(0.5, i) for i in range(200)]
        awaited = [await result.aget(timeout=20) for result in results[:100]]
        awaited += await asyncio.gather(*results[100:])
        elapsed = time.monotonic() - started
        during = threading.active_count()
        await aioapp.aio.aclose()
        return awaited, elapsed, before, during

    values, elapsed, before, during = asyncio.run(main())
    assert values == list(range(200))
    assert elapsed < 5.0, elapsed
    assert during == before  # no thread was started for sending or waiting
