"""The app and its tasks: registration, calling, sending options, routing, eager mode."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from minicelery import AsyncResult, Celery, Task, shared_task, states
from minicelery.exceptions import NotRegistered
from minicelery.message import TaskMessage, decode_message
from minicelery.result import EagerResult
from tests.unit.conftest import ACCEPT_JSON, unique

UTC = dt.timezone.utc


def reserve_all(app: Celery, queues: list[str] | None = None) -> list[TaskMessage]:
    """Messages now waiting on ``queues`` (default: 'celery'), in delivery order."""
    deliveries = app.broker.reserve("c1", queues or ["celery"], 10)
    return [decode_message(d.data) for d in deliveries]


def reserve_one(app: Celery, queue: str = "celery") -> TaskMessage:
    messages = reserve_all(app, [queue])
    assert len(messages) == 1, messages
    return messages[0]


def queue_of(app: Celery, queues: list[str]) -> str:
    """The one queue among ``queues`` holding exactly one message."""
    sizes = app.broker.queue_sizes(queues)
    full = [q for q, n in sizes.items() if n]
    assert len(full) == 1 and sizes[full[0]] == 1, sizes
    return full[0]


class MyTask(Task[Any, Any]):
    custom_attribute = "from-base"


# --------------------------------------------------------------------------- registration


def test_app_task_registers_under_module_and_function_name(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add.name == f"{__name__}.add"
    assert app.tasks[add.name] is add
    assert isinstance(add, Task)
    assert add.app is app
    assert add(2, 3) == 5  # calling the task runs it here


def test_task_with_name_bind_and_base(app: Celery) -> None:
    @app.task(name="proj.bound", bind=True, base=MyTask)
    def bound(self: MyTask, x: int) -> tuple[Any, ...]:
        return (self, self.request.called_directly, self.custom_attribute, x)

    assert bound.name == "proj.bound"
    assert app.tasks["proj.bound"] is bound
    assert isinstance(bound, MyTask)
    me, direct, attribute, x = bound(7)
    assert me is bound
    assert direct is True
    assert attribute == "from-base"
    assert x == 7


def test_task_options_become_attributes(app: Celery) -> None:
    @app.task(queue="slow", max_retries=7, acks_late=True)
    def configured() -> None:
        return None

    assert configured.queue == "slow"
    assert configured.max_retries == 7
    assert configured.option("acks_late") is True
    assert configured.option("track_started") is False  # from the settings


def test_unknown_task_name_raises_not_registered(app: Celery) -> None:
    # A unique name: tasks are shared with every app of the process, as in Celery, so a name
    # another test module defines would be known here.
    name = unique("no.such.task")
    with pytest.raises(NotRegistered, match=name.replace(".", r"\.")):
        app.tasks[name]
    with pytest.raises(KeyError):
        app.tasks[name]
    assert app.tasks.get(name) is None


def test_app_tasks_lists_registered_tasks(app: Celery) -> None:
    @app.task(name="a.one")
    def one() -> int:
        return 1

    @app.task(name="a.two")
    def two() -> int:
        return 2

    assert {"a.one", "a.two"} <= set(app.tasks)
    assert app.tasks["a.two"]() == 2


def test_shared_task_registers_in_current_and_later_apps(
    make_app: Callable[..., Celery],
) -> None:
    first = make_app()
    name = unique("shared")

    @shared_task(name=name)  # type: ignore[untyped-decorator]
    def shared(x: int) -> int:
        return x * 2

    later = make_app()
    assert name in first.tasks
    assert name in later.tasks
    assert later.tasks[name](21) == 42

    @shared_task
    def bare() -> str:
        return "bare"

    assert f"{__name__}.bare" in later.tasks
    assert bare() == "bare"


def test_shared_task_uses_the_app_current_when_it_is_used(
    make_app: Callable[..., Celery], memory_url: str
) -> None:
    first = make_app()
    name = unique("shared")

    @shared_task(name=name)  # type: ignore[untyped-decorator]
    def shared() -> None:
        return None

    second = make_app(broker=memory_url + "-second", backend=memory_url + "-second")
    assert second is not first
    shared.delay()  # Celery's shared_task is a proxy to current_app.tasks[name]
    assert second.broker.queue_sizes(["celery"]) == {"celery": 1}
    assert first.broker.queue_sizes(["celery"]) == {"celery": 0}


# --------------------------------------------------------------------------- sending


@pytest.fixture
def add(app: Celery) -> Task[Any, Any]:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


def test_delay_sends_one_message(app: Celery, add: Task[Any, Any]) -> None:
    result = add.delay(2, 3)
    assert isinstance(result, AsyncResult)
    assert result.state == states.PENDING
    message = reserve_one(app)
    assert message.id == result.id
    assert message.task == "proj.add"
    assert message.decode_body(ACCEPT_JSON)[:2] == ([2, 3], {})


def test_countdown_schedules_the_message(app: Celery, add: Task[Any, Any]) -> None:
    before = time.time()
    result = add.apply_async((1, 2), countdown=30)
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}  # not before its time
    due = app.broker.next_due()
    assert due is not None and before + 29 <= due <= time.time() + 31
    assert app.broker.move_due(time.time()) == 0
    assert app.broker.move_due(time.time() + 31) == 1
    message = reserve_one(app)
    assert message.id == result.id
    eta = dt.datetime.fromisoformat(message.headers["eta"])
    assert abs(eta.timestamp() - due) < 0.01


def test_eta_in_the_past_is_sent_at_once(app: Celery, add: Task[Any, Any]) -> None:
    add.apply_async((1, 2), eta=dt.datetime.now(UTC) - dt.timedelta(seconds=5))
    assert app.broker.queue_sizes(["celery"]) == {"celery": 1}


def test_eta_datetime(app: Celery, add: Task[Any, Any]) -> None:
    eta = dt.datetime.now(UTC) + dt.timedelta(minutes=10)
    add.apply_async((1, 2), eta=eta)
    due = app.broker.next_due()
    assert due is not None and abs(due - eta.timestamp()) < 0.01
    app.broker.move_due(eta.timestamp())
    assert dt.datetime.fromisoformat(reserve_one(app).headers["eta"]) == eta


def test_expires(app: Celery, add: Task[Any, Any]) -> None:
    before = dt.datetime.now(UTC)
    add.apply_async((1, 2), expires=60)
    expires = dt.datetime.fromisoformat(reserve_one(app).headers["expires"])
    assert before + dt.timedelta(seconds=59) <= expires <= before + dt.timedelta(seconds=62)


def test_priority_is_in_the_message_and_served_first(app: Celery, add: Task[Any, Any]) -> None:
    low = add.apply_async((1, 1), priority=1)
    high = add.apply_async((2, 2), priority=8)
    messages = reserve_all(app)
    assert [m.id for m in messages] == [high.id, low.id]
    assert [m.properties["priority"] for m in messages] == [8, 1]


def test_queue_option(app: Celery, add: Task[Any, Any]) -> None:
    add.apply_async((1, 2), queue="other")
    assert app.broker.queue_sizes(["celery", "other"]) == {"celery": 0, "other": 1}
    message = reserve_one(app, "other")
    assert message.properties["delivery_info"]["routing_key"] == "other"


def test_task_queue_attribute_and_default_queue_setting(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_default_queue="jobs")

    @app.task(queue="slow")
    def slow() -> None:
        return None

    @app.task
    def normal() -> None:
        return None

    slow.delay()
    normal.delay()
    assert app.broker.queue_sizes(["slow", "jobs", "celery"]) == {
        "slow": 1,
        "jobs": 1,
        "celery": 0,
    }


def test_custom_headers_and_task_id(app: Celery, add: Task[Any, Any]) -> None:
    result = add.apply_async((1, 2), headers={"x-tenant": "acme"}, task_id="my-id")
    assert result.id == "my-id"
    message = reserve_one(app)
    assert message.headers["x-tenant"] == "acme"
    assert message.id == "my-id"


def test_wrong_argument_count_raises_at_delay_and_sends_nothing(
    app: Celery, add: Task[Any, Any]
) -> None:
    with pytest.raises(TypeError, match=r"proj\.add\(\)"):
        add.delay(1)
    with pytest.raises(TypeError):
        add.delay(1, 2, 3)
    with pytest.raises(TypeError):
        add.delay(1, 2, z=3)
    with pytest.raises(TypeError):
        add.apply_async((1,), countdown=10)
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}
    assert app.broker.next_due() is None


def test_bound_task_arguments_are_checked_without_self(app: Celery) -> None:
    @app.task(bind=True)
    def bound(self: Task[Any, Any], x: int) -> int:
        return x

    bound.delay(1)
    with pytest.raises(TypeError):
        bound.delay()  # type: ignore[call-arg]
    assert app.broker.queue_sizes(["celery"]) == {"celery": 1}


def test_typing_false_skips_the_argument_check(app: Celery) -> None:
    @app.task(typing=False)
    def loose(x: int) -> int:
        return x

    loose.apply_async((1, 2, 3))
    assert app.broker.queue_sizes(["celery"]) == {"celery": 1}


def test_send_task_by_name(app: Celery) -> None:
    result = app.send_task("remote.only", args=[1, 2], kwargs={"k": "v"}, queue="remote")
    assert isinstance(result, AsyncResult)
    message = reserve_one(app, "remote")
    assert message.task == "remote.only"
    assert message.id == result.id
    assert message.decode_body(ACCEPT_JSON)[:2] == ([1, 2], {"k": "v"})


def test_send_task_uses_the_default_queue(app: Celery) -> None:
    app.send_task("remote.only")
    assert reserve_one(app).task == "remote.only"


# --------------------------------------------------------------------------- routing

ROUTE_QUEUES = ["celery", "math", "globbed", "regex", "fn", "listed", "explicit", "other"]


def router(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    if name == "proj.add":
        return {"queue": "fn"}
    return None


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ({"proj.add": {"queue": "math"}}, "math"),
        ({"proj.add": "math"}, "math"),
        ({"proj.other": {"queue": "other"}}, "celery"),
        ({"proj.*": {"queue": "globbed"}}, "globbed"),
        ({"proj.ad?": {"queue": "globbed"}}, "globbed"),
        ({re.compile(r"^proj\.a.d$"): {"queue": "regex"}}, "regex"),
        (router, "fn"),
        ([{"proj.other": "other"}, router], "fn"),
        ([{"proj.other": "other"}, {"proj.*": "listed"}, router], "listed"),
        ((router, {"proj.add": "math"}), "fn"),
        ({"proj.add": {"queue": "math"}, "proj.*": {"queue": "globbed"}}, "math"),
    ],
)
def test_task_routes_decide_the_queue(
    app: Celery, add: Task[Any, Any], routes: Any, expected: str
) -> None:
    app.conf.task_routes = routes
    add.delay(1, 2)
    assert queue_of(app, ROUTE_QUEUES) == expected
    assert reserve_one(app, expected).properties["delivery_info"]["routing_key"] == expected


def test_task_routes_apply_to_send_task(app: Celery) -> None:
    app.conf.task_routes = {"remote.*": {"queue": "other"}}
    app.send_task("remote.thing")
    assert queue_of(app, ROUTE_QUEUES) == "other"


def test_explicit_queue_beats_the_route(app: Celery, add: Task[Any, Any]) -> None:
    app.conf.task_routes = {"proj.add": "math"}
    add.apply_async((1, 2), queue="explicit")
    assert queue_of(app, ROUTE_QUEUES) == "explicit"


def test_route_can_set_the_priority(app: Celery, add: Task[Any, Any]) -> None:
    app.conf.task_routes = {"proj.add": {"queue": "math", "priority": 6}}
    add.delay(1, 2)
    assert reserve_one(app, "math").properties["priority"] == 6


def test_router_function_receives_celerys_arguments(app: Celery, add: Task[Any, Any]) -> None:
    seen: list[tuple[Any, ...]] = []

    def recording(name: str, args: Any, kwargs: Any, options: Any, task: Any = None) -> Any:
        seen.append((name, list(args), dict(kwargs), task))
        return {"queue": "fn"}

    app.conf.task_routes = [recording]
    add.apply_async((1,), {"y": 2})
    assert seen == [("proj.add", [1], {"y": 2}, add)]
    assert queue_of(app, ROUTE_QUEUES) == "fn"


# --------------------------------------------------------------------------- eager


def test_apply_returns_an_eager_result(app: Celery, add: Task[Any, Any]) -> None:
    result = add.apply((2, 3))
    assert isinstance(result, EagerResult)
    assert result.get() == 5
    assert result.result == 5
    assert result.state == states.SUCCESS
    assert result.successful() and result.ready()
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}


def test_apply_of_a_failing_task(app: Celery) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("boom")

    result = boom.apply()
    assert result.state == states.FAILURE
    assert result.failed()
    assert isinstance(result.result, ValueError)
    assert "ValueError: boom" in (result.traceback or "")
    with pytest.raises(ValueError, match="boom"):
        result.get()
    assert isinstance(result.get(propagate=False), ValueError)


def test_apply_with_throw_propagates(app: Celery) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        boom.apply(throw=True)  # Celery: throw=app.either('task_eager_propagates', throw)


def test_apply_sets_the_eager_request(app: Celery) -> None:
    @app.task(bind=True)
    def who(self: Task[Any, Any]) -> tuple[Any, ...]:
        return (self.request.id, self.request.is_eager, self.request.called_directly)

    result = who.apply(task_id="eager-id")
    assert result.get() == ("eager-id", True, False)
    assert result.id == "eager-id"


def test_apply_of_a_task_that_retries_returns_the_final_result(app: Celery) -> None:
    @app.task(bind=True, max_retries=3)
    def flaky(self: Task[Any, Any]) -> str:
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return f"done after {self.request.retries}"

    result = flaky.apply()
    assert result.state == states.SUCCESS
    assert result.get() == "done after 2"


def test_task_always_eager(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_always_eager=True)

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    result = mul.delay(6, 7)
    assert isinstance(result, EagerResult)
    assert result.get() == 42
    assert mul.apply_async((2, 3)).get() == 6
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}


def test_task_always_eager_without_propagation_returns_the_failure(
    make_app: Callable[..., Celery],
) -> None:
    app = make_app(task_always_eager=True)

    @app.task
    def boom() -> None:
        raise KeyError("k")

    result = boom.delay()
    assert result.state == states.FAILURE
    assert isinstance(result.result, KeyError)


def test_task_eager_propagates(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_always_eager=True, task_eager_propagates=True)

    @app.task
    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        boom.delay()


def test_async_def_tasks_run(make_app: Callable[..., Celery]) -> None:
    app = make_app()

    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert cast(Any, double)(4) == 8  # the coroutine is run to completion
    assert double.apply((5,)).get() == 10
    app.conf.task_always_eager = True
    assert double.delay(6).get() == 12


# --------------------------------------------------------------------------- result handles


def test_task_async_result(app: Celery, add: Task[Any, Any]) -> None:
    result = add.AsyncResult("some-id")
    assert isinstance(result, AsyncResult)
    assert result.id == "some-id"
    assert result.app is app
    assert result.state == states.PENDING


def test_app_async_result_sees_stored_results(app: Celery) -> None:
    result = app.AsyncResult("stored-id")
    assert result.id == "stored-id" and result.app is app
    assert result.state == states.PENDING
    app.backend.store(
        "stored-id",
        {"status": states.SUCCESS, "result": 9, "traceback": None, "children": []},
    )
    assert result.get(timeout=1) == 9
    assert result.state == states.SUCCESS
    assert app.AsyncResult("stored-id") == result
    assert result == "stored-id"


def test_delay_result_sees_the_stored_value(app: Celery, add: Task[Any, Any]) -> None:
    result = add.delay(1, 2)
    app.backend.store(result.id, {"status": states.SUCCESS, "result": 3})
    assert result.get(timeout=1) == 3
    assert add.AsyncResult(result.id).result == 3


def test_the_argument_check_accepts_exactly_what_the_function_does() -> None:
    import inspect

    from minicelery.task import argument_checker

    def fun(a: int, b: int, /, c: int, d: int = 1, *rest: int, e: int, f: int = 2) -> None: ...

    check = argument_checker(fun)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1, 2, 3), {"e": 5}),
        ((1, 2), {"c": 3, "e": 5, "f": 6}),
        ((1, 2, 3, 4, 5, 6), {"e": 7}),
        ((1, 2, 3), {}),  # e missing
        ((1,), {"b": 2, "c": 3, "e": 5}),  # b is positional-only
        ((1, 2, 3), {"e": 5, "g": 6}),  # no **kwargs
        ((), {}),
    ]
    for args, kwargs in calls:
        try:
            inspect.signature(fun).bind(*args, **kwargs)
            fits = True
        except TypeError:
            fits = False
        try:
            check(*args, **kwargs)
            accepted = True
        except TypeError:
            accepted = False
        assert accepted == fits, (args, kwargs)
