"""Codecs for message bodies and results (json, msgpack, opt-in pickle) and the
portable form of exceptions that Celery's result backends use."""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
import threading
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import msgpack

from .exceptions import (
    ContentDisallowed,
    RemoteTaskError,
    SerializationError,
    UnpickleableExceptionWrapper,
)


@dataclass(frozen=True)
class Codec:
    """A named serializer: its content type and its two functions."""

    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _encode_extra(obj: Any) -> Any:
    """Turn the non-JSON types Celery's json codec supports into tagged dicts."""
    if isinstance(obj, dt.datetime):
        return {"__type__": "datetime", "__value__": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {"__type__": "date", "__value__": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {"__type__": "time", "__value__": obj.isoformat()}
    if isinstance(obj, uuid.UUID):
        return {"__type__": "uuid", "__value__": str(obj)}
    if isinstance(obj, bytes):
        return {"__type__": "bytes", "__value__": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    # Imported here, last: decimal (a C library) costs every worker process a third of a
    # megabyte, and only a task that passes a Decimal needs it.
    import decimal

    if isinstance(obj, decimal.Decimal):
        return {"__type__": "decimal", "__value__": str(obj)}
    raise TypeError(f"Object of type {type(obj).__name__} is not serializable")


def _decode_decimal(value: str) -> Any:
    import decimal  # as in _encode_extra: only where a Decimal travels

    return decimal.Decimal(value)


_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": _decode_decimal,
    "bytes": base64.b64decode,
}


def _decode_extra(obj: dict[str, Any]) -> Any:
    kind = obj.get("__type__")
    if kind is not None and len(obj) == 2 and "__value__" in obj:
        decoder = _DECODERS.get(kind)
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


# One encoder for every call: json.dumps with options builds a new one each time, which
# costs as much as encoding a small result.
_JSON_ENCODER = json.JSONEncoder(default=_encode_extra, separators=(",", ":"))


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """The C encoder under ``_JSON_ENCODER``, built once and without a circular-reference
    check: JSONEncoder builds one per call (with a fresh map of the containers it enters),
    a third of what encoding a task's arguments costs. A circular structure ends in
    RecursionError there, and is then encoded again by the checking encoder, which says
    what is wrong. None without the C accelerator."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    ascii_text = json.encoder.encode_basestring_ascii
    # markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan
    encoder: Callable[[Any, int], Any] = make(
        None, _encode_extra, ascii_text, None, ":", ",", False, False, True
    )
    return encoder


_C_ENCODE = _c_encoder()


def _json_dumps(obj: Any) -> bytes:
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(obj, 0)).encode()
        except RecursionError:
            pass
    return _JSON_ENCODER.encode(obj).encode()


def _json_loads(data: bytes) -> Any:
    if b'"__type__"' not in data:
        return json.loads(data)  # nothing tagged: skip the per-object hook
    return json.loads(data, object_hook=_decode_extra)


_packers = threading.local()


def pack_frame(obj: Any) -> bytes:
    """msgpack for the library's own frames (message envelopes, pool reports): plain types
    only, with a packer kept per thread, since ``msgpack.packb`` builds a new one on
    every call and that showed on every ``delay()`` and every task a child reports."""
    return frame_packer().pack(obj)  # type: ignore[no-any-return]


def frame_packer() -> msgpack.Packer:
    """This thread's packer of :func:`pack_frame`, for a caller packing several values."""
    try:
        packer: msgpack.Packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer


def _msgpack_encode_extra(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return _encode_extra(obj)


def _msgpack_dumps(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_msgpack_encode_extra, use_bin_type=True)  # type: ignore[no-any-return]


def _msgpack_loads(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, object_hook=_decode_extra, strict_map_key=False)


# pickle is imported by the opt-in pickle codec only, at its first use: the json and msgpack
# codecs never need it, and every worker process would carry it.
def _pickle_dumps(obj: Any) -> bytes:
    import pickle

    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except pickle.PicklingError as exc:
        raise SerializationError(f"cannot serialize with pickle: {exc}") from exc


def _pickle_loads(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


CODECS: dict[str, Codec] = {
    "json": Codec("json", "application/json", _json_dumps, _json_loads),
    "msgpack": Codec("msgpack", "application/x-msgpack", _msgpack_dumps, _msgpack_loads),
    "pickle": Codec("pickle", "application/x-python-serialize", _pickle_dumps, _pickle_loads),
}
_BY_CONTENT_TYPE = {codec.content_type: codec for codec in CODECS.values()}


def codec_for(name_or_type: str) -> Codec:
    """Find a codec by its short name ('json') or content type ('application/json')."""
    codec = CODECS.get(name_or_type) or _BY_CONTENT_TYPE.get(name_or_type)
    if codec is None:
        raise SerializationError(f"unknown serializer or content type: {name_or_type!r}")
    return codec


def accepted_content_types(accept: Collection[str]) -> frozenset[str]:
    """Normalise an ``accept_content`` list of names or content types to content types."""
    return frozenset(codec_for(item).content_type for item in accept)


def dumps(obj: Any, serializer: str) -> tuple[str, bytes]:
    """Encode ``obj``; return ``(content_type, data)``. Raises SerializationError."""
    codec = codec_for(serializer)
    try:
        return codec.content_type, codec.dumps(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"cannot serialize with {codec.name}: {exc}") from exc


def loads(data: bytes, content_type: str, accept: Collection[str] | None = None) -> Any:
    """Decode ``data``; refuse content types not in ``accept`` (content types)."""
    if accept is not None and content_type not in accept:
        raise ContentDisallowed(f"refusing to deserialize content of type {content_type!r}")
    codec = codec_for(content_type)
    try:
        return codec.loads(data)
    except Exception as exc:  # any decoder error means the same thing to the caller
        raise SerializationError(f"cannot deserialize {codec.name} data: {exc}") from exc


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """The portable form Celery stores for a task failure."""
    exc_type = type(exc)
    module = exc_type.__module__
    return {
        "exc_type": exc_type.__qualname__,
        "exc_message": list(_portable_args(exc.args)),
        "exc_module": module,
    }


def _portable_args(args: tuple[Any, ...]) -> list[Any]:
    portable: list[Any] = []
    for arg in args:
        try:
            json.dumps(arg, default=_encode_extra)
            portable.append(arg)
        except (TypeError, ValueError):
            portable.append(repr(arg))
    return portable


def exception_from_dict(data: Any) -> BaseException:
    """Rebuild a task's exception: the real type when importable, else a stand-in of the same
    name. Never unpickles."""
    if not isinstance(data, dict) or "exc_type" not in data:
        return RemoteTaskError(data)
    name = str(data.get("exc_type"))
    module = str(data.get("exc_module") or "builtins")
    message = data.get("exc_message", [])
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _import_exception(module, name)
    if cls is not None:
        try:
            instance: BaseException = cls(*args)
            return instance
        except Exception:  # the class wants other arguments: fall back to the stand-in
            pass
    # Also Celery's UnpickleableExceptionWrapper: the exception could not travel as itself.
    namespace = {"__module__": module, "__init__": Exception.__init__, "__str__": Exception.__str__}
    stand_in: type[RemoteTaskError] = type(
        name, (RemoteTaskError, UnpickleableExceptionWrapper), namespace
    )
    instance = stand_in(*args)
    instance.__dict__.update(exc_module=module, exc_cls_name=name, exc_args=args, text=None)
    return instance


def _import_exception(module: str, qualname: str) -> type[BaseException] | None:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None
