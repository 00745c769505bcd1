"""A FastAPI application that sends tasks and awaits them without blocking its event loop.

- ``POST /add?x=1&y=2`` sends ``tasks.add`` with ``adelay`` and awaits its value;
- ``POST /long`` starts ``tasks.long_task`` and answers ``202`` with its id;
- ``GET /tasks/{task_id}`` awaits the task (``?timeout=`` seconds, 504 when it runs longer);
- ``GET /tasks/{task_id}/events`` streams its states as server-sent events, one per
  ``PROGRESS`` record and the last one ready, read from the result's record stream.

    uvicorn main:api              # from this folder, next to ``minicelery -A tasks worker``

Every await of every request shares one Redis connection for results: waiting costs no
thread and no polling, whatever the number of requests in flight.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from tasks import add, app, long_task

from minicelery.exceptions import TimeoutError


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await app.aio.aclose()  # the asyncio client's connections, made on first use


api = FastAPI(title="minicelery asyncio example", lifespan=lifespan)


@api.post("/add")
async def add_numbers(x: int, y: int) -> dict[str, Any]:
    result = await add.adelay(x, y)
    return {"task_id": result.id, "result": await result.aget(timeout=30)}


@api.post("/long", status_code=202)
async def start_long_task(total: int = 10, step_seconds: float = 0.5) -> dict[str, str]:
    result = await long_task.aapply_async(kwargs={"total": total, "step_seconds": step_seconds})
    return {"task_id": result.id, "events": f"/tasks/{result.id}/events"}


@api.get("/tasks/{task_id}")
async def task_result(task_id: str, timeout: float = 10) -> dict[str, Any]:
    try:
        value = await app.AsyncResult(task_id).aget(timeout=timeout, propagate=False)
    except TimeoutError as exc:
        raise HTTPException(status_code=504, detail=str(exc)) from exc
    shown = repr(value) if isinstance(value, BaseException) else value  # a failure's error
    return {"task_id": task_id, "result": shown}


@api.get("/tasks/{task_id}/events")
async def task_events(task_id: str, timeout: float = 300) -> StreamingResponse:
    return StreamingResponse(_events(task_id, timeout), media_type="text/event-stream")


async def _events(task_id: str, timeout: float) -> AsyncIterator[str]:
    """One server-sent event per state record, named by its state."""
    try:
        async for meta in app.AsyncResult(task_id).aiter_states(timeout=timeout):
            data = {"state": meta["status"], "info": _jsonable(meta.get("result"))}
            yield f"event: {meta['status']}\ndata: {json.dumps(data)}\n\n"
    except TimeoutError:
        yield "event: timeout\ndata: {}\n\n"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value
