"""Monitoring events, as Celery's ``celery.events``: ``app.events.Dispatcher``,
``app.events.Receiver``, ``app.events.State``, carried by one Redis stream per key prefix
(see ``events/stream.py``)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .dispatcher import BatchingDispatcher, EventDispatcher
from .event import Event, anon_nodename, group_from
from .receiver import EventReceiver
from .state import State

if TYPE_CHECKING:
    from ..app import Celery
    from ..message import TaskMessage


class Events:
    """``app.events``: the dispatcher, receiver and state classes bound to the app, and the
    client's ``task-sent`` events (with ``task_send_sent_event``)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._clients: tuple[int, dict[str | None, EventDispatcher]] = (os.getpid(), {})
        self._sink: tuple[int, Callable[[list[bytes]], None] | None] = (os.getpid(), None)

    @property
    def Dispatcher(self) -> Any:  # Celery's names
        return functools.partial(EventDispatcher, app=self.app)

    @property
    def Receiver(self) -> Any:
        return functools.partial(EventReceiver, app=self.app)

    @property
    def State(self) -> type[State]:
        return State

    @contextlib.contextmanager
    def default_dispatcher(
        self, hostname: str | None = None, enabled: bool = True, **options: Any
    ) -> Iterator[EventDispatcher]:
        """This process's dispatcher signing as ``hostname`` (``gen<pid>@host`` if None)."""
        if not enabled:
            yield EventDispatcher(hostname=hostname, enabled=False, app=self.app)
            return
        yield self.client_dispatcher(hostname)

    def client_dispatcher(self, hostname: str | None = None) -> EventDispatcher:
        """This process's own dispatcher for ``hostname`` (a forked child makes its own)."""
        if self._clients[0] != os.getpid():
            self._clients = (os.getpid(), {})
        dispatchers = self._clients[1]
        dispatcher = dispatchers.get(hostname)
        if dispatcher is None:
            dispatcher = dispatchers[hostname] = EventDispatcher(hostname=hostname, app=self.app)
            dispatcher.sink = self._sink[1] if self._sink[0] == os.getpid() else None
        return dispatcher

    def relay_to(self, sink: Callable[[list[bytes]], None] | None) -> None:
        """In a worker with events on, this process's own events (task-sent of the tasks a
        task sends, a task's custom events) go to ``sink``, which hands them to the
        worker's dispatcher: then every event of one worker arrives in the order it
        happened (a task's events after its task-started, before its task-succeeded)."""
        self._sink = (os.getpid(), sink)
        for dispatcher in self._clients[1].values() if self._clients[0] == os.getpid() else ():
            dispatcher.sink = sink

    def task_sent(self, prepared: Sequence[tuple[TaskMessage, str, int]]) -> None:
        """``task-sent`` for messages about to be published: sent first, in one round trip,
        so a monitor never sees a task received before it was sent."""
        dispatcher = self.client_dispatcher()
        events = []
        for message, queue, _ in prepared:
            h = message.headers
            event = dispatcher.make(
                "task-sent",
                {
                    "uuid": message.id,
                    "name": message.task,
                    "args": h.get("argsrepr"),
                    "kwargs": h.get("kwargsrepr"),
                    "retries": h.get("retries") or 0,
                    "eta": h.get("eta"),
                    "expires": h.get("expires"),
                    "queue": queue,
                    "exchange": "",
                    "routing_key": queue,
                    "root_id": h.get("root_id"),
                    "parent_id": h.get("parent_id"),
                },
            )
            if event is not None:
                events.append(event)
        if events:
            dispatcher.publish(events)


__all__ = [
    "BatchingDispatcher",
    "Event",
    "EventDispatcher",
    "EventReceiver",
    "Events",
    "State",
    "anon_nodename",
    "group_from",
]
