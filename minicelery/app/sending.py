"""Sending tasks: route, build and publish task messages (``send_task`` and the steps a
group uses to publish many messages in one round)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from .. import _state, signals
from ..aio.outbox import DEFERRED
from ..broker import OutgoingMessage
from ..message import TaskMessage, build_message
from ..registry import TaskRegistry
from ..result import AsyncResult
from ..routing import lookup_route
from ..task import Task as BaseTask
from .connections import Connections
from .plain import plain_options, send_plain

if TYPE_CHECKING:
    from ..aio.client import AioClient
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
            and plain_options(options)
        ):
            sent = send_plain(cast("Celery", self), name, args, kwargs, task)
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

    @property
    def aio(self) -> AioClient:
        """The asyncio client of this app in the running event loop (made on first use)."""
        from ..aio.client import client_for

        return client_for(cast("Celery", self))

    async def asend_task(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """:meth:`send_task` for asyncio code: the same message, published without blocking
        the event loop."""
        return await self.aio.send(functools.partial(self.send_task, name, args, kwargs, **options))

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
        deferred = DEFERRED.get()
        if outgoing:
            if self.conf.task_send_sent_event:
                self.events.task_sent(prepared)  # before the publish: sent precedes received
            if deferred is None:
                self.broker.publish(outgoing)
            else:  # an asyncio send: published once this returns, without blocking the loop
                deferred.messages.extend(outgoing)
        for message, queue, _ in prepared:
            self.queues_used.add(queue)
            if deferred is None:
                self.published(message, queue)
            else:
                deferred.after.append(functools.partial(self.published, message, queue))

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
