"""Sending tasks: route, build and publish task messages (``send_task`` and the steps a
group uses to publish many messages in one round)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from .. import _state, signals
from ..broker import OutgoingMessage
from ..message import MessageOptions, TaskMessage, build_message
from ..registry import TaskRegistry
from ..result import AsyncResult
from ..routing import lookup_route
from ..task import Task as BaseTask
from ..utils import uuid
from .connections import Connections

if TYPE_CHECKING:
    from .base import Celery


class Sending(Connections):
    """Mixed into ``Celery``: the publishing half of the app."""

    tasks: TaskRegistry
    queues_used: set[str]

    def send_task(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        task_id: str | None = None,
        expires: float | dt.datetime | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name; the caller need not have the task's code."""
        task: BaseTask[Any, Any] | None = options.pop("task", None) or self.tasks.get(name)
        if (
            task is not None
            and countdown is None
            and eta is None
            and task_id is None
            and expires is None
            and _plain(options)
        ):
            sent = self._send_plain(name, args, kwargs, task)
            if sent is not None:
                return sent
        args, kwargs = list(args or ()), dict(kwargs or {})
        message, queue, priority = self.prepare_message(
            name,
            args,
            kwargs,
            task,
            countdown=countdown,
            eta=eta,
            task_id=task_id,
            expires=expires,
            **options,
        )
        self.publish(message, queue, priority)
        parent = options.get("parent")
        result = AsyncResult(message.id, task_name=name, app=cast("Celery", self), parent=parent)
        result.ignored = bool(message.headers.get("ignore_result"))
        request = _state.current_request()
        if (
            request is not None
            and not request.called_directly
            and request.id != message.id  # a retry is not its own child
            and options.get("add_to_parent", True)
            and (task is None or task.trail)
        ):
            # Sent from inside a task: one of its children (``AsyncResult.children``).
            request.__dict__.setdefault("children", []).append(result)
        return result

    def _send_plain(
        self, name: str, args: Any, kwargs: Any, task: BaseTask[Any, Any]
    ) -> AsyncResult | None:
        """``delay()``'s common case, the same message as :meth:`prepare_message` builds in
        a third of its time: no options, no routes, no publish signal receivers, not sent
        from a running task. None when this send needs the general path."""
        conf = self.conf
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
        ignore_result = None if ignore_result is None else bool(ignore_result)
        options = MessageOptions(
            task_id=uuid(),
            queue=queue,
            serializer=task.option("serializer"),
            priority=priority,
            time_limit=task.time_limit,
            soft_time_limit=task.soft_time_limit,
            ignore_result=ignore_result,
        )
        message = build_message(name, tuple(args or ()), dict(kwargs or {}), options)
        self.broker.publish_now(queue, message.encode(), priority)
        self.queues_used.add(queue)
        result = AsyncResult(options.task_id, task_name=name, app=cast("Celery", self))
        result.ignored = bool(ignore_result)
        return result

    def prepare_message(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        task: BaseTask[Any, Any] | None,
        **options: Any,
    ) -> tuple[TaskMessage, str, int]:
        """Route and build one message without sending it (groups send many at once)."""
        message_options = _message_options()
        route = {}
        if options.get("queue") is None and (task is None or task.queue is None):
            route = lookup_route(self.conf.task_routes, name, args, kwargs, options, task)
        msg_options = message_options(self, name, task, route, options)
        message = build_message(name, args, kwargs, msg_options)
        return message, msg_options.queue, msg_options.priority or 0

    def publish(self, message: TaskMessage, queue: str, priority: int) -> None:
        self.publish_many([(message, queue, priority)])

    def publish_many(self, prepared: Sequence[tuple[TaskMessage, str, int]]) -> None:
        """Publish messages from ``prepare_message`` together: one pipelined round of
        Redis commands for a whole group, however large."""
        outgoing = [self.outgoing(*item) for item in prepared]
        if outgoing:
            if self.conf.task_send_sent_event:
                self.events.task_sent(prepared)  # before the publish: sent precedes received
            self.broker.publish(outgoing)
        for message, queue, _ in prepared:
            self.queues_used.add(queue)
            self.published(message, queue)

    def outgoing(self, message: TaskMessage, queue: str, priority: int) -> OutgoingMessage:
        """The broker's view of a prepared message, after ``before_task_publish``."""
        signals.before_task_publish.send(
            sender=message.task,
            body=_body_of(message, signals.before_task_publish),
            exchange="",
            routing_key=queue,
            headers=message.headers,
            properties=message.properties,
            declare=[],
            retry_policy=None,
        )
        eta = message.headers.get("eta")
        eta_epoch = dt.datetime.fromisoformat(eta).timestamp() if eta else None
        return OutgoingMessage(queue, message.encode(), priority, eta_epoch)

    def published(self, message: TaskMessage, queue: str) -> None:
        """``after_task_publish``, once the broker has the message."""
        signals.after_task_publish.send(
            sender=message.task,
            headers=message.headers,
            body=_body_of(message, signals.after_task_publish),
            exchange="",
            routing_key=queue,
        )


#: What ``apply_async`` passes on to ``send_task`` whether given or not (None when not).
_ALWAYS_PASSED = frozenset({"link", "link_error", "shadow"})


def _plain(options: dict[str, Any]) -> bool:
    """Whether ``options`` are only what ``apply_async`` always passes, all None (an
    explicit ``time_limit=None`` is an option: it clears the task's limit)."""
    for key, value in options.items():
        if value is not None or key not in _ALWAYS_PASSED:
            return False
    return True


def _body_of(message: TaskMessage, signal: signals.Signal) -> Any:
    """The message body as Celery's publish signals give it, ``(args, kwargs, embed)``;
    decoded only when someone listens, so a send without receivers pays nothing."""
    if not signal.has_receivers():
        return None
    return message.decode_body(frozenset({message.content_type}))


@functools.cache
def _message_options() -> Callable[..., Any]:
    """The canvas's option builder, imported once on first use: the canvas sits above the
    app, and an import statement on every send cost a few percent of ``delay()``."""
    from ..canvas.options import message_options

    return message_options
