"""``execute_message`` run directly on built messages: states, results, hooks, signals,
links, retries — everything a worker does with a message, without a worker."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from minicelery import Celery, Task, signals, states
from minicelery.exceptions import MaxRetriesExceededError, Reject, TaskRevokedError
from minicelery.message import TaskMessage, decode_message
from minicelery.signals import Signal
from minicelery.worker.executor import Outcome, execute_message
from tests.unit.conftest import ACCEPT_JSON

UTC = dt.timezone.utc
HOST = "w1@host"


def build(
    app: Celery, task: Task[Any, Any], args: Any = (), kwargs: Any = None, **options: Any
) -> tuple[TaskMessage, str]:
    """The message ``task.apply_async(args, kwargs, **options)`` would send, as a worker
    receives it (through the wire envelope), and its queue."""
    message, queue, _ = app.prepare_message(
        task.name, list(args), dict(kwargs or {}), task, **options
    )
    return decode_message(message.encode()), queue


def run(
    app: Celery, task: Task[Any, Any], args: Any = (), kwargs: Any = None, **options: Any
) -> tuple[Outcome, str]:
    """Execute one message for ``task``; return the outcome and the task id."""
    message, queue = build(app, task, args, kwargs, **options)
    return execute_message(app, message, HOST, queue, ACCEPT_JSON), message.id


def sent(app: Celery, queue: str = "celery") -> list[TaskMessage]:
    """Messages sent to ``queue`` (scheduled ones included), decoded."""
    app.broker.move_due(4e9)
    return [decode_message(d.data) for d in app.broker.reserve("probe", [queue], 100)]


@contextmanager
def receiving(signal: Signal, receiver: Callable[..., Any], sender: Any = None) -> Iterator[None]:
    signal.connect(receiver, sender=sender, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver, sender=sender)


@pytest.fixture
def add(app: Celery) -> Task[Any, Any]:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


@pytest.fixture
def boom(app: Celery) -> Task[Any, Any]:
    @app.task(name="proj.boom")
    def boom(message: str = "boom") -> None:
        raise ValueError(message)

    return boom


# --------------------------------------------------------------------------- outcomes


def test_success_is_stored(app: Celery, add: Task[Any, Any]) -> None:
    outcome, task_id = run(app, add, (2, 3))
    assert outcome.state == states.SUCCESS
    assert outcome.retval == 5
    assert outcome.exc is None
    meta = app.backend.get_meta(task_id)
    assert meta["status"] == states.SUCCESS
    assert meta["result"] == 5
    assert meta["traceback"] is None
    assert meta["date_done"] is not None
    assert app.AsyncResult(task_id).get(timeout=1) == 5


def test_failure_is_stored_with_its_traceback(app: Celery, boom: Task[Any, Any]) -> None:
    outcome, task_id = run(app, boom, ("kaput",))
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, ValueError)
    meta = app.backend.get_meta(task_id)
    assert meta["status"] == states.FAILURE
    assert meta["result"] == {
        "exc_type": "ValueError",
        "exc_message": ["kaput"],
        "exc_module": "builtins",
    }
    assert meta["traceback"].startswith("Traceback (most recent call last)")
    assert "raise ValueError(message)" in meta["traceback"]
    assert "ValueError: kaput" in meta["traceback"]
    with pytest.raises(ValueError, match="kaput"):
        app.AsyncResult(task_id).get(timeout=1)


def test_request_context_seen_by_the_task(app: Celery) -> None:
    @app.task(bind=True, name="proj.ctx")
    def ctx(self: Task[Any, Any], x: int) -> dict[str, Any]:
        r = self.request
        return {
            "id": r.id,
            "args": r.args,
            "kwargs": r.kwargs,
            "retries": r.retries,
            "hostname": r.hostname,
            "queue": r.delivery_info["routing_key"],
            "root_id": r.root_id,
            "called_directly": r.called_directly,
            "is_eager": r.is_eager,
        }

    outcome, task_id = run(app, ctx, (1,), queue="q2")
    assert outcome.retval == {
        "id": task_id,
        "args": [1],
        "kwargs": {},
        "retries": 0,
        "hostname": HOST,
        "queue": "q2",
        "root_id": task_id,
        "called_directly": False,
        "is_eager": False,
    }


def test_expired_message_is_revoked_without_running(app: Celery) -> None:
    ran: list[int] = []

    @app.task(name="proj.late")
    def late() -> None:
        ran.append(1)

    revoked: list[dict[str, Any]] = []

    def on_revoked(
        sender: Any, request: Any, terminated: bool, signum: Any, expired: bool, **kw: Any
    ) -> None:
        revoked.append({"sender": sender, "id": request.id, "expired": expired})

    with receiving(signals.task_revoked, on_revoked):
        outcome, task_id = run(app, late, expires=dt.datetime.now(UTC) - dt.timedelta(seconds=1))
    assert outcome.state == states.REVOKED
    assert ran == []
    assert app.backend.get_meta(task_id)["status"] == states.REVOKED
    assert revoked == [{"sender": late, "id": task_id, "expired": True}]
    with pytest.raises(TaskRevokedError):
        app.AsyncResult(task_id).get(timeout=1)


def test_unexpired_message_runs(app: Celery, add: Task[Any, Any]) -> None:
    outcome, _ = run(app, add, (1, 1), expires=60)
    assert outcome.state == states.SUCCESS


def test_undecodable_body_is_rejected_with_a_dead_reason(app: Celery, add: Task[Any, Any]) -> None:
    good, queue = build(app, add, (1, 2))
    bad = TaskMessage(good.headers, good.properties, "application/json", b"{definitely not json")
    outcome = execute_message(app, bad, HOST, queue, ACCEPT_JSON)
    assert outcome.state == states.REJECTED
    assert outcome.dead_reason is not None and "undecodable" in outcome.dead_reason
    assert app.backend.get_meta(good.id)["status"] == states.FAILURE


UNPICKLED: list[str] = []


def _record(value: str) -> str:
    UNPICKLED.append(value)
    return value


class Booby:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record, ("unpickled",))


def test_disallowed_content_type_is_rejected_and_never_unpickled(
    app: Celery, add: Task[Any, Any]
) -> None:
    UNPICKLED.clear()
    good, queue = build(app, add, (1, 2))
    body = pickle.dumps([[Booby(), 1], {}, {}])
    evil = TaskMessage(good.headers, good.properties, "application/x-python-serialize", body)
    outcome = execute_message(app, evil, HOST, queue, ACCEPT_JSON)
    assert outcome.state == states.REJECTED
    assert outcome.dead_reason
    assert UNPICKLED == []


def test_malformed_body_shape_is_rejected(app: Celery, add: Task[Any, Any]) -> None:
    good, queue = build(app, add, (1, 2))
    bad = TaskMessage(good.headers, good.properties, "application/json", b'{"args": [1, 2]}')
    outcome = execute_message(app, bad, HOST, queue, ACCEPT_JSON)
    assert outcome.state == states.REJECTED
    assert outcome.dead_reason


def test_reject_from_a_task(app: Celery) -> None:
    @app.task(name="proj.rejects")
    def rejects() -> None:
        raise Reject("not now", requeue=True)

    outcome, _ = run(app, rejects)
    assert outcome.state == states.REJECTED
    assert outcome.requeue is True


# --------------------------------------------------------------------------- track_started


def test_track_started_writes_started_before_the_run(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_track_started=True)

    @app.task(bind=True, name="proj.selfcheck")
    def selfcheck(self: Task[Any, Any]) -> list[Any]:
        mine = self.AsyncResult(str(self.request.id))
        return [mine.state, mine.info]

    outcome, task_id = run(app, selfcheck)
    assert outcome.retval == [states.STARTED, {"pid": os.getpid(), "hostname": HOST}]
    assert app.backend.get_meta(task_id)["status"] == states.SUCCESS


def test_track_started_task_option(app: Celery) -> None:
    @app.task(bind=True, track_started=True)
    def tracked(self: Task[Any, Any]) -> str:
        return self.AsyncResult(str(self.request.id)).state

    @app.task(bind=True)
    def untracked(self: Task[Any, Any]) -> str:
        return self.AsyncResult(str(self.request.id)).state

    assert run(app, tracked)[0].retval == states.STARTED
    assert run(app, untracked)[0].retval == states.PENDING


# --------------------------------------------------------------------------- result_extended


def test_result_extended_fields(make_app: Callable[..., Celery]) -> None:
    app = make_app(result_extended=True)

    @app.task(name="proj.ext")
    def ext(x: int, y: int = 0) -> int:
        return x + y

    _, task_id = run(app, ext, (1,), {"y": 2}, queue="q3")
    meta = app.backend.get_meta(task_id)
    assert meta["name"] == "proj.ext"
    assert meta["args"] == [1]
    assert meta["kwargs"] == {"y": 2}
    assert meta["worker"] == HOST
    assert meta["retries"] == 0
    assert meta["queue"] == "q3"
    result = app.AsyncResult(task_id)
    assert result.args == [1]
    assert result.kwargs == {"y": 2}
    assert result.worker == HOST
    assert result.retries == 0
    assert result.queue == "q3"


def test_result_extended_name_on_async_result(make_app: Callable[..., Celery]) -> None:
    app = make_app(result_extended=True)

    @app.task(name="proj.ext")
    def ext() -> int:
        return 1

    _, task_id = run(app, ext)
    assert app.AsyncResult(task_id).name == "proj.ext"  # Celery 5: meta['name']


def test_without_result_extended_no_extra_fields(app: Celery, add: Task[Any, Any]) -> None:
    _, task_id = run(app, add, (1, 2))
    meta = app.backend.get_meta(task_id)
    assert "args" not in meta and "worker" not in meta


def test_ignore_result_stores_nothing(app: Celery) -> None:
    @app.task(ignore_result=True)
    def quiet() -> int:
        return 1

    @app.task(ignore_result=True, store_errors_even_if_ignored=True)
    def quiet_fail() -> None:
        raise ValueError("stored anyway")

    outcome, task_id = run(app, quiet)
    assert outcome.state == states.SUCCESS
    assert app.backend.get_meta(task_id)["status"] == states.PENDING
    outcome, task_id = run(app, quiet_fail)
    assert app.backend.get_meta(task_id)["status"] == states.FAILURE


# --------------------------------------------------------------------------- hooks and signals


class Recorder(Task[Any, Any]):
    events: list[tuple[Any, ...]] = []

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        self.events.append(("before_start", task_id, list(args), dict(kwargs)))

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self.events.append(("on_success", retval, task_id, list(args), dict(kwargs)))

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self.events.append(("on_failure", exc, task_id, list(args), dict(kwargs), str(einfo)))

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self.events.append(
            ("after_return", status, retval, task_id, list(args), dict(kwargs), einfo)
        )


@pytest.fixture
def recorder(app: Celery) -> Iterator[list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    Recorder.events = events

    def prerun(
        sender: Any, task_id: str, task: Any, args: Any, kwargs: Any, signal: Any, **kw: Any
    ) -> None:
        events.append(("task_prerun", sender, task_id, task, list(args), dict(kwargs)))

    def postrun(
        sender: Any,
        task_id: str,
        task: Any,
        args: Any,
        kwargs: Any,
        retval: Any,
        state: str,
        **kw: Any,
    ) -> None:
        events.append(("task_postrun", sender, task_id, list(args), retval, state))

    def success(sender: Any, result: Any, **kw: Any) -> None:
        events.append(("task_success", sender, result))

    def failure(
        sender: Any,
        task_id: str,
        exception: BaseException,
        args: Any,
        kwargs: Any,
        traceback: Any,
        einfo: Any,
        **kw: Any,
    ) -> None:
        events.append(
            ("task_failure", sender, task_id, exception, list(args), "ValueError" in str(einfo))
        )

    with (
        receiving(signals.task_prerun, prerun),
        receiving(signals.task_postrun, postrun),
        receiving(signals.task_success, success),
        receiving(signals.task_failure, failure),
    ):
        yield events


def test_hooks_and_signals_on_success(app: Celery, recorder: list[tuple[Any, ...]]) -> None:
    @app.task(base=Recorder, bind=True, name="proj.hooked")
    def hooked(self: Task[Any, Any], x: int, y: int = 0) -> int:
        recorder.append(("run", x, y))
        return x + y

    _, task_id = run(app, hooked, (2,), {"y": 3})
    assert recorder == [
        ("task_prerun", hooked, task_id, hooked, [2], {"y": 3}),
        ("before_start", task_id, [2], {"y": 3}),
        ("run", 2, 3),
        ("on_success", 5, task_id, [2], {"y": 3}),
        ("task_success", hooked, 5),
        ("after_return", states.SUCCESS, 5, task_id, [2], {"y": 3}, None),
        ("task_postrun", hooked, task_id, [2], 5, states.SUCCESS),
    ]


def test_hooks_and_signals_on_failure(app: Celery, recorder: list[tuple[Any, ...]]) -> None:
    @app.task(base=Recorder, name="proj.hooked_fail")
    def hooked_fail(x: int) -> None:
        raise ValueError(f"bad {x}")

    outcome, task_id = run(app, hooked_fail, (1,))
    exc = outcome.exc
    assert isinstance(exc, ValueError)
    names = [event[0] for event in recorder]
    assert names == [
        "task_prerun",
        "before_start",
        "on_failure",
        "task_failure",
        "after_return",
        "task_postrun",
    ]
    on_failure = recorder[2]
    assert on_failure[1:5] == (exc, task_id, [1], {})
    assert "ValueError: bad 1" in on_failure[5]
    assert recorder[3] == ("task_failure", hooked_fail, task_id, exc, [1], True)
    after_return = recorder[4]
    assert after_return[1:6] == (states.FAILURE, exc, task_id, [1], {})
    assert "ValueError: bad 1" in str(after_return[6])
    assert recorder[5] == ("task_postrun", hooked_fail, task_id, [1], exc, states.FAILURE)


def test_signal_sender_filter_with_the_task(
    app: Celery, add: Task[Any, Any], boom: Task[Any, Any]
) -> None:
    seen: list[str] = []

    def only_add(sender: Any, **kw: Any) -> None:
        seen.append(sender.name)

    with receiving(signals.task_prerun, only_add, sender=add):
        run(app, add, (1, 2))
        run(app, boom)
    assert seen == ["proj.add"]


def test_a_raising_hook_does_not_escape_the_executor(app: Celery) -> None:
    class Fragile(Task[Any, Any]):
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            raise RuntimeError("bug in on_success")

    @app.task(base=Fragile, name="proj.fragile")
    def fragile() -> int:
        return 1

    postrun: list[str] = []

    def on_postrun(sender: Any, task_id: str, **kw: Any) -> None:
        postrun.append(task_id)

    with receiving(signals.task_postrun, on_postrun):
        outcome, task_id = run(app, fragile)  # Celery logs an internal error, never raises
    assert outcome is not None
    assert app.backend.get_meta(task_id)["status"] == states.SUCCESS
    assert postrun == [task_id]


# --------------------------------------------------------------------------- links


def test_link_callback_is_sent_with_the_result(app: Celery, add: Task[Any, Any]) -> None:
    outcome, task_id = run(app, add, (2, 3), link=add.s(10))
    assert outcome.state == states.SUCCESS
    (callback,) = sent(app)
    assert callback.task == "proj.add"
    assert callback.decode_body(ACCEPT_JSON)[0] == [5, 10]
    assert callback.headers["parent_id"] == task_id
    assert callback.headers["root_id"] == task_id
    assert callback.id != task_id


def test_immutable_link_ignores_the_result(app: Celery, add: Task[Any, Any]) -> None:
    run(app, add, (2, 3), link=add.si(1, 1))
    (callback,) = sent(app)
    assert callback.decode_body(ACCEPT_JSON)[0] == [1, 1]


def test_link_not_sent_on_failure_and_errback_not_on_success(
    app: Celery, add: Task[Any, Any], boom: Task[Any, Any]
) -> None:
    run(app, boom, link=add.s(1))
    run(app, add, (1, 2), link_error=add.s(1))
    assert sent(app) == []


def test_old_style_errback_is_sent_with_the_failed_task_id(
    app: Celery, boom: Task[Any, Any]
) -> None:
    @app.task(name="proj.cleanup")
    def cleanup(failed_id: str) -> None:
        return None

    _, task_id = run(app, boom, link_error=cleanup.s())
    (errback,) = sent(app)
    assert errback.task == "proj.cleanup"
    assert errback.decode_body(ACCEPT_JSON)[0] == [task_id]
    assert errback.headers["parent_id"] == task_id


def test_new_style_errback_is_called_with_request_exc_traceback(
    app: Celery, boom: Task[Any, Any]
) -> None:
    calls: list[tuple[Any, ...]] = []

    @app.task(name="proj.on_error")
    def on_error(request: Any, exc: BaseException, traceback: Any, tag: str) -> None:
        calls.append((request.id, exc, traceback, tag))

    outcome, task_id = run(app, boom, ("oops",), link_error=on_error.s("t"))
    assert len(calls) == 1
    request_id, exc, traceback, tag = calls[0]
    assert request_id == task_id
    assert exc is outcome.exc and isinstance(exc, ValueError)
    assert "ValueError: oops" in str(traceback)
    assert tag == "t"
    assert sent(app) == []  # called here, not sent


def test_subtask_sent_from_a_task_gets_parent_and_root_ids(
    app: Celery, add: Task[Any, Any]
) -> None:
    @app.task(name="proj.spawner")
    def spawner() -> str:
        return add.delay(1, 1).id

    outcome, task_id = run(app, spawner, root_id="the-root")
    (child,) = sent(app)
    assert child.id == outcome.retval
    assert child.headers["parent_id"] == task_id
    assert child.headers["root_id"] == "the-root"


def test_result_get_inside_a_task_fails(app: Celery, add: Task[Any, Any]) -> None:
    @app.task(name="proj.blocking")
    def blocking() -> Any:
        return add.delay(1, 1).get(timeout=1)

    outcome, _ = run(app, blocking)
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, RuntimeError)


# --------------------------------------------------------------------------- retry


def test_self_retry_sends_a_scheduled_message_and_records_retry(app: Celery) -> None:
    retried: list[Any] = []

    @app.task(bind=True, name="proj.flaky")
    def flaky(self: Task[Any, Any], x: int) -> None:
        raise self.retry(countdown=30, exc=KeyError("later"))

    def on_retry(sender: Any, request: Any, reason: Any, einfo: Any, **kw: Any) -> None:
        retried.append((sender, request.id, reason))

    before = time.time()
    with receiving(signals.task_retry, on_retry):
        outcome, task_id = run(app, flaky, (7,), queue="jobs")
    assert outcome.state == states.RETRY
    assert app.broker.queue_sizes(["jobs"]) == {"jobs": 0}  # scheduled, not queued
    due = app.broker.next_due()
    assert due is not None and before + 29 <= due <= time.time() + 31
    meta = app.backend.get_meta(task_id)
    assert meta["status"] == states.RETRY
    assert meta["result"]["exc_type"] == "KeyError"
    result = app.AsyncResult(task_id)
    assert result.state == states.RETRY
    assert isinstance(result.info, KeyError)
    (again,) = sent(app, "jobs")
    assert again.id == task_id
    assert again.headers["retries"] == 1
    assert again.decode_body(ACCEPT_JSON)[0] == [7]
    assert dt.datetime.fromisoformat(again.headers["eta"]).timestamp() == pytest.approx(
        due, abs=0.01
    )
    assert len(retried) == 1
    assert retried[0][:2] == (flaky, task_id)
    assert isinstance(retried[0][2], KeyError)


def test_retry_message_can_change_arguments(app: Celery) -> None:
    @app.task(bind=True, name="proj.again")
    def again(self: Task[Any, Any], x: int) -> None:
        raise self.retry(args=(x + 1,), countdown=1)

    message, queue = build(app, again, (1,), retries=1)
    execute_message(app, message, HOST, queue, ACCEPT_JSON)
    (retry,) = sent(app)
    assert retry.decode_body(ACCEPT_JSON)[0] == [2]
    assert retry.headers["retries"] == 2


def test_retry_past_max_retries_fails_with_the_exception(app: Celery) -> None:
    @app.task(bind=True, max_retries=2, name="proj.give_up")
    def give_up(self: Task[Any, Any]) -> None:
        raise self.retry(exc=KeyError("final"), countdown=1)

    outcome, task_id = run(app, give_up, retries=2)
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, KeyError)
    assert app.backend.get_meta(task_id)["status"] == states.FAILURE
    assert sent(app) == []


def test_retry_past_max_retries_without_exc(app: Celery) -> None:
    @app.task(bind=True, max_retries=1, name="proj.give_up2")
    def give_up(self: Task[Any, Any]) -> None:
        raise self.retry(countdown=1)

    outcome, _ = run(app, give_up, retries=1)
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, MaxRetriesExceededError)


def retry_eta(app: Celery) -> tuple[float, TaskMessage]:
    (message,) = sent(app)
    return dt.datetime.fromisoformat(message.headers["eta"]).timestamp(), message


@pytest.mark.parametrize(
    ("backoff", "retries", "expected"),
    [(True, 0, 1), (True, 2, 4), (3, 1, 6), (True, 12, 600)],
)
def test_autoretry_for_with_retry_backoff(
    app: Celery, backoff: Any, retries: int, expected: float
) -> None:
    @app.task(
        name="proj.auto",
        autoretry_for=(ConnectionError,),
        retry_backoff=backoff,
        retry_jitter=False,
        max_retries=None,
    )
    def auto() -> None:
        raise ConnectionError("down")

    before = time.time()
    outcome, task_id = run(app, auto, retries=retries)
    assert outcome.state == states.RETRY
    eta, message = retry_eta(app)
    assert before + expected - 0.5 <= eta <= time.time() + expected + 0.5
    assert message.id == task_id
    assert message.headers["retries"] == retries + 1
    assert app.backend.get_meta(task_id)["status"] == states.RETRY


def test_autoretry_with_jitter_stays_within_the_backoff(app: Celery) -> None:
    @app.task(
        name="proj.jitter", autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=None
    )
    def jitter() -> None:
        raise ConnectionError("down")

    before = time.time()
    run(app, jitter, retries=3)
    eta, _ = retry_eta(app)
    assert before - 0.5 <= eta <= time.time() + 8 + 0.5


def test_autoretry_ignores_other_exceptions_and_gives_up_after_max_retries(app: Celery) -> None:
    @app.task(
        name="proj.picky",
        autoretry_for=(ConnectionError,),
        max_retries=2,
        retry_kwargs={"countdown": 1},
    )
    def picky(kind: str) -> None:
        raise ConnectionError("down") if kind == "conn" else ValueError("other")

    outcome, _ = run(app, picky, ("value",))
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, ValueError)
    outcome, _ = run(app, picky, ("conn",), retries=2)
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, ConnectionError)
    assert sent(app) == []
    outcome, _ = run(app, picky, ("conn",), retries=0)
    assert outcome.state == states.RETRY
    assert len(sent(app)) == 1
