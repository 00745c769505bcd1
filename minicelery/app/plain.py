"""``delay()``'s common case: a registered task sent with no options. The message is the one
the general path builds, its envelope filled into bytes packed once per task and settings."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _state, signals
from ..aio.outbox import DEFERRED
from ..broker import OutgoingMessage
from ..message import MessageOptions, build_message, encode_body, origin, safe_repr
from ..result import AsyncResult
from ..serialization import frame_packer, pack_frame
from ..utils import uuid

if TYPE_CHECKING:
    from ..task import Task
    from .base import Celery

#: What ``apply_async`` passes on to ``send_task`` whether given or not (None when not).
ALWAYS_PASSED = frozenset({"link", "link_error", "shadow"})

# Stand-ins for what differs between two sends, found again in the packed template. A task id
# is always 36 characters, so its stand-in packs with the same length prefix as a real one.
_ID = "\x00" * 36
_ARGSREPR = "\x00argsrepr\x00"
_KWARGSREPR = "\x00kwargsrepr\x00"
_BODY = b"\x00body\x00"
_STAND_INS: tuple[Any, ...] = (_ID, _ARGSREPR, _KWARGSREPR, _BODY)
_EXPECTED = (3, 1, 1, 1)  # id, root_id and correlation_id; each of the others once

#: An envelope as a %-format of its constant bytes, and what picks its variables (packed, in
#: the order of ``_STAND_INS``) in the order the format takes them.
Template = tuple[bytes, Callable[[tuple[bytes, ...]], tuple[bytes, ...]]]


def plain_options(options: dict[str, Any]) -> bool:
    """Whether ``options`` are only what ``apply_async`` always passes, all None (an
    explicit ``time_limit=None`` is an option: it clears the task's limit)."""
    for key, value in options.items():
        if value is not None or key not in ALWAYS_PASSED:
            return False
    return True


def send_plain(
    app: Celery, name: str, args: Any, kwargs: Any, task: Task[Any, Any]
) -> AsyncResult | None:
    """Send ``task`` as :meth:`~minicelery.app.sending.Sending.prepare_message` would, at a
    third of its cost: no routes, no publish signal receivers, no sent events, no expiry,
    not sent from a running task. None when this send needs the general path."""
    conf = app.conf
    request = _state.current_request()
    if (
        (request is not None and not request.called_directly)
        or conf.task_routes
        or conf.task_send_sent_event
        or task.expires is not None
        or signals.before_task_publish.has_receivers()
        or signals.after_task_publish.has_receivers()
    ):
        return None
    queue = task.queue if task.queue is not None else conf.task_default_queue
    priority = task.priority if task.priority is not None else conf.task_default_priority
    ignore_result = task.option("ignore_result")
    fields = Fields(
        queue, task.option("serializer"), priority,
        None if ignore_result is None else bool(ignore_result),
        task.time_limit, task.soft_time_limit,
    )  # fmt: skip
    task_id = uuid()
    data = pack_envelope(name, tuple(args or ()), dict(kwargs or {}), task_id, fields)
    deferred = DEFERRED.get()
    if deferred is None:
        app.broker.publish_now(queue, data, priority)
    else:  # an asyncio send: published once this returns, without blocking the loop
        deferred.messages.append(OutgoingMessage(queue, data, priority or 0))
    app.queues_used.add(queue)
    result = AsyncResult(task_id, task_name=name, app=app)
    result.ignored = bool(ignore_result)
    return result


class Fields(NamedTuple):
    """What a plain send sets of :class:`~minicelery.message.MessageOptions` beside the
    task id (a tuple: no dataclass built per ``delay()``)."""

    queue: str
    serializer: str
    priority: int | None
    ignore_result: bool | None
    time_limit: float | None
    soft_time_limit: float | None


def envelope(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: MessageOptions
) -> bytes:
    """The encoded message ``build_message(name, args, kwargs, options).encode()`` gives,
    for options with nothing but a task id, queue, serializer, priority, ignore_result and
    time limits set."""
    fields = Fields(
        options.queue, options.serializer, options.priority, options.ignore_result,
        options.time_limit, options.soft_time_limit,
    )  # fmt: skip
    return pack_envelope(name, args, kwargs, options.task_id, fields)


def pack_envelope(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str, fields: Fields
) -> bytes:
    """:func:`envelope` of the options ``task_id`` and ``fields``."""
    # The body first: what cannot be serialized is named as build_message names it.
    _, body = encode_body(args, kwargs, {}, fields.serializer)
    template = _template(name, fields, origin())
    if template is None:
        return build_message(name, args, kwargs, _options(task_id, fields)).encode()
    pack = frame_packer().pack
    packed = (pack(task_id), pack(safe_repr(args)), pack(safe_repr(kwargs)), pack(body))
    form, pick = template
    return form % pick(packed)


@functools.lru_cache(maxsize=256)
def _template(
    name: str,
    fields: Fields,
    sender: str,  # the origin header (pid@host): a forked child packs its own
) -> Template | None:
    """The envelope of such messages packed with stand-ins, cut where they are; None if
    they are not each found where expected (then every send builds its message whole)."""
    message = build_message(name, (), {}, _options(_ID, fields))
    message.headers.update(argsrepr=_ARGSREPR, kwargsrepr=_KWARGSREPR)
    message.body = _BODY
    packed = message.encode()
    runs: list[bytes] = []
    slots: list[int] = []
    start = 0
    while True:
        found = [(packed.find(pack_frame(s), start), i) for i, s in enumerate(_STAND_INS)]
        found = [(at, i) for at, i in found if at >= 0]
        if not found:
            break
        at, slot = min(found)
        runs.append(packed[start:at])
        slots.append(slot)
        start = at + len(pack_frame(_STAND_INS[slot]))
    runs.append(packed[start:])
    if tuple(slots.count(i) for i in range(len(_STAND_INS))) != _EXPECTED:
        return None
    form = b"%b".join(run.replace(b"%", b"%%") for run in runs)
    return form, operator.itemgetter(*slots)


def _options(task_id: str, fields: Fields) -> MessageOptions:
    return MessageOptions(task_id=task_id, **fields._asdict())
