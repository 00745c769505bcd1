"""What a task sees of its own call in ``task.request`` (time limits, properties, custom
headers), what its retry sends again, and the lineage of tasks applied eagerly inside
another: Celery 5.7's behaviour, checked on messages run by ``execute_message``."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery, Task, states
from minicelery.message import TaskMessage
from minicelery.worker.executor import execute_message
from tests.unit.conftest import ACCEPT_JSON
from tests.unit.test_executor import build, sent

HOST = "w1@host"


def run_message(app: Celery, message: TaskMessage, queue: str = "celery") -> Any:
    """Run ``message`` as a worker would; the outcome."""
    return execute_message(app, message, HOST, queue, ACCEPT_JSON)


def returned(app: Celery, task: Task[Any, Any], *args: Any, **options: Any) -> Any:
    """What ``task`` returns when sent with ``options`` and run by a worker."""
    message, queue = build(app, task, args, **options)
    outcome = run_message(app, message, queue)
    assert outcome.state == states.SUCCESS, outcome.exc
    return outcome.retval


@pytest.fixture
def limits(app: Celery) -> Task[Any, Any]:
    @app.task(bind=True, name="proj.limits")
    def limits(self: Task[Any, Any]) -> Any:
        return [self.request.time_limit, self.request.soft_time_limit]

    return limits


@pytest.fixture
def declared(app: Celery) -> Task[Any, Any]:
    @app.task(bind=True, name="proj.declared", time_limit=60, soft_time_limit=45)
    def declared(self: Task[Any, Any]) -> Any:
        return [self.request.time_limit, self.request.soft_time_limit]

    return declared


# --------------------------------------------------------------------------- time limits


def test_request_time_limits_are_none_when_not_configured(
    app: Celery, limits: Task[Any, Any]
) -> None:
    assert returned(app, limits) == [None, None]


def test_request_time_limits_come_from_apply_async(app: Celery, limits: Task[Any, Any]) -> None:
    assert returned(app, limits, time_limit=30, soft_time_limit=20) == [30, 20]


def test_request_time_limits_come_from_the_task_declaration(
    app: Celery, declared: Task[Any, Any]
) -> None:
    message, _ = build(app, declared)
    assert message.headers["timelimit"] == [60, 45]  # the worker runs it under them too
    assert returned(app, declared) == [60, 45]


def test_apply_async_limits_override_the_declared_ones(
    app: Celery, declared: Task[Any, Any]
) -> None:
    assert returned(app, declared, time_limit=10, soft_time_limit=5) == [10, 5]
    # An explicit None clears the declared limit, as in Celery.
    assert returned(app, declared, time_limit=None) == [None, 45]


def test_eager_apply_sees_the_declared_limits(app: Celery, declared: Task[Any, Any]) -> None:
    assert declared.apply().get() == [60, 45]


def test_a_soft_limit_above_the_hard_one_is_refused_at_the_call(app: Celery) -> None:
    @app.task(name="proj.inverted", soft_time_limit=2, time_limit=1)
    def inverted() -> None:
        return None

    with pytest.raises(ValueError, match="soft_time_limit must be less than or equal"):
        inverted.apply_async()
    assert sent(app) == []


# --------------------------------------------------------------------------- properties, headers


def test_request_properties_carry_the_message_properties(app: Celery) -> None:
    @app.task(bind=True, name="proj.props")
    def props(self: Task[Any, Any]) -> Any:
        return dict(self.request.properties)

    properties = returned(app, props, app_id="1234", priority=3)
    assert properties["app_id"] == "1234"
    assert properties["priority"] == 3
    assert properties["correlation_id"]


def test_request_headers_are_only_the_callers_own(app: Celery) -> None:
    @app.task(bind=True, name="proj.headers")
    def headers(self: Task[Any, Any]) -> Any:
        return self.request.headers

    assert returned(app, headers, headers={"x-tenant": "acme"}) == {"x-tenant": "acme"}
    assert returned(app, headers) is None


# --------------------------------------------------------------------------- retries


def retried(app: Celery, task: Task[Any, Any], *args: Any, **options: Any) -> TaskMessage:
    """Run ``task`` once (it retries) and return the retry message it sent."""
    message, queue = build(app, task, args, **options)
    assert run_message(app, message, queue).state == states.RETRY
    (retry,) = sent(app, queue)
    return retry


def test_retry_with_new_args_drops_the_keywords_they_replace(app: Celery) -> None:
    @app.task(bind=True, name="proj.to_args", max_retries=1)
    def to_args(self: Task[Any, Any], foo: int, bar: int, label: str | None = None) -> Any:
        if not self.request.retries:
            raise self.retry(args=(foo + 1, bar + 1), countdown=0)
        return [foo, bar, label]

    retry = retried(app, to_args, kwargs={"foo": 1, "bar": 2, "label": "kept"})
    assert retry.decode_body(ACCEPT_JSON)[:2] == ([2, 3], {"label": "kept"})
    assert run_message(app, retry).retval == [2, 3, "kept"]


def test_retry_with_new_kwargs_replaces_the_positional_arguments_of_that_name(
    app: Celery,
) -> None:
    @app.task(bind=True, name="proj.to_kwargs", max_retries=1)
    def to_kwargs(self: Task[Any, Any], foo: int, bar: int) -> Any:
        if not self.request.retries:
            raise self.retry(kwargs={"foo": foo + 1}, countdown=0)
        return [foo, bar]

    message, queue = build(app, to_kwargs, (1, 2))
    assert run_message(app, message, queue).state == states.RETRY
    (retry,) = sent(app, queue)
    assert retry.decode_body(ACCEPT_JSON)[:2] == ([2, 2], {})
    assert run_message(app, retry).retval == [2, 2]


@pytest.fixture
def once(app: Celery) -> Task[Any, Any]:
    @app.task(bind=True, name="proj.once", max_retries=1)
    def once(self: Task[Any, Any]) -> Any:
        if not self.request.retries:
            raise self.retry(countdown=0)
        return [self.request.delivery_info["priority"], self.request.headers]

    return once


def test_retry_keeps_the_priority_and_custom_headers(app: Celery, once: Task[Any, Any]) -> None:
    retry = retried(app, once, priority=7, headers={"x-test-header": "v"})
    assert retry.properties["priority"] == 7
    assert retry.headers["x-test-header"] == "v"
    assert run_message(app, retry).retval == [7, {"x-test-header": "v"}]


def test_retry_keeps_the_callers_ignore_result(app: Celery) -> None:
    @app.task(bind=True, name="proj.quiet", ignore_result=True)
    def quiet(self: Task[Any, Any]) -> int:
        if not self.request.retries:
            raise self.retry(countdown=0)
        return self.request.retries

    @app.task(bind=True, name="proj.loud", ignore_result=False)
    def loud(self: Task[Any, Any]) -> int:
        if not self.request.retries:
            raise self.retry(countdown=0)
        return self.request.retries

    stored = retried(app, quiet, ignore_result=False)
    assert stored.headers["ignore_result"] is False
    run_message(app, stored)
    assert app.backend.get_meta(stored.id)["status"] == states.SUCCESS

    ignored = retried(app, loud, ignore_result=True)
    assert ignored.headers["ignore_result"] is True
    run_message(app, ignored)
    # Nothing stored, not even the RETRY state of the first attempt.
    assert app.backend.get_meta(ignored.id)["status"] == states.PENDING


def test_a_task_sent_by_name_follows_its_own_ignore_result(app: Celery) -> None:
    message, _, _ = app.prepare_message("proj.elsewhere", [], {}, None)
    assert message.headers["ignore_result"] is None  # for the worker's task to decide


# --------------------------------------------------------------------------- eager lineage


def test_eager_apply_inside_a_task_is_its_child(app: Celery) -> None:
    @app.task(bind=True, name="proj.grandchild")
    def grandchild(self: Task[Any, Any]) -> Any:
        return [self.request.id, self.request.parent_id, self.request.root_id]

    @app.task(bind=True, name="proj.child")
    def child(self: Task[Any, Any]) -> Any:
        return [self.request.id, self.request.parent_id, self.request.root_id,
                grandchild.apply().get()]  # fmt: skip

    @app.task(bind=True, name="proj.parent")
    def parent(self: Task[Any, Any]) -> Any:
        return [self.request.id, self.request.parent_id, self.request.root_id,
                child.apply().get()]  # fmt: skip

    top, top_parent, top_root, (mid, mid_parent, mid_root, low) = parent.apply().get()
    assert (top_parent, top_root) == (None, top)
    assert (mid_parent, mid_root) == (top, top)
    assert low[1:] == [mid, top]


# --------------------------------------------------------------------------- ignored results


def test_a_result_sent_with_ignore_result_is_ignored(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    result = add.apply_async((1, 2), ignore_result=True)
    assert result.ignored is True
    assert result.get() is None  # at once: no result will ever come
    assert add.apply_async((1, 2)).ignored is False


# --------------------------------------------------------------------------- task_received


def test_the_received_message_offers_what_celerys_request_does(app: Celery) -> None:
    """``task_received`` receivers get the message; like Celery's worker request it has the
    arguments and the links, read from the body."""

    @app.task(name="proj.linked")
    def linked(x: int, y: int = 0) -> int:
        return x + y

    message, _ = build(app, linked, (1,), {"y": 2}, link=linked.s(3), link_error=linked.si(0))
    assert (message.args, message.kwargs) == ([1], {"y": 2})
    assert [sig["task"] for sig in message.callbacks] == ["proj.linked"]
    assert message.errbacks[0]["args"] == [0]
    assert (message.chain, message.chord) == (None, None)

    pickled, _ = build(app, linked, (1,), serializer="pickle")
    assert pickled.args is None  # not decoded here: the worker decides whether it accepts it


def test_an_eager_retry_switches_its_arguments_too(app: Celery) -> None:
    @app.task(bind=True, name="proj.eager_switch", max_retries=1)
    def switch(self: Task[Any, Any], foo: int, bar: int) -> Any:
        if not self.request.retries:
            raise self.retry(kwargs={"foo": foo + 1}, countdown=0)
        return [foo, bar, self.request.retries]

    assert switch.apply((1, 2)).get() == [2, 2, 1]


def test_a_task_object_is_named_after_its_function() -> None:
    """pytest names parameters after ``__name__``: Celery's suite relies on task objects
    having the function's (``test_x[errback_new_style]``), as Celery's do."""
    app = Celery("naming", broker="memory://", backend="memory://")

    @app.task
    def errback_new_style() -> None:
        return None

    assert errback_new_style.__name__ == "errback_new_style"
    assert type(errback_new_style).__name__ == "errback_new_style"
