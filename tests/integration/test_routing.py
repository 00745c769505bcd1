"""Routing on real workers: ``task_routes`` (exact names, globs, a router function named by
import path), a task's own ``queue``, ``apply_async(queue=...)``, ``-Q`` and ``-X``; a task
for a queue nobody reads waits there and ``status`` shows it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from minicelery import Celery
from minicelery.worker.controller import expand_hostname
from tests.helpers import RedisServer, WorkerFactory, pointed_at, wait_until
from tests.integration.apps.routing import app as routing_app
from tests.integration.apps.routing import default, exact, glob_one, own_queue, report

APP = "tests.integration.apps.routing"
A, B, D = (expand_hostname(f"{n}@%h") for n in ("wa", "wb", "wd"))


@pytest.fixture
def rapp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(routing_app, redis_server, key_prefix) as pointed:
        yield pointed


def test_routes_deliver_to_the_right_workers(
    rapp: Celery, worker_factory: WorkerFactory, cli: object
) -> None:
    worker_factory(app_module=APP, name="wa@%h", concurrency=1, extra_args=["-Q", "qa,celery"])
    worker_factory(app_module=APP, name="wb@%h", concurrency=1,
                   extra_args=["-Q", "qb,qc,qd", "-X", "qd"])  # fmt: skip
    assert exact.delay().get(timeout=15) == A
    assert default.delay().get(timeout=15) == A
    assert glob_one.delay().get(timeout=15) == B
    assert report.delay().get(timeout=15) == B
    assert exact.apply_async(queue="qb").get(timeout=15) == B  # the call's queue wins

    queues = wait_until(lambda: rapp.control.inspect(timeout=0.5).active_queues(), 10)
    assert sorted(q["name"] for q in queues[B]) == ["qb", "qc"]  # -X qd

    waiting = own_queue.delay()  # qd: nobody reads it
    status = cli("-A", APP, "status", "--json")  # type: ignore[operator]
    assert json.loads(status.stdout)["backlog"] == {"qd": 1}
    assert rapp.AsyncResult(waiting.id).state == "PENDING"
    worker_factory(app_module=APP, name="wd@%h", concurrency=1, extra_args=["-Q", "qd"])
    assert waiting.get(timeout=15) == D
