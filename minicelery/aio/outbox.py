"""Publishing deferred to an awaited step: while an outbox is open in the current context,
the app's sync sending code (``apply_async``, ``send_task``, a canvas's ``apply_async``)
builds its messages as always but leaves them here instead of sending them, and the asyncio
client then publishes them without blocking the loop. No asyncio import here."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..broker.base import OutgoingMessage


@dataclass
class Outbox:
    """Messages built but not yet published, and what to run once they are
    (``after_task_publish``, in the order of sending)."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)


#: The open outbox of this context (an asyncio task's own), or None: send at once.
DEFERRED: ContextVar[Outbox | None] = ContextVar("minicelery_deferred_publish", default=None)
