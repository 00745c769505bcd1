"""``delay()`` without options takes a shorter way to the broker: it must send exactly the
message the general path (``apply_async`` with options) sends, and step aside whenever the
call needs more (routes, publish signals, a parent task, expiry, sent events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from minicelery import Celery, signals
from minicelery.app.plain import envelope
from minicelery.exceptions import OperationalError, SerializationError
from minicelery.message import MessageOptions, TaskMessage, build_message, decode_message

# Headers that differ between two sends of the same call.
PER_SEND = ("id", "root_id")


def queued(app: Celery, queue: str) -> list[TaskMessage]:
    return [decode_message(d.data) for d in app.broker.reserve("test", [queue], 100)]


def comparable(message: TaskMessage) -> tuple[Any, ...]:
    headers = {k: v for k, v in message.headers.items() if k not in PER_SEND}
    properties = {k: v for k, v in message.properties.items() if k != "correlation_id"}
    return headers, properties, message.content_type, message.body


def no_general_path(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("delay() without options took the general path")

    monkeypatch.setattr(app, "prepare_message", refuse)


TASK_OPTIONS: list[dict[str, Any]] = [
    {},
    {"queue": "q2", "priority": 5, "serializer": "msgpack", "ignore_result": True},
    {"time_limit": 10, "soft_time_limit": 5, "ignore_result": False, "priority": 0},
]
APP_SETTINGS: list[dict[str, Any]] = [
    {},
    {"task_default_queue": "other", "task_default_priority": 3, "task_serializer": "msgpack",
     "task_ignore_result": True},
]  # fmt: skip


@pytest.mark.parametrize("task_options", TASK_OPTIONS)
@pytest.mark.parametrize("settings", APP_SETTINGS)
def test_plain_delay_sends_what_the_general_path_sends(
    make_app: Callable[..., Celery],
    monkeypatch: pytest.MonkeyPatch,
    task_options: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    app = make_app(**settings)

    @app.task(name="proj.add", **task_options)
    def add(x: Any, y: Any = 0, z: Any = None) -> Any:
        return x

    args, kwargs = (2, "three"), {"z": [1.5, {"k": None}]}
    general = add.apply_async(args, kwargs, task_id="given-id")  # an option: general path
    with monkeypatch.context() as patch:
        no_general_path(app, patch)
        plain = add.delay(*args, **kwargs)
    queue = task_options.get("queue") or settings.get("task_default_queue", "celery")
    first, second = queued(app, queue)
    assert first.id == general.id and second.id == plain.id
    assert second.headers["root_id"] == plain.id == second.properties["correlation_id"]
    assert comparable(second) == comparable(first)
    assert plain.ignored is general.ignored
    assert plain.task_id != general.task_id
    assert app.queues_used == {queue}


def test_delay_without_arguments_and_with_an_explicit_time_limit(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="proj.limited", time_limit=30)
    def limited() -> None:
        return None

    limited.apply_async(time_limit=None)  # an explicit None clears the limit: general path
    with monkeypatch.context() as patch:
        no_general_path(app, patch)
        limited.delay()
    cleared, plain = queued(app, "celery")
    assert cleared.headers["timelimit"] == [None, None]
    assert plain.headers["timelimit"] == [30, None]
    assert plain.decode_body(frozenset({"application/json"})) == ([], {}, {})


def test_publish_signals_see_and_change_a_plain_delay(app: Celery) -> None:
    seen: list[tuple[str, Any]] = []

    def before(sender: Any = None, headers: Any = None, body: Any = None, **_: Any) -> None:
        headers["extra"] = "from the receiver"
        seen.append(("before", body))

    def after(sender: Any = None, **_: Any) -> None:
        seen.append(("after", sender))

    @app.task(name="proj.echo")
    def echo(x: Any) -> Any:
        return x

    signals.before_task_publish.connect(before)
    signals.after_task_publish.connect(after)
    try:
        echo.delay(1)
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
    assert seen == [("before", ([1], {}, {})), ("after", "proj.echo")]
    (message,) = queued(app, "celery")
    assert message.headers["extra"] == "from the receiver"


def test_routes_and_expiry_still_apply_to_a_plain_delay(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_routes={"proj.*": {"queue": "routed", "priority": 7}})

    @app.task(name="proj.route_me", expires=60)
    def route_me() -> None:
        return None

    route_me.delay()
    (message,) = queued(app, "routed")
    assert message.properties["priority"] == 7
    assert message.headers["expires"] is not None


def test_a_task_sent_from_a_running_task_has_its_parent(app: Celery) -> None:
    @app.task(name="proj.child")
    def child() -> None:
        return None

    @app.task(name="proj.parent", bind=True)
    def parent(self: Any) -> str:
        return str(child.delay().id)

    result = parent.apply(task_id="the-parent")
    (message,) = queued(app, "celery")
    assert message.id == result.get()
    assert message.headers["parent_id"] == "the-parent"
    assert message.headers["root_id"] == "the-parent"


ENVELOPE_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]] = [
    ("proj.add", (), {}, {}),
    ("proj.add", (2, "thr\u00e9e", None), {"k": [1.5, {"deep": True}]}, {"priority": 9}),
    ("proj.big", ("x" * 70_000,), {"y": "z" * 300}, {"serializer": "msgpack"}),  # long sizes
    ("t\u00e2che.\u2603", tuple(range(20)), {}, {"time_limit": 3.5, "soft_time_limit": 2}),
    ("proj.ignored", (1,), {}, {"ignore_result": True, "queue": "other"}),
    ("proj.unknown", (1,), {}, {"ignore_result": None}),
    ("proj.100%done %b %s", ("50%",), {}, {}),  # a % in the constant bytes
    ("\x00" * 36, (1,), {}, {}),  # a name holding the id's stand-in: no template, same bytes
]


@pytest.mark.parametrize(("name", "args", "kwargs", "fields"), ENVELOPE_CASES)
def test_the_packed_envelope_is_byte_for_byte_the_built_message(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], fields: dict[str, Any]
) -> None:
    fields = {"queue": "celery", **fields}
    for task_id in ("6f1c2a0e-3b7d-4c59-9e1a-2f4b8d6c0a17", "00000000-0000-4000-8000-000000000000"):
        options = MessageOptions(task_id=task_id, **fields)
        assert (
            envelope(name, args, kwargs, options)
            == build_message(name, args, kwargs, options).encode()
        )


def test_a_message_redis_refuses_raises_at_the_call(app: Celery) -> None:
    @app.task(name="proj.refused")
    def refused(x: Any) -> Any:
        return x

    app.broker.client.set(app.broker.keys.queue("celery", 0), b"not a list")
    with pytest.raises(OperationalError, match="publish: Redis error"):
        refused.delay(1)
    with pytest.raises(OperationalError, match="publish: Redis error"):
        refused.apply_async((1,), priority=0)  # the general path says the same


@pytest.mark.parametrize("serializer", [None, "yaml"])
def test_what_cannot_be_sent_is_named_as_the_general_path_names_it(
    app: Celery, serializer: str | None
) -> None:
    @app.task(name="proj.unsendable", serializer=serializer)
    def unsendable(x: Any) -> Any:
        return x

    errors = []
    for send in (
        lambda: unsendable.delay(object()),
        lambda: unsendable.apply_async((object(),), priority=0),
    ):
        with pytest.raises(SerializationError) as caught:
            send()
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert "positional argument 0 (object)" in errors[0]
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}
