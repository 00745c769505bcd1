"""Codecs (json, msgpack, opt-in pickle) and the portable form of task exceptions."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import pickle
import uuid
from typing import Any

import pytest

from minicelery.exceptions import (
    ContentDisallowed,
    MiniceleryError,
    RemoteTaskError,
    SerializationError,
)
from minicelery.serialization import (
    accepted_content_types,
    codec_for,
    dumps,
    exception_from_dict,
    exception_to_dict,
    loads,
)

JSON = "application/json"
MSGPACK = "application/x-msgpack"
PICKLE = "application/x-python-serialize"

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

PAYLOAD: dict[str, Any] = {
    "aware": dt.datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC),
    "offset": dt.datetime(2024, 5, 17, 18, 0, tzinfo=IST),
    "naive": dt.datetime(2001, 2, 3, 4, 5, 6),
    "day": dt.date(1999, 12, 31),
    "clock": dt.time(23, 59, 1),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "amount": decimal.Decimal("12.3400"),
    "tiny": decimal.Decimal("1E-30"),
    "blob": b"\x00\xffbinary\x80",
    "text": "h\u00e9llo \u2603",
    "nested": [1, 2.5, None, True, {"deep": [decimal.Decimal("0.1"), b"x"]}],
}


@pytest.mark.parametrize(("serializer", "content_type"), [("json", JSON), ("msgpack", MSGPACK)])
def test_round_trip_keeps_types_and_values(serializer: str, content_type: str) -> None:
    produced_type, data = dumps(PAYLOAD, serializer)
    assert produced_type == content_type
    assert isinstance(data, bytes)
    back = loads(data, content_type, accepted_content_types([serializer]))
    assert back == PAYLOAD
    for key, value in PAYLOAD.items():
        assert type(back[key]) is type(value), key
    assert back["offset"].utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert back["aware"].tzinfo is not None
    assert back["naive"].tzinfo is None
    assert str(back["amount"]) == "12.3400"  # Decimal keeps its exact digits


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_tuples_become_lists_and_sets_become_lists(serializer: str) -> None:
    content_type, data = dumps({"t": (1, 2), "s": {3}}, serializer)
    assert loads(data, content_type) == {"t": [1, 2], "s": [3]}


def test_json_is_plain_json_for_plain_values() -> None:
    content_type, data = dumps([[1, "a"], {"k": None}, {}], "json")
    assert content_type == JSON
    assert json.loads(data) == [[1, "a"], {"k": None}, {}]


def test_json_bytes_are_what_the_standard_encoder_writes() -> None:
    values = [[1, -2.5, float("nan"), float("inf"), '\u00e9\u2603"\n', None, True], {"k": {}}, {}]
    standard = json.dumps(values, separators=(",", ":")).encode()
    assert dumps(values, "json") == (JSON, standard)


def test_a_circular_structure_is_named_in_the_serialization_error() -> None:
    looped: list[Any] = [1]
    looped.append({"again": looped})
    with pytest.raises(SerializationError, match="Circular reference"):
        dumps([looped, {}, {}], "json")


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_unserializable_value_raises_serialization_error(serializer: str) -> None:
    with pytest.raises(SerializationError, match=serializer):
        dumps({"obj": object()}, serializer)


def test_unknown_serializer_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="yaml"):
        dumps(1, "yaml")
    with pytest.raises(SerializationError):
        codec_for("application/yaml")


@pytest.mark.parametrize(("data", "content_type"), [(b"{not json", JSON), (b"\xc1", MSGPACK)])
def test_corrupt_data_raises_serialization_error(data: bytes, content_type: str) -> None:
    with pytest.raises(SerializationError):
        loads(data, content_type)


def test_codec_lookup_by_name_or_content_type() -> None:
    assert codec_for("json") is codec_for(JSON)
    assert codec_for("msgpack").content_type == MSGPACK
    assert codec_for("pickle").content_type == PICKLE
    assert accepted_content_types(["json", MSGPACK]) == frozenset({JSON, MSGPACK})


# --------------------------------------------------------------------------- pickle

UNPICKLED: list[str] = []


def _record_unpickling(value: str) -> str:
    UNPICKLED.append(value)
    return value


class Booby:
    """Unpickling this object calls ``_record_unpickling``: proof a payload was unpickled."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickling, ("unpickled!",))


def test_pickle_is_refused_unless_accepted() -> None:
    UNPICKLED.clear()
    content_type, data = dumps(Booby(), "pickle")
    assert content_type == PICKLE
    with pytest.raises(ContentDisallowed, match="x-python-serialize"):
        loads(data, content_type, accepted_content_types(["json"]))
    with pytest.raises(ContentDisallowed):
        loads(data, content_type, accepted_content_types(["json", "msgpack"]))
    assert UNPICKLED == []  # refused before unpickling anything


