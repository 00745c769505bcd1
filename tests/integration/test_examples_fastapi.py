"""``examples/fastapi``: its worker run as the README says (``minicelery -A tasks worker`` in
the example's folder, on the test's redis-server), its FastAPI app called in this process
through httpx's ASGI transport, so every request's awaits run on the test's event loop."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import ManagedProcess, RedisServer
from tests.integration.examples_support import EXAMPLES, example_env, require_modules, start_worker

FOLDER = EXAMPLES / "fastapi"
EXAMPLE_DB = 14  # the example uses the default key prefix: a database of this file's own


@pytest.fixture
def env(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with example_env(redis_server, EXAMPLE_DB) as environment:
        for name in ("MINICELERY_BROKER_URL", "MINICELERY_RESULT_BACKEND"):
            monkeypatch.setenv(name, environment[name])
        yield environment


@pytest.fixture
def worker(env: dict[str, str]) -> Iterator[ManagedProcess]:
    worker = start_worker(FOLDER, "tasks", env)
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture
def example(env: dict[str, str]) -> Iterator[ModuleType]:
    """The example's ``main`` module, imported from its folder (and forgotten after)."""
    require_modules("fastapi", "httpx2")
    sys.path.insert(0, str(FOLDER))
    try:
        yield importlib.import_module("main")
    finally:
        sys.path.remove(str(FOLDER))
        for name in ("main", "tasks"):
            sys.modules.pop(name, None)


def _events(body: str) -> list[tuple[str, Any]]:
    found = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_requests_await_tasks_and_stream_progress(
    example: ModuleType, worker: ManagedProcess
) -> None:
    import httpx2

    threads_before = threading.active_count()

    async def scenario() -> tuple[list[Any], str, Any, Any]:
        transport = httpx2.ASGITransport(app=example.api)
        async with httpx2.AsyncClient(transport=transport, base_url="http://example") as http:
            sums = await asyncio.gather(
                *(http.post("/add", params={"x": i, "y": 1}) for i in range(20))
            )
            started = await http.post("/long", params={"total": 4, "step_seconds": 0.2})
            task_id = started.json()["task_id"]
            events = await http.get(f"/tasks/{task_id}/events", params={"timeout": 30})
            final = await http.get(f"/tasks/{task_id}", params={"timeout": 10})
            missing = await http.get("/tasks/no-such-task", params={"timeout": 0.2})
            threads = threading.active_count()  # in the loop: asyncio.run() joins its own
        await example.app.aio.aclose()
        assert threads == threads_before
        assert started.status_code == 202
        assert events.headers["content-type"].startswith("text/event-stream")
        return [r.json()["result"] for r in sums], events.text, final.json(), missing.status_code

    sums, events, final, missing = asyncio.run(scenario())
    assert sums == [i + 1 for i in range(20)]
    told = _events(events)
    assert told[-1] == ("SUCCESS", {"state": "SUCCESS",
                                    "info": {"current": 4, "total": 4, "result": 42}})  # fmt: skip
    progress = [info["info"]["current"] for state, info in told[:-1] if state == "PROGRESS"]
    assert progress and progress == sorted(progress)  # seen moving, in order
    assert final["result"] == {"current": 4, "total": 4, "result": 42}
    assert missing == 504
