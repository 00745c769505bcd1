"""The task message: Celery protocol v2 headers and body, in a compact msgpack envelope.

The logical content (headers, properties, ``[args, kwargs, embed]`` body) is Celery's, so a
bridge to real Celery stays possible; the envelope on the wire is ours and cheap to decode.
"""

from __future__ import annotations

import datetime as dt
import os
import reprlib
import socket
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .exceptions import MessageError, SerializationError
from .serialization import dumps, loads, pack_frame

_repr = reprlib.Repr()
_repr.maxstring = 256
_repr.maxother = 256
_repr.maxlevel = 4
ARGSREPR_MAX = 1024

REQUIRED_HEADERS = ("id", "task")
DATA_ONLY = frozenset({"application/json", "application/x-msgpack"})


@dataclass
class TaskMessage:
    """One task message as it travels through the broker."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    content_type: str
    body: bytes
    decoded: tuple[list[Any], dict[str, Any], dict[str, Any]] | None = field(
        default=None, repr=False
    )

    @property
    def id(self) -> str:
        return str(self.headers["id"])

    @property
    def task(self) -> str:
        return str(self.headers["task"])

    @property
    def stamped_headers(self) -> list[str]:
        """The names of the canvas stamps this message carries (Celery's request has it)."""
        return list(self.headers.get("stamped_headers") or [])

    @property
    def stamps(self) -> dict[str, Any]:
        """The canvas stamps this message carries, by name."""
        stamps = self.headers.get("stamps") or {}
        return {name: stamps.get(name) for name in self.stamped_headers}

    # What Celery's worker request offers ``task_received`` receivers, read from the body.
    @property
    def args(self) -> list[Any] | None:
        body = self._body()
        return body[0] if body else None

    @property
    def kwargs(self) -> dict[str, Any] | None:
        body = self._body()
        return body[1] if body else None

    @property
    def callbacks(self) -> Any:
        return self._embedded("callbacks")

    @property
    def errbacks(self) -> Any:
        return self._embedded("errbacks")

    @property
    def chain(self) -> Any:
        return self._embedded("chain")

    @property
    def chord(self) -> Any:
        return self._embedded("chord")

    def _embedded(self, key: str) -> Any:
        body = self._body()
        return body[2].get(key) if body else None

    def _body(self) -> tuple[list[Any], dict[str, Any], dict[str, Any]] | None:
        """The decoded body, decoding it now only from a data-only format (never pickle
        here: the worker decides whether it accepts that); None when it cannot be read."""
        if self.decoded is None:
            try:
                self.decode_body(DATA_ONLY)
            except (MessageError, SerializationError):
                return None
        return self.decoded

    @property
    def replaced_task_nesting(self) -> int:
        """How many ``Task.replace()`` calls led to this task (Celery's request has it)."""
        return int(self.headers.get("replaced_task_nesting") or 0)

    def encode(self) -> bytes:
        """The bytes pushed onto a queue."""
        envelope = {
            "h": self.headers,
            "p": self.properties,
            "ct": self.content_type,
            "b": self.body,
        }
        return pack_frame(envelope)

    def redelivered(self) -> bytes:
        """The bytes of this message given back to its queue by ``Reject(requeue=True)``:
        marked ``redelivered``, which the task reads in ``request.delivery_info``."""
        properties = {**self.properties, "redelivered": True}
        return TaskMessage(self.headers, properties, self.content_type, self.body).encode()

    def decode_body(
        self, accept: frozenset[str]
    ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        """``(args, kwargs, embed)``; refuses content types outside ``accept``."""
        if self.decoded is None:
            body = loads(self.body, self.content_type, accept)
            if not (isinstance(body, (list, tuple)) and len(body) == 3):
                raise MessageError("message body is not [args, kwargs, embed]")
            args, kwargs, embed = body
            if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
                raise MessageError("message args must be a list and kwargs a mapping")
            self.decoded = (list(args), dict(kwargs), dict(embed or {}))
        return self.decoded


def decode_message(data: bytes) -> TaskMessage:
    """Parse the envelope and check the headers a worker relies on; raises MessageError."""
    try:
        envelope = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises a handful of unrelated types
        raise MessageError(f"undecodable message envelope: {exc}") from exc
    if not isinstance(envelope, dict) or not {"h", "p", "ct", "b"} <= envelope.keys():
        raise MessageError("message envelope is not a minicelery task message")
    headers, properties = envelope["h"], envelope["p"]
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        raise MessageError("message headers and properties must be mappings")
    missing = [name for name in REQUIRED_HEADERS if not isinstance(headers.get(name), str)]
    if missing:
        raise MessageError(f"message header(s) missing or malformed: {', '.join(missing)}")
    body = envelope["b"]
    if not isinstance(body, bytes) or not isinstance(envelope["ct"], str):
        raise MessageError("message body must be bytes with a content type")
    _check_headers(headers)
    return TaskMessage(headers, properties, envelope["ct"], body)


def _check_headers(headers: dict[str, Any]) -> None:
    """Refuse headers a worker would trip over later (in a child, mid-run)."""
    for name in ("eta", "expires"):
        parse_iso(headers.get(name))
    retries = headers.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        raise MessageError(f"malformed header 'retries': {retries!r}")
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, (list, tuple)) and len(limits) == 2 and all(_is_limit(v) for v in limits)
    ):
        raise MessageError(f"malformed header 'timelimit': {limits!r}")


