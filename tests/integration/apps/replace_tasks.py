"""The app of the ``Task.replace()`` / ``add_to_chord()`` integration tests: tasks that
replace themselves (with a task, a chain, a group) or add to their chord, as in Celery's
integration suite. ``echo`` appends to a Redis list named by the test."""

from __future__ import annotations

import os
from typing import Any

from minicelery import Celery, chain, group
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://replace")

app = Celery(
    "replace",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
)


@app.task
def add(x: Any, y: Any) -> Any:
    return x + y


@app.task
def identity(value: Any) -> Any:
    return value


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def fail(*args: Any) -> None:
    raise ValueError("expected")


@app.task
def echo(message: Any, key: str) -> None:
    redis_client(REDIS_URL).rpush(key, str(message))


@app.task(bind=True)
def replace_with_chain(self: Any, value: Any, key: str) -> Any:
    inner = chain(identity.s(value), identity.s())
    inner.link(echo.s(key=key))
    return self.replace(inner)


@app.task(bind=True)
def replace_with_failing_chain(self: Any, value: Any, key: str) -> Any:
    inner = chain(identity.s(value), fail.s())
    inner.link_error(echo.si("inner errback", key=key))
    return self.replace(inner)


@app.task(bind=True)
def add_to_all(self: Any, nums: list[int], val: int) -> Any:
    raise self.replace(group(*[add.s(num, val) for num in nums]))


@app.task(bind=True)
def add_to_all_to_chord(self: Any, nums: list[int], val: int) -> int:
    for num in nums:
        self.add_to_chord(add.s(num, val))
    return 0


@app.task(bind=True)
def nesting(self: Any, replacements: int, seen: list[int] | None = None) -> Any:
    seen = [*(seen or []), self.request.replaced_task_nesting]
    if replacements:
        return self.replace(nesting.s(replacements - 1, seen))
    return seen
