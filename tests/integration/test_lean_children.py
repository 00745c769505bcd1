"""A worker's children reach Redis with the package's own client: they never import
redis-py (nor asyncio, which came with it), and neither does a client's ``delay()``/``get()``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from minicelery import Celery
from tests.helpers import REPO_ROOT, RedisServer, WorkerFactory, pointed_at
from tests.integration.apps.lean import app as lean_app
from tests.integration.apps.lean import loaded, pid

HEAVY = ["redis", "asyncio", "ssl", "fakeredis"]


@pytest.fixture
def lean(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(lean_app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.mark.parametrize(
    "mode", [("--children-consume",), ("--no-children-consume",), ("--children-consume", "-E")]
)
def test_children_import_no_redis_client(
    lean: Celery, worker_factory: WorkerFactory, mode: tuple[str, ...]
) -> None:
    worker = worker_factory("tests.integration.apps.lean", concurrency=2, extra_args=mode)
    children = set(worker.children())
    results = [loaded.delay(HEAVY) for _ in range(6)]
    for result in results:
        assert result.get(timeout=20) == dict.fromkeys(HEAVY, False)
    ran_in = {pid.delay().get(timeout=20) for _ in range(6)}
    assert ran_in <= children  # the tasks ran in the children looked at, not elsewhere


def test_delay_and_get_need_no_redis_client(
    redis_server: RedisServer, key_prefix: str, worker_factory: WorkerFactory
) -> None:
    worker_factory("tests.integration.apps.lean", concurrency=1)
    code = (
        "import sys\n"
        "from tests.integration.apps.lean import loaded\n"
        "print(loaded.delay(['redis']).get(timeout=20), 'redis' in sys.modules)\n"
    )
    env = worker_factory.env()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["{'redis':", "False}", "False"], done.stderr
