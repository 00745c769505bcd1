"""Protocol-v2 task messages: headers, properties, body, the envelope, and errors."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

import msgpack
import pytest

from minicelery import Celery, Task
from minicelery.exceptions import MessageError, SerializationError
from minicelery.message import TaskMessage, decode_message, parse_iso
from minicelery.serialization import accepted_content_types
from tests.unit.conftest import ACCEPT_JSON

UTC = dt.timezone.utc


def add_task(app: Celery) -> Task[Any, Any]:
    @app.task(name="proj.add")
    def add(x: Any, y: Any = 0) -> Any:
        return x + y

    return add


def sent(app: Celery, queue: str = "celery") -> list[TaskMessage]:
    """Every message waiting on ``queue`` (scheduled ones moved first), decoded."""
    app.broker.move_due(4e9)  # far beyond any eta used here
    return [decode_message(d.data) for d in app.broker.reserve("test", [queue], 100)]


def only(app: Celery, queue: str = "celery") -> TaskMessage:
    messages = sent(app, queue)
    assert len(messages) == 1
    return messages[0]


def parse(value: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value!r} has no UTC offset"
    return parsed


# --------------------------------------------------------------------------- headers


def test_default_headers(app: Celery) -> None:
    add = add_task(app)
    result = add.delay(2, 3)
    message = only(app)
    h = message.headers
    assert h["id"] == result.id == message.id
    assert h["task"] == "proj.add" == message.task
    assert h["lang"] == "py"
    assert h["root_id"] == result.id
    assert h["parent_id"] is None
    assert h["group"] is None
    assert h["eta"] is None
    assert h["expires"] is None
    assert h["retries"] == 0
    assert h["timelimit"] == [None, None]
    assert h["argsrepr"] == "(2, 3)"
    assert h["kwargsrepr"] == "{}"
    assert h["origin"] == f"{os.getpid()}@{socket.gethostname()}"
    assert h["ignore_result"] is False
    assert h["shadow"] is None


def test_default_properties_and_body(app: Celery) -> None:
    add = add_task(app)
    result = add.apply_async((2,), {"y": 5})
    message = only(app)
    p = message.properties
    assert p["correlation_id"] == result.id
    assert p["priority"] is None
    assert p["delivery_info"]["routing_key"] == "celery"
    assert message.content_type == "application/json"
    args, kwargs, embed = message.decode_body(ACCEPT_JSON)
    assert args == [2]
    assert kwargs == {"y": 5}
    assert isinstance(embed, dict)
    assert not embed.get("callbacks")
    assert message.headers["kwargsrepr"] == "{'y': 5}"


def test_eta_and_expires_are_iso_with_offset(app: Celery) -> None:
    add = add_task(app)
    before = dt.datetime.now(UTC)
    add.apply_async((1, 1), countdown=30, expires=60)
    after = dt.datetime.now(UTC)
    h = only(app).headers
    eta, expires = parse(h["eta"]), parse(h["expires"])
    assert before + dt.timedelta(seconds=30) <= eta <= after + dt.timedelta(seconds=30)
    assert before + dt.timedelta(seconds=60) <= expires <= after + dt.timedelta(seconds=60)


def test_eta_and_expires_datetimes_keep_their_instant(app: Celery) -> None:
    add = add_task(app)
    tz = dt.timezone(dt.timedelta(hours=2))
    eta = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=tz)
    naive_expires = dt.datetime(2031, 1, 3, 0, 0, 0)  # naive means UTC
    add.apply_async((1, 1), eta=eta, expires=naive_expires)
    h = only(app).headers
    assert parse(h["eta"]) == eta
    assert parse(h["expires"]) == naive_expires.replace(tzinfo=UTC)


def test_retries_group_timelimit_priority_shadow_and_ignore_result(app: Celery) -> None:
    add = add_task(app)
    app.send_task(
        "proj.add",
        (1, 2),
        retries=2,
        group_id="g-1",
        group_index=3,
        time_limit=10,
        soft_time_limit=5,
        priority=7,
        shadow="alias",
        ignore_result=True,
        task_id="fixed-id",
    )
    message = only(app)
    h = message.headers
    assert h["id"] == "fixed-id"
    assert h["root_id"] == "fixed-id"
    assert h["retries"] == 2
    assert h["group"] == "g-1"
    assert h["group_index"] == 3
    assert h["timelimit"] == [10, 5]
    assert h["shadow"] == "alias"
    assert h["ignore_result"] is True
    assert message.properties["priority"] == 7
    assert message.properties["correlation_id"] == "fixed-id"
    assert add.name == h["task"]


def test_task_ignore_result_option_reaches_the_header(app: Celery) -> None:
    @app.task(ignore_result=True)
    def quiet() -> None:
        return None

    quiet.delay()
    assert only(app).headers["ignore_result"] is True


def test_root_and_parent_id_given_explicitly(app: Celery) -> None:
    add = add_task(app)
    add.apply_async((1, 2), root_id="root-1", parent_id="parent-1")
    h = only(app).headers
    assert h["root_id"] == "root-1"
    assert h["parent_id"] == "parent-1"


def test_argsrepr_is_bounded(app: Celery) -> None:
    add = add_task(app)
    add.apply_async(("x" * 100_000, "y"))
    h = only(app).headers
    assert len(h["argsrepr"]) <= 1024
    assert h["argsrepr"].startswith("('xxx")


def test_link_and_link_error_are_embedded(app: Celery) -> None:
    add = add_task(app)
    add.apply_async((1, 2), link=add.s(10), link_error=add.si(0, 0))
    _, _, embed = only(app).decode_body(ACCEPT_JSON)
    assert [(c["task"], c["args"]) for c in embed["callbacks"]] == [("proj.add", [10])]
    assert [(c["task"], c["immutable"]) for c in embed["errbacks"]] == [("proj.add", True)]


def test_msgpack_task_serializer(make_app: Any) -> None:
    app: Celery = make_app(task_serializer="msgpack", accept_content=["json", "msgpack"])
    add = add_task(app)
    add.delay(b"\x00bin", 1)
    message = only(app)
    assert message.content_type == "application/x-msgpack"
    args, _, _ = message.decode_body(accepted_content_types(["msgpack"]))
    assert args == [b"\x00bin", 1]


# --------------------------------------------------------------------------- envelope


def make_message() -> TaskMessage:
    return TaskMessage(
        headers={"id": "abc", "task": "proj.add", "retries": 1, "eta": None},
        properties={"correlation_id": "abc", "priority": 3, "delivery_info": {"routing_key": "q"}},
        content_type="application/json",
        body=b"[[1,2],{},{}]",
    )


def test_envelope_round_trip() -> None:
    original = make_message()
    decoded = decode_message(original.encode())
    assert decoded.headers == original.headers
    assert decoded.properties == original.properties
    assert decoded.content_type == original.content_type
    assert decoded.body == original.body
    assert decoded.decode_body(ACCEPT_JSON) == ([1, 2], {}, {})


def envelope(**overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "h": {"id": "abc", "task": "proj.add"},
        "p": {},
        "ct": "application/json",
        "b": b"[[],{},{}]",
    }
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not ...}
    return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]


GARBAGE: list[bytes] = [
    b"",
    b"garbage",
    b"\xc1",
    b"\x93\x01\x02",  # truncated msgpack array
    msgpack.packb([1, 2, 3]),
    msgpack.packb({"h": {}}),
    envelope(h={"task": "proj.add"}),  # no id
    envelope(h={"id": "abc"}),  # no task
    envelope(h={"id": 5, "task": "proj.add"}),  # malformed id
    envelope(h=["id", "task"]),
    envelope(p=...),
    envelope(b="not bytes"),
    envelope(ct=None),
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_and_missing_headers_raise_message_error(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode_message(data)


@pytest.mark.parametrize("body", [b"[1,2]", b'{"a":1}', b'["notalist",{},{}]', b"[[],[],{}]"])
def test_malformed_body_raises_message_error(body: bytes) -> None:
    message = decode_message(envelope(b=body))
    with pytest.raises(MessageError):
        message.decode_body(ACCEPT_JSON)


def test_parse_iso() -> None:
    assert parse_iso(None) is None
    assert parse_iso("2030-01-01T00:00:00") == dt.datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_iso("2030-01-01T02:00:00+02:00") == dt.datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(MessageError):
        parse_iso("tomorrow")


# --------------------------------------------------------------------------- unserializable


def test_unserializable_positional_argument_is_named_and_nothing_is_sent(app: Celery) -> None:
    add = add_task(app)
    with pytest.raises(SerializationError, match=r"positional argument 1\b"):
        add.apply_async((1, object()))
    with pytest.raises(SerializationError, match="positional argument 0"):
        add.delay(object(), 1)
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}


def test_unserializable_keyword_argument_is_named_and_nothing_is_sent(app: Celery) -> None:
    add = add_task(app)
    with pytest.raises(SerializationError, match="keyword argument 'y'"):
        add.delay(1, y={"nested": object()})
    with pytest.raises(SerializationError, match="keyword argument 'y'"):
        app.send_task("proj.add", (1,), {"y": object()})
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}
    assert app.broker.next_due() is None


def test_unserializable_argument_with_countdown_schedules_nothing(app: Celery) -> None:
    add = add_task(app)
    with pytest.raises(SerializationError, match="positional argument 0"):
        add.apply_async((object(), 1), countdown=5)
    assert app.broker.next_due() is None