def _is_limit(value: Any) -> bool:
    return value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    )


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def parse_iso(value: Any) -> dt.datetime | None:
    """Parse an eta/expires header; naive values are taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"malformed date in message header: {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise MessageError(f"malformed date in message header: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


_origin = ""


def _forget_origin() -> None:
    global _origin
    _origin = ""


# A forked child makes its own; no getpid() system call on every send to find out.
if hasattr(os, "register_at_fork"):  # absent only where there is no fork either
    os.register_at_fork(after_in_child=_forget_origin)


def origin() -> str:
    """``pid@host``, as Celery puts in the ``origin`` header (cached per process)."""
    global _origin
    if not _origin:
        _origin = f"{os.getpid()}@{socket.gethostname()}"
    return _origin


_SIMPLE = (int, float, bool, type(None))


def safe_repr(value: Any) -> str:
    """A bounded repr for ``argsrepr``/``kwargsrepr``; plain ``repr`` when that is cheap."""
    if not value:
        return repr(value)
    items = value.values() if isinstance(value, dict) else value
    if len(items) <= 8 and all(
        isinstance(v, _SIMPLE) or (isinstance(v, str) and len(v) <= 64) for v in items
    ):
        return repr(value)
    text = _repr.repr(value)
    return text if len(text) <= ARGSREPR_MAX else text[: ARGSREPR_MAX - 3] + "..."


def encode_body(
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    embed: dict[str, Any],
    serializer: str,
) -> tuple[str, bytes]:
    """Serialize ``[args, kwargs, embed]``; on failure name the argument at fault."""
    try:
        return dumps([list(args), kwargs, embed], serializer)
    except SerializationError as exc:
        culprit = _find_unserializable(args, kwargs, serializer)
        raise SerializationError(
            f"{culprit} cannot be serialized with {serializer}: {exc.__cause__}"
        ) from exc


def _find_unserializable(
    args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], serializer: str
) -> str:
    for index, value in enumerate(args):
        try:
            dumps(value, serializer)
        except SerializationError:
            return f"positional argument {index} ({type(value).__name__})"
    for name, value in kwargs.items():
        try:
            dumps(value, serializer)
        except SerializationError:
            return f"keyword argument {name!r} ({type(value).__name__})"
    return "the task options (links or chain)"


@dataclass
class MessageOptions:
    """Everything about one send beyond the task's arguments."""

    task_id: str
    queue: str
    serializer: str = "json"
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    priority: int | None = None
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    group_index: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool | None = False
    reply_to: str | None = None
    shadow: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    embed: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)  # AMQP ones: app_id, type...


def build_message(
    name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], options: MessageOptions
) -> TaskMessage:
    """Build a protocol-v2 task message; serialization errors surface here, at the call site."""
    content_type, body = encode_body(args, kwargs, options.embed, options.serializer)
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": options.task_id,
        "shadow": options.shadow,
        "eta": _iso(options.eta),
        "expires": _iso(options.expires),
        "group": options.group_id,
        "group_index": options.group_index,
        "retries": options.retries,
        "timelimit": [options.time_limit, options.soft_time_limit],
        "root_id": options.root_id or options.task_id,
        "parent_id": options.parent_id,
        "argsrepr": safe_repr(tuple(args)),
        "kwargsrepr": safe_repr(kwargs),
        "origin": origin(),
        "ignore_result": options.ignore_result,
    }
    headers.update(options.headers)
    properties = {
        **options.properties,
        "correlation_id": options.task_id,
        "reply_to": options.reply_to,
        "priority": options.priority,
        "delivery_info": {"exchange": "", "routing_key": options.queue},
    }
    return TaskMessage(headers, properties, content_type, body, None)
