"""An app that imports nothing but minicelery: what a worker's processes load when the tasks
themselves need no Redis client (the basic app's tasks bring redis-py for their records).
``loaded_modules``, an inspect command of the app's own, asks the worker's main process."""

from __future__ import annotations

import os
import sys
from typing import Any

from minicelery import Celery
from minicelery.worker.control import inspect_command

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://lean")

app = Celery(
    "lean",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
)


@app.task
def loaded(names: list[str]) -> dict[str, bool]:
    """Which of ``names`` the process running the task has imported."""
    return {name: name in sys.modules for name in names}


@app.task
def pid() -> int:
    return os.getpid()


@inspect_command(args=[("names", list)])
def loaded_modules(state: Any, names: list[str]) -> dict[str, bool]:
    """Which of ``names`` the worker's main process (where remote control runs) imported."""
    return {name: name in sys.modules for name in names}
