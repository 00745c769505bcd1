"""A worker's main process reaches Redis with the package's own client too: at idle, and
after remote control (``ping``, ``stats``, a revoke) and tasks, it has not imported redis-py
(nor asyncio or ssl, which come with it). The main process answers for itself, through an
inspect command the app registers (``apps/lean.py``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from minicelery import Celery
from minicelery.exceptions import TaskRevokedError
from tests.helpers import (
    RedisServer,
    WorkerFactory,
    pointed_at,
    wait_until,
)
from tests.integration.apps.lean import app as lean_app
from tests.integration.apps.lean import loaded

HEAVY = ["redis", "asyncio", "ssl", "fakeredis"]
IDLE = 2.5  # seconds of idle watched: longer than the heartbeat and reserve-beat periods


@pytest.fixture
def lean(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(lean_app, redis_server, key_prefix) as pointed:
        yield pointed


def main_process_loaded(app: Celery, name: str) -> dict[str, bool]:
    replies = app.control.broadcast(
        "loaded_modules", arguments={"names": HEAVY}, destination=[name], reply=True, timeout=10
    )
    assert replies, f"{name} did not answer"
    answer: dict[str, bool] = replies[0][name]
    return answer


@pytest.mark.parametrize(
    "mode", [("--children-consume",), ("--no-children-consume",), ("--children-consume", "-E")]
)
def test_the_main_process_imports_no_redis_client(
    lean: Celery, worker_factory: WorkerFactory, mode: tuple[str, ...]
) -> None:
    name = f"lean-{uuid.uuid4().hex[:6]}@localhost"
    worker_factory("tests.integration.apps.lean", concurrency=2, name=name, extra_args=mode)
    none = dict.fromkeys(HEAVY, False)
    assert main_process_loaded(lean, name) == none  # started and idle
    inspect = lean.control.inspect(destination=[name], timeout=10)
    assert inspect.ping() == {name: {"ok": "pong"}}
    assert inspect.stats()[name]["pool"]["max-concurrency"] == 2  # type: ignore[index]
    assert inspect.registered() and inspect.active_queues() and inspect.active() is not None
    revoked = str(uuid.uuid4())
    lean.control.revoke(revoked)
    assert revoked in inspect.revoked()[name]  # type: ignore[index]
    with pytest.raises(TaskRevokedError):
        loaded.apply_async((HEAVY,), task_id=revoked).get(timeout=20)
    assert loaded.delay(HEAVY).get(timeout=20) == none  # in a child
    assert loaded.apply_async((HEAVY,), countdown=0.3).get(timeout=20) == none
    assert main_process_loaded(lean, name) == none
    deadline = time.monotonic() + IDLE
    while time.monotonic() < deadline:  # idle: heartbeats, reserve beats, revoke news
        assert main_process_loaded(lean, name) == none


def test_remote_control_comes_back_after_a_redis_restart(
    private_redis: RedisServer, key_prefix: str
) -> None:
    """The subscription is made again once Redis is back (and still without redis-py): a
    ping is answered, and a revoke sent after the restart is obeyed."""
    factory = WorkerFactory(private_redis.url, key_prefix)
    name = f"lean-{uuid.uuid4().hex[:6]}@localhost"
    try:
        with pointed_at(lean_app, private_redis, key_prefix) as app:
            worker = factory("tests.integration.apps.lean", concurrency=1, name=name)
            assert app.control.ping(destination=[name], timeout=10) == [{name: {"ok": "pong"}}]
            private_redis.stop()
            worker.wait_for_line("Redis is unreachable", timeout=20)
            private_redis.start()
            wait_until(
                lambda: app.control.ping(destination=[name], timeout=1),
                timeout=30,
                message=lambda: worker.describe(),
            )
            revoked = str(uuid.uuid4())
            app.control.revoke(revoked)
            with pytest.raises(TaskRevokedError):
                loaded.apply_async((HEAVY,), task_id=revoked).get(timeout=20)
            assert main_process_loaded(app, name) == dict.fromkeys(HEAVY, False)
    finally:
        factory.cleanup()
        if factory.workers:
            print(factory.report())
