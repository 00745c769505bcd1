"""How a rejected task ends (Celery 5.7: FAILURE when not requeued, ``redelivered`` when
requeued), and Celery's result backend methods (``store_result``, ``get_state``,
``mark_as_*``) and ``result_failure_expires`` on our backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from minicelery import Celery, Task, signals, states
from minicelery.broker import OutgoingMessage
from minicelery.exceptions import Reject, TaskRevokedError
from minicelery.message import decode_message
from minicelery.redislayer.memory import memory_client
from minicelery.worker.controller import WorkController, WorkerOptions
from minicelery.worker.executor import execute_message
from tests.unit.conftest import ACCEPT_JSON
from tests.unit.test_executor import build, receiving


def test_a_reject_without_requeue_stores_failure_and_fails_its_workflow(app: Celery) -> None:
    hooks: list[str] = []

    class Hooked(Task[Any, Any]):
        def on_failure(self, *args: Any) -> None:
            hooks.append("on_failure")

    @app.task(name="proj.refuse", base=Hooked)
    def refuse() -> None:
        raise Reject("rejected", requeue=False)

    @app.task(name="proj.errback")
    def errback(task_id: str) -> None:
        return None

    failures: list[Any] = []
    message, queue = build(app, refuse, link_error=errback.s())
    with receiving(signals.task_failure, lambda **kw: failures.append(kw["exception"])):
        outcome = execute_message(app, message, "w@h", queue, ACCEPT_JSON)

    assert outcome.state == states.REJECTED and outcome.requeue is False
    meta = app.backend.get_meta(message.id)
    assert meta["status"] == states.FAILURE
    assert meta["result"]["exc_type"] == "Reject"
    assert isinstance(app.backend.get_result(message.id), Reject)
    assert [type(exc) for exc in failures] == [Reject]
    assert hooks == []  # it refused its message; it did not fail
    errbacks = [decode_message(d.data) for d in app.broker.reserve("probe", ["celery"], 10)]
    assert [m.task for m in errbacks] == ["proj.errback"]


def test_a_requeued_reject_stores_nothing(app: Celery) -> None:
    @app.task(name="proj.later")
    def later() -> None:
        raise Reject("not yet", requeue=True)

    message, queue = build(app, later)
    outcome = execute_message(app, message, "w@h", queue, ACCEPT_JSON)
    assert (outcome.state, outcome.requeue) == (states.REJECTED, True)
    assert app.backend.get_state(message.id) == states.PENDING


def test_redeliver_puts_the_marked_message_back_at_the_front(app: Celery) -> None:
    @app.task(name="proj.noop")
    def noop() -> None:
        return None

    message, queue = build(app, noop)
    broker = app.broker
    broker.publish([OutgoingMessage(queue, message.encode()), OutgoingMessage(queue, b"next")])
    (delivery,) = broker.reserve("c1", [queue], 1)
    assert broker.redeliver("c1", delivery.tag, message.redelivered()) == 1
    assert broker.held("c1") == []
    again = broker.reserve("c2", [queue], 2)
    assert again[1].data == b"next"
    back = decode_message(again[0].data)
    assert back.id == message.id and back.properties["redelivered"] is True
    assert "redelivered" not in message.properties
    assert broker.redeliver("c1", delivery.tag, b"gone") == 0  # no longer held


def test_celery_backend_methods(app: Celery) -> None:
    backend = app.backend
    assert backend.get_state("nothing") == states.PENDING
    assert backend.store_result("t1", {"current": 3}, "PROGRESS") == {"current": 3}
    assert backend.get_task_meta("t1")["result"] == {"current": 3}
    assert backend.get_status("t1") == "PROGRESS"
    backend.mark_as_done("t1", 42)
    assert (backend.get_state("t1"), backend.get_result("t1")) == (states.SUCCESS, 42)
    backend.mark_as_revoked("t1", reason="revoked")
    assert backend.get_state("t1") == states.SUCCESS  # a stored success is kept
    backend.mark_as_revoked("t2", reason="revoked")
    assert isinstance(backend.get_result("t2"), TaskRevokedError)
    backend.mark_as_failure("t3", ValueError("boom"), traceback="tb")
    assert backend.get_traceback("t3") == "tb"
    assert app.AsyncResult("t3").failed()


def test_revoke_marks_what_has_not_started(app: Celery) -> None:
    """The revoke command writes REVOKED for a task that has not started anywhere (and no
    result yet), before its reply; a task running here or started elsewhere is left."""
    from minicelery.worker.commands import run_command

    controller = WorkController(app, WorkerOptions(pool="threads", concurrency=1))
    app.backend.store_result("elsewhere", {"hostname": "other@host"}, states.STARTED)
    app.backend.store_result("retrying", None, states.RETRY)
    app.backend.store_result("done", 1, states.SUCCESS)

    reply = run_command(controller, "revoke", {"task_id": ["elsewhere", "retrying", "done", "new"]})

    assert "flagged as revoked" in reply["ok"]
    assert app.backend.get_state("elsewhere") == states.STARTED
    assert app.backend.get_state("done") == states.SUCCESS
    assert app.backend.get_state("retrying") == states.REVOKED
    assert app.backend.get_state("new") == states.REVOKED


def test_result_failure_expires_keeps_failures_for_their_own_time(
    make_app: Callable[..., Celery],
) -> None:
    app = make_app(result_expires=60, result_failure_expires=dt.timedelta(minutes=10))
    backend = app.backend
    backend.store_result("ok", 42, states.SUCCESS)
    backend.store_result("bad", KeyError("x"), states.FAILURE)
    backend.store_result("later", None, states.RETRY)
    assert 0 < backend.client.ttl(backend.get_key_for_task("ok")) <= 60
    assert 60 < backend.client.ttl(backend.get_key_for_task("bad")) <= 600
    assert 0 < backend.client.ttl(backend.get_key_for_task("later")) <= 60


def test_failures_expire_as_other_results_unless_told(make_app: Callable[..., Celery]) -> None:
    backend = make_app(result_expires=60).backend
    backend.store_result("bad", KeyError("x"), states.FAILURE)
    assert 0 < backend.client.ttl(backend.get_key_for_task("bad")) <= 60
    never = make_app(result_expires=60, result_failure_expires=0).backend
    never.store_result("bad2", KeyError("x"), states.FAILURE)
    assert never.client.ttl(never.get_key_for_task("bad2")) == -1


def test_a_backend_on_a_client_that_decodes_responses(memory_url: str) -> None:
    """``?decode_responses=true`` on a result backend URL makes the client return text;
    results still read back (json), uncompressed as always."""
    import fakeredis

    from minicelery.backend.redis import RedisBackend
    from minicelery.redislayer import memory

    memory_client(memory_url)  # the test's server
    server = memory._servers[memory_url.split("://", 1)[1]]
    backend = RedisBackend(fakeredis.FakeRedis(server=server, decode_responses=True), "t")
    result = {"answer": 42, "text": "hello world"}
    backend.store_result("t1", result, states.SUCCESS)
    assert isinstance(backend.client.get(backend.get_key_for_task("t1")), str)
    assert backend.get_meta("t1")["result"] == result
    assert backend.wait_for("t1", timeout=1)["result"] == result
    assert backend.get_many(["t1"])[0]["result"] == result
    assert backend.compression is None
