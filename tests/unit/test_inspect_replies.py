"""The replies of ``app.control.inspect()`` and the stamped-header revocation, in Celery's
shapes, from a worker in a thread of this process on the in-process ``memory://`` broker."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import Celery
from minicelery.canvas import StampingVisitor
from minicelery.contrib.testing.app import TestApp, setup_default_app
from minicelery.contrib.testing.worker import TestWorkController, start_worker
from minicelery.exceptions import TaskRevokedError
from minicelery.worker import state as worker_state
from tests.helpers import wait_until

release = threading.Event()


@pytest.fixture(scope="module")
def app() -> Iterator[Celery]:
    test_app = TestApp("inspect-replies", config={"MY_API_KEY": "hunter2"})

    @test_app.task(name="t.hold", shared=False)
    def hold(n: int, label: str = "") -> int:
        release.wait(10)
        return n

    @test_app.task(name="t.limited", rate_limit="10/s")
    def limited() -> None:
        return None

    @test_app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    with setup_default_app(test_app):
        yield test_app


@pytest.fixture(scope="module")
def worker(app: Celery) -> Iterator[TestWorkController]:
    try:
        with start_worker(app, pool="threads", concurrency=2) as running:
            yield running
    finally:
        release.set()


def inspect(app: Celery, worker: TestWorkController) -> Any:
    """Addressed to the one worker: the reply is awaited only until it comes."""
    return app.control.inspect(destination=[worker.hostname], timeout=2.0)


def _one(reply: dict[str, Any] | None, worker: TestWorkController) -> Any:
    assert reply is not None and list(reply) == [worker.hostname]
    return reply[worker.hostname]


def test_active_and_query_task_show_a_task_as_celerys_request_info(
    app: Celery, worker: TestWorkController
) -> None:
    release.clear()
    result = app.tasks["t.hold"].delay(5, label="x")
    ask = inspect(app, worker)
    active = wait_until(lambda: _one(ask.active(), worker), 10)
    assert active == [
        {
            "id": result.id,
            "name": "t.hold",
            "args": [5],
            "kwargs": {"label": "x"},
            "type": "t.hold",
            "hostname": worker.hostname,
            "time_start": active[0]["time_start"],
            "acknowledged": True,
            "delivery_info": {
                "exchange": "",
                "routing_key": "celery",
                "priority": 0,
                "redelivered": False,
            },
            "worker_pid": active[0]["worker_pid"],
        }
    ]
    assert active[0]["time_start"] <= time.time() and isinstance(active[0]["worker_pid"], int)
    safe = _one(ask.active(safe=True), worker)
    assert (safe[0]["args"], safe[0]["kwargs"]) == ("(5,)", "{'label': 'x'}")
    assert _one(ask.query_task(result.id), worker) == {result.id: ["active", active[0]]}
    assert _one(ask.query_task(str(uuid.uuid4())), worker) == {}
    release.set()
    assert result.get(timeout=10) == 5


MINE = {"t.add", "t.hold", "t.limited"}  # this module's tasks (other modules also use t.*)


def test_registered_shows_the_attributes_asked_for(app: Celery, worker: TestWorkController) -> None:
    ask = inspect(app, worker)
    plain = _one(ask.registered(), worker)  # shared tasks of other modules may be there too
    assert [line for line in plain if line.split(" ")[0] in MINE] == [
        "t.add", "t.hold", "t.limited [rate_limit=10/s]"
    ]  # fmt: skip
    assert plain == sorted(plain) and not any(line.startswith("celery.") for line in plain)
    by_name = _one(ask.registered("name"), worker)
    assert [line for line in by_name if line.split(" ")[0] in MINE] == [
        f"{n} [name={n}]" for n in ("t.add", "t.hold", "t.limited")
    ]
    assert all(re.fullmatch(r"\S+ \[name=\S+\]", line) for line in by_name)


def test_active_queues_are_described_as_kombu_queues(
    app: Celery, worker: TestWorkController
) -> None:
    (queue,) = _one(inspect(app, worker).active_queues(), worker)
    assert queue["name"] == queue["routing_key"] == "celery"
    assert queue["exchange"]["name"] == "celery" and queue["exchange"]["type"] == "direct"
    assert queue["durable"] is True and queue["bindings"] == [] and queue["no_ack"] is False


def test_the_clock_moves_on_with_each_command(app: Celery, worker: TestWorkController) -> None:
    ask = inspect(app, worker)
    first = _one(ask.clock(), worker)["clock"]
    second = _one(ask.clock(), worker)["clock"]
    assert 0 < first < second


def test_report_is_the_apps_bug_report(app: Celery, worker: TestWorkController) -> None:
    text = _one(inspect(app, worker).report(), worker)["ok"]
    assert "software -> celery:minicelery-" in text and f"node     -> {worker.hostname}" in text
    assert "hunter2" not in text and "MY_API_KEY: '********'" in text


def test_conf_shows_the_settings_given_with_secrets_hidden(
    app: Celery, worker: TestWorkController
) -> None:
    ask = inspect(app, worker)
    given = _one(ask.conf(), worker)
    assert given["MY_API_KEY"] == "********"
    assert given["worker_hijack_root_logger"] is False and given["enable_utc"] is True
    assert given["deprecated_settings"] == [] and "include" in given
    assert "result_expires" not in given  # left at its default
    assert _one(ask.conf(with_defaults=True), worker)["result_expires"] == 86400


def test_hello_takes_another_workers_revoked_ids_stamped_here(
    app: Celery, worker: TestWorkController
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    ahead = time.monotonic() + 10**6  # another host's monotonic clock
    try:
        reply = inspect(app, worker).hello(
            "other@host", revoked={task_id: [ahead, n, task_id] for n, task_id in enumerate(ids)}
        )
        assert set(ids) <= set(_one(reply, worker)["revoked"])
        stamps = worker_state.revoked.as_dict()
        assert all(stamps[task_id] <= time.monotonic() for task_id in ids)
    finally:
        for task_id in ids:
            worker_state.revoked.discard(task_id)
    assert ids[0] not in worker_state.revoked


class _Monitoring(StampingVisitor):
    def __init__(self, value: Any) -> None:
        self.value = value

    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"monitoring_id": self.value}


def test_tasks_stamped_with_a_revoked_header_are_revoked(
    app: Celery, worker: TestWorkController
) -> None:
    target = uuid.uuid4().hex
    try:
        replies = app.control.revoke_by_stamped_headers(
            {"monitoring_id": [target]}, [worker.hostname], reply=True, timeout=2.0
        )
        assert replies == [
            {worker.hostname: {"ok": f"headers {{'monitoring_id': [{target!r}]}} flagged as "
                                     "revoked, but not terminated"}}
        ]  # fmt: skip
        stamped = app.tasks["t.add"].si(1, 1)
        stamped.stamp(visitor=_Monitoring(target))
        with pytest.raises(TaskRevokedError):
            stamped.apply_async().get(timeout=10)
        other = app.tasks["t.add"].si(2, 2)
        other.stamp(visitor=_Monitoring(uuid.uuid4().hex))
        assert other.apply_async().get(timeout=10) == 4
    finally:
        worker_state.revoked_stamps.clear()
