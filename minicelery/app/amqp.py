"""``app.amqp``: the app's view of its queues, by Celery's name (``celery.app.amqp``).

On Redis a queue is just a name; ``queues`` lists the default queue and every queue this app
has published to, as Celery's router declares a missing queue when it first routes there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Celery


@dataclass(frozen=True)
class Queue:
    """A queue by name; ``routing_key`` is the name too (there are no exchanges on Redis)."""

    name: str
    exchange: str = ""

    @property
    def routing_key(self) -> str:
        return self.name


class Queues(dict[str, Queue]):
    """Queue name → :class:`Queue`, as Celery's ``app.amqp.queues``."""

    def add(self, name: str) -> Queue:
        """The queue ``name``, added if it is new."""
        queue = self.get(name)
        if queue is None:
            queue = self[name] = Queue(name)
        return queue


class AMQP:
    """Celery's ``app.amqp``, reduced to what has a meaning on Redis."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    @property
    def queues(self) -> Queues:
        queues = Queues()
        queues.add(self.app.conf.task_default_queue)
        for name in sorted(self.app.queues_used):
            queues.add(name)
        return queues

    @property
    def default_queue(self) -> Queue:
        return Queue(self.app.conf.task_default_queue)
