"""The embedded test worker against a real redis-server: a prefork worker started from a
thread, user-registered remote-control commands, and the ``Manager`` helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import Celery
from minicelery.contrib.testing.app import TestApp, setup_default_app
from minicelery.contrib.testing.manager import Manager, Sentinel
from minicelery.contrib.testing.worker import TestWorkController, start_worker
from minicelery.exceptions import TimeLimitExceeded
from minicelery.utils.nodenames import anon_nodename
from minicelery.worker.control import (
    ControlState,
    add_consumer,
    cancel_consumer,
    control_command,
    inspect_command,
)
from tests.helpers import RedisServer, children_consume, wait_until


@control_command(args=[("queue", str)], visible=False)
def contrib_add_then_cancel(state: ControlState, queue: str, **kwargs: Any) -> dict[str, Any]:
    added = add_consumer(state, queue)
    during = list(state.consumer.queues)
    cancel_consumer(state, queue)
    return {"added": added, "during": during, "after": list(state.consumer.queues)}


@inspect_command(name="contrib_whoami")
def whoami(state: ControlState, **kwargs: Any) -> dict[str, str]:
    return {"hostname": state.hostname, "app": state.app.main or ""}


@control_command()
def contrib_broken(state: ControlState, **kwargs: Any) -> None:
    raise RuntimeError("broken on purpose")


@pytest.fixture
def app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    test_app = TestApp(
        "contrib-it",
        config={"broker_url": redis_server.url, "result_backend": redis_server.url,
                "key_prefix": key_prefix, "worker_children_consume": children_consume()},
    )  # fmt: skip
    with setup_default_app(test_app):
        yield test_app


def test_prefork_worker_runs_tasks_in_child_processes(app: Celery) -> None:
    @app.task
    def child_pid() -> int:
        return os.getpid()

    @app.task(time_limit=0.5)
    def too_slow() -> None:
        time.sleep(30)

    with start_worker(app, pool="prefork", concurrency=2, shutdown_timeout=20) as worker:
        assert isinstance(worker, TestWorkController)
        pids = {child_pid.delay().get(timeout=10) for _ in range(4)}
        assert os.getpid() not in pids
        # A hard time limit needs a process to kill: the prefork pool has one.
        with pytest.raises(TimeLimitExceeded):
            too_slow.delay().get(timeout=10)
        assert child_pid.delay().get(timeout=10) != os.getpid()


def test_custom_commands_are_answered_by_the_embedded_worker(app: Celery) -> None:
    with start_worker(app, pool="threads", concurrency=1) as worker:
        assert worker.hostname == anon_nodename()
        control = app.control
        replies = control.broadcast("contrib_whoami", reply=True, timeout=5, limit=1)
        assert replies == [{worker.hostname: {"hostname": worker.hostname, "app": "contrib-it"}}]
        [reply] = control.broadcast("contrib_add_then_cancel", arguments={"queue": "extra"},
                                    reply=True, timeout=5, limit=1)  # fmt: skip
        answer = reply[worker.hostname]
        assert answer["during"] == ["celery", "extra"] and answer["after"] == ["celery"]
        [broken] = control.broadcast("contrib_broken", reply=True, timeout=5, limit=1)
        assert "broken on purpose" in broken[worker.hostname]["error"]
        assert control.inspect(timeout=5).ping() == {worker.hostname: {"ok": "pong"}}


def test_manager_joins_and_waits(app: Celery, capsys: pytest.CaptureFixture[str]) -> None:
    @app.task
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    with start_worker(app, pool="threads", concurrency=2):
        manager = Manager(app)
        results = [nap.delay(0.2), nap.delay(0.01)]
        manager.assert_result_tasks_in_progress_or_completed(results)
        assert manager.join(app.GroupResult("g", results), timeout=10) == [0.2, 0.01]
        assert manager.missing_results(results) == []

        slow = nap.delay(1.0)
        assert manager.join(slow, timeout=0.2, max_retries=20) == [1.0]  # a set, as in Celery
        assert "Still waiting for 1/1" in capsys.readouterr().out

        calls: list[int] = []

        def not_yet() -> None:
            calls.append(1)
            if len(calls) < 3:
                raise Sentinel()

        manager.wait_for(not_yet, (Sentinel,), interval_start=0.01, interval_step=0.0)
        assert len(calls) == 3
        manager.ensure_not_for_a_while(
            lambda: (_ for _ in ()).throw(Sentinel()), (Sentinel,), max_retries=2
        )
        manager.wait_until_idle()


def test_a_worker_that_cannot_stop_in_time_is_reported(app: Celery) -> None:
    # Tracked as started: the block ends while the task still has about 1.5 s to run, well
    # past the shutdown timeout (not when it has succeeded already).
    @app.task(track_started=True)
    def long_nap() -> None:
        time.sleep(1.5)

    with (
        pytest.raises(RuntimeError, match="shutdown_timeout"),
        start_worker(app, pool="threads", shutdown_timeout=0.5),
    ):
        result = long_nap.delay()
        Manager(app).assert_result_tasks_in_progress_or_completed([result])
    assert result.get(timeout=10) is None  # the warm shutdown still finished it


def test_successful_requests_lists_a_success_once_its_result_is_stored(app: Celery) -> None:
    """``worker.state.successful_requests``, as Celery's suite reads it: a task's id appears
    once it succeeded and its result (if kept) can be read; failures never appear."""
    from minicelery.worker.state import successful_requests

    @app.task
    def kept() -> int:
        return 3

    @app.task(ignore_result=True)
    def ignored() -> int:
        return 4

    @app.task
    def failing() -> None:
        raise ValueError("no")

    with start_worker(app, pool="prefork", concurrency=1, perform_ping_check=False):
        bad = failing.delay()
        with pytest.raises(ValueError):
            bad.get(timeout=10)
        for task, status, value in ((kept, "SUCCESS", 3), (ignored, "PENDING", None)):
            result = app.send_task(task.name)
            wait_until(lambda: result.id in successful_requests, timeout=10)  # noqa: B023
            meta = app.backend.get_task_meta(result.id)  # type: ignore[attr-defined]
            assert (meta["status"], meta["result"]) == (status, value)
    assert bad.id not in successful_requests


def test_task_received_reaches_receivers_connected_after_the_worker_started(app: Celery) -> None:
    """Celery sends ``task_received`` in the worker's main process, before the task runs:
    a receiver the test process connects once the children exist hears of each task by the
    time its result is ready, once, and one disconnected (or collected) hears nothing."""
    from minicelery.signals import task_received

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with start_worker(app, pool="prefork", concurrency=1, perform_ping_check=False):
        assert add.delay(1, 1).get(timeout=10) == 2  # the children are up and consuming
        heard: list[tuple[str, int, Any, int]] = []

        def on_received(request: Any, sender: Any = None, **kwargs: Any) -> None:
            heard.append((request.id, os.getpid(), request.args, request.replaced_task_nesting))

        task_received.connect(on_received)
        try:
            first = add.delay(2, 3)
            assert first.get(timeout=10) == 5
            assert heard == [(first.id, os.getpid(), [2, 3], 0)]
        finally:
            task_received.disconnect(on_received)
        assert add.delay(4, 5).get(timeout=10) == 9
        assert [entry[0] for entry in heard] == [first.id]
