"""The app the routing tests run workers with: ``task_routes`` with an exact name, a glob, a
router function named by its import path, and a task with its own ``queue``."""

from __future__ import annotations

import os
from typing import Any

from minicelery import Celery

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://routing")
NAME = "tests.integration.apps.routing"


def route_reports(name: str, args: Any, kwargs: Any, options: Any, **kw: Any) -> Any:
    """A router function: the ``report`` task goes to ``qc``; anything else is not its call."""
    return {"queue": "qc"} if name == f"{NAME}.report" else None


app = Celery(
    "routing",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    task_routes=[
        {f"{NAME}.exact": "qa", f"{NAME}.glob_*": {"queue": "qb"}},
        f"{NAME}.route_reports",
    ],
)


@app.task(bind=True)
def exact(self: Any) -> str:
    return str(self.request.hostname)


@app.task(bind=True)
def glob_one(self: Any) -> str:
    return str(self.request.hostname)


@app.task(bind=True)
def report(self: Any) -> str:
    return str(self.request.hostname)


@app.task(bind=True, queue="qd")
def own_queue(self: Any) -> str:
    return str(self.request.hostname)


@app.task(bind=True)
def default(self: Any) -> str:
    return str(self.request.hostname)