def test_pickle_loads_when_accepted() -> None:
    UNPICKLED.clear()
    content_type, data = dumps(Booby(), "pickle")
    assert loads(data, content_type, accepted_content_types(["json", "pickle"])) == "unpickled!"
    assert UNPICKLED == ["unpickled!"]


def test_msgpack_refused_when_only_json_accepted() -> None:
    content_type, data = dumps([1], "msgpack")
    with pytest.raises(ContentDisallowed):
        loads(data, content_type, accepted_content_types(["json"]))


def test_content_disallowed_is_a_serialization_error() -> None:
    assert issubclass(ContentDisallowed, SerializationError)
    assert issubclass(SerializationError, MiniceleryError)


# --------------------------------------------------------------------------- exceptions


class CustomError(Exception):
    """An importable custom exception (this module is importable as tests.unit...)."""


class NeedsKeyword(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


def test_exception_to_dict_of_a_builtin() -> None:
    data = exception_to_dict(ValueError("bad value", 42))
    assert data == {
        "exc_type": "ValueError",
        "exc_message": ["bad value", 42],
        "exc_module": "builtins",
    }
    json.dumps(data)  # portable


def test_builtin_exception_round_trip() -> None:
    exc = exception_from_dict(exception_to_dict(KeyError("missing")))
    assert type(exc) is KeyError
    assert exc.args == ("missing",)


def test_custom_importable_exception_round_trip_through_json() -> None:
    data = exception_to_dict(CustomError("custom", 7))
    assert data["exc_module"] == __name__
    assert data["exc_type"] == "CustomError"
    content_type, raw = dumps(data, "json")
    exc = exception_from_dict(loads(raw, content_type))
    assert type(exc) is CustomError
    assert exc.args == ("custom", 7)


def test_non_importable_exception_becomes_a_stand_in_with_same_name_and_message() -> None:
    exc = exception_from_dict(
        {"exc_type": "VanishedError", "exc_module": "no_such_module_xyz", "exc_message": ["gone"]}
    )
    assert type(exc).__name__ == "VanishedError"
    assert str(exc) == "gone"
    assert exc.args == ("gone",)
    assert isinstance(exc, RemoteTaskError)
    assert isinstance(exc, MiniceleryError)


def test_stand_in_for_a_missing_class_in_an_existing_module() -> None:
    exc = exception_from_dict(
        {"exc_type": "NotThere", "exc_module": __name__, "exc_message": ["nope"]}
    )
    assert type(exc).__name__ == "NotThere"
    assert isinstance(exc, RemoteTaskError)
    assert str(exc) == "nope"


def test_exception_that_needs_other_arguments_becomes_a_stand_in() -> None:
    exc = exception_from_dict(exception_to_dict(NeedsKeyword(code=3)))
    assert type(exc).__name__ == "NeedsKeyword"
    assert isinstance(exc, RemoteTaskError)
    assert str(exc) == "code 3"


def test_exception_from_dict_never_calls_non_exception_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    exc = exception_from_dict(
        {"exc_type": "system", "exc_module": "os", "exc_message": ["touch /tmp/pwned"]}
    )
    assert called == []
    assert isinstance(exc, RemoteTaskError)
    assert type(exc).__name__ == "system"
    not_exc = exception_from_dict(
        {"exc_type": "_record_unpickling", "exc_module": __name__, "exc_message": ["x"]}
    )
    assert isinstance(not_exc, RemoteTaskError)


def test_exception_from_dict_never_unpickles() -> None:
    UNPICKLED.clear()
    payload = pickle.dumps(Booby())
    exc = exception_from_dict(
        {"exc_type": "Booby", "exc_module": "pickle", "exc_message": [payload.hex()]}
    )
    exc2 = exception_from_dict(payload)
    assert UNPICKLED == []
    assert isinstance(exc, RemoteTaskError)
    assert isinstance(exc2, RemoteTaskError)


def test_unportable_exception_arguments_are_stored_as_repr() -> None:
    marker = object()
    data = exception_to_dict(ValueError("ok", marker))
    assert data["exc_message"] == ["ok", repr(marker)]
    dumps(data, "json")


def test_malformed_exception_data_gives_remote_task_error() -> None:
    assert isinstance(exception_from_dict("just a string"), RemoteTaskError)
    assert isinstance(exception_from_dict({"no": "type"}), RemoteTaskError)


def test_exception_message_given_as_a_string() -> None:
    exc = exception_from_dict(
        {"exc_type": "ValueError", "exc_module": "builtins", "exc_message": "x"}
    )
    assert type(exc) is ValueError
    assert exc.args == ("x",)
