"""What a Celery user hits on day one, with real workers: a base class's ``__call__`` in
every pool, ``print()`` going to ``--logfile``, and the worker flags Celery users carry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from tests.helpers import RedisServer, WorkerFactory, pointed_at, wait_until
from tests.integration.apps import compat

COMPAT = "tests.integration.apps.compat"


@pytest.fixture
def compat_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(compat.app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_base_class_call_runs_in_every_pool(
    compat_app: Celery, worker_factory: WorkerFactory, pool: str
) -> None:
    worker_factory(COMPAT, concurrency=1, pool=pool)
    result = compat.in_context.delay(4)
    assert result.get(timeout=15) == ["inside", 4, result.id]
    wrapped = compat.in_super_context.delay()
    assert wrapped.get(timeout=15) == ["via-super", wrapped.id, False]


def test_print_in_a_task_goes_to_the_logfile(
    compat_app: Celery, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    logfile = tmp_path / "worker.log"
    worker = worker_factory(
        COMPAT, concurrency=1, pool="prefork", extra_args=["-f", str(logfile)], wait_ready=False
    )
    wait_until(lambda: logfile.exists() and "ready." in logfile.read_text(), timeout=15)
    assert compat.shout.delay("hello-log").get(timeout=15) == "hello-log"
    wait_until(lambda: "printed by the task: hello-log" in logfile.read_text(), timeout=10)
    line = next(
        line for line in logfile.read_text().splitlines() if "printed by the task" in line
    )
    assert "WARNING" in line  # worker_redirect_stdouts_level, as Celery
    assert "printed by the task" not in worker.output()
