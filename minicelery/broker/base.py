"""The broker interface: bytes on named queues, a scheduled set, a dead-letter store.

A broker never imports task, app, canvas or worker code; it only moves opaque message bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mailbox import Mailbox


@dataclass(frozen=True)
class Delivery:
    """One reserved message: held by its consumer until acked, requeued or dead-lettered."""

    tag: str
    queue: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to publish: to ``queue`` now, or at ``eta`` (epoch seconds) when given."""

    queue: str
    data: bytes
    priority: int = 0
    eta: float | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A message the worker could not run, kept with the reason until replayed or purged."""

    id: str
    task: str
    reason: str
    when: float
    queue: str
    data: bytes


class Broker(ABC):
    """Reliable queues: a reserved message stays owned by its consumer until acked; the
    messages of a consumer whose heartbeats stop are given back to their queues."""

    @abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Enqueue (or schedule) messages in as few round trips as possible."""

    def publish_now(self, queue: str, data: bytes, priority: int | None = 0) -> None:
        """Enqueue one message now: :meth:`publish` without the list around it (``delay()``
        calls this once per task)."""
        self.publish([OutgoingMessage(queue, data, priority or 0)])

    @abstractmethod
    def reserve(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> list[Delivery]:
        """Move up to ``count`` messages, highest priority first, into ``consumer``'s hold,
        acknowledging the deliveries ``ack`` in the same step."""

    @abstractmethod
    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a message may be available on ``queues`` (or ``timeout``)."""

    def wait_start(
        self, queues: Sequence[str], timeout: float, reserve_for: tuple[str, int] | None = None,
        after: Sequence[tuple[tuple[Any, ...], Any]] = (),
    ) -> int | None:  # fmt: skip
        """Start :meth:`wait` without blocking and return a file descriptor that becomes
        readable when it ends; None if this broker cannot (callers then use ``wait``). With
        ``reserve_for=(consumer, count)`` the reserve that follows a wake-up is chained to the
        wait, so it runs the moment the wait ends, and the commands ``after`` behind it (each
        reply to its callback, as :meth:`wait_finish` reads them)."""
        return None

    def reserve_start(
        self, consumer: str, queues: Sequence[str], count: int, ack: Sequence[str] = ()
    ) -> int | None:
        """Send a :meth:`reserve` (acknowledging ``ack`` first) without waiting for it and
        return a file descriptor that becomes readable when its reply is there (read with
        :meth:`wait_finish`); None if this broker cannot (callers then use ``reserve``)."""
        return None

    def wait_finish(self) -> list[Delivery] | None:
        """End a wait started by :meth:`wait_start` or a reserve started by
        :meth:`reserve_start`; the messages their reserve took (none without one), or None
        while part of the reply is still to come (watch the descriptor again)."""
        raise NotImplementedError

    def wait_abort(self) -> None:  # noqa: B027 - optional, most brokers have nothing to do
        """Abandon a wait started by :meth:`wait_start`."""

    @abstractmethod
    def ack(self, consumer: str, tags: Sequence[str]) -> None:
        """Forget delivered messages for good."""

    @abstractmethod
    def requeue(self, consumer: str, tags: Sequence[str]) -> int:
        """Give held messages back to the front of their queues at once."""

    def redeliver(self, consumer: str, tag: str, data: bytes) -> int:
        """Give held message ``tag`` back to the front of its queue as ``data`` (the same
        message marked as redelivered). A broker that cannot swap the bytes requeues them
        as they were."""
        return self.requeue(consumer, [tag])

    @abstractmethod
    def bump(self, name: str, ttl: float) -> int:
        """Increment the counter ``name`` (kept ``ttl`` seconds after its last change)."""

    @abstractmethod
    def held(self, consumer: str) -> list[str]:
        """The tags ``consumer`` holds (reserved, not yet acknowledged)."""

    @abstractmethod
    def heartbeat(self, consumer: str) -> None:
        """Record that ``consumer`` is alive."""

    @abstractmethod
    def unregister(self, consumer: str) -> int:
        """Requeue whatever ``consumer`` still holds and forget it (clean shutdown)."""

    @abstractmethod
    def recover_lost(self, lost_after: float) -> int:
        """Requeue the messages of consumers silent for ``lost_after`` seconds; return count."""

    @abstractmethod
    def move_due(self, now: float, limit: int = 1000) -> int:
        """Move scheduled messages whose time has come onto their queues; return count."""

    @abstractmethod
    def next_due(self) -> float | None:
        """The epoch time of the earliest scheduled message, if any."""

    @abstractmethod
    def wait_schedule_change(self, timeout: float) -> None:
        """Block until a message is scheduled (or ``timeout``)."""

    @abstractmethod
    def dead_letter(self, consumer: str, delivery: Delivery, letter: DeadLetter) -> None:
        """Move a held message to the dead-letter store."""

    @abstractmethod
    def dead_letters(self) -> list[DeadLetter]:
        """The dead-letter store, oldest first."""

    @abstractmethod
    def replay_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on their queues."""

    @abstractmethod
    def purge_dead(self) -> int:
        """Empty the dead-letter store; return how many were removed."""

    @abstractmethod
    def purge(self, queues: Sequence[str]) -> int:
        """Delete all waiting messages on ``queues``; return how many."""

    @abstractmethod
    def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Waiting messages per queue."""

    @abstractmethod
    def ping(self) -> None:
        """Raise OperationalError unless the broker answers."""

    def mailbox(self) -> Mailbox:
        """The remote-control channel and the revoked-task set (see ``broker.mailbox``)."""
        raise NotImplementedError(f"{type(self).__name__} has no remote control")

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
