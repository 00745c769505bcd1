"""The events a worker sends with ``-E`` (``worker_send_task_events``): task-received,
started, succeeded, failed, retried, revoked and rejected, and worker-online, heartbeat and
offline, with Celery's fields. Its main process sends them all, from what it already knows
plus a few fields the pool process adds to its outcome (:func:`outcome_fields`)."""

from __future__ import annotations

import logging
import os
import platform
import reprlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import states
from .dispatcher import BatchingDispatcher

if TYPE_CHECKING:
    from ..app import Celery
    from ..message import TaskMessage

logger = logging.getLogger(__name__)

SW_IDENT = "py-minicelery"
REPR_LIMIT = 1024

_repr = reprlib.Repr()
_repr.maxstring = 512
_repr.maxother = 512
_repr.maxlevel = 4
_PLAIN = (int, float, bool, type(None))


def short_repr(value: Any) -> str:
    """A bounded repr: what Celery's events carry for results and exceptions."""
    if isinstance(value, _PLAIN) or (isinstance(value, str) and len(value) <= REPR_LIMIT):
        return repr(value)
    text = _repr.repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


def outcome_fields(
    state: str, runtime: float, retval: Any, exc: BaseException | None, traceback: str | None
) -> dict[str, Any] | None:
    """What a pool process sends back, with its outcome, for the main process's event
    (only computed when events are on)."""
    if state == states.SUCCESS:
        return {"result": short_repr(retval), "runtime": runtime}
    if state in (states.FAILURE, states.RETRY):
        reason = getattr(exc, "exc", None) if state == states.RETRY else None
        return {
            "exception": short_repr(reason or exc),
            "traceback": traceback,
            "runtime": runtime,
        }
    if state == states.REVOKED:
        return {"expired": str(exc) == "expired"}
    return None


def software_info() -> dict[str, Any]:
    from .. import __version__

    return {"sw_ident": SW_IDENT, "sw_ver": __version__, "sw_sys": platform.system()}


class WorkerEvents:
    """One worker's events. ``stats()`` gives ``(active, processed)`` for heartbeats, which
    a thread sends every ``freq`` seconds alongside the batched task events."""

    def __init__(
        self,
        app: Celery,
        hostname: str,
        freq: float,
        stats: Callable[[], tuple[int, int]],
        pool: Any = None,
    ) -> None:
        self.hostname = hostname
        self.freq = freq
        self.stats = stats
        self.dispatcher = BatchingDispatcher(
            hostname=hostname, app=app, tick=self.heartbeat, tick_every=freq
        )
        self._software = software_info()
        if getattr(pool, "shared_clock", None) is not None:  # children that send events too
            self.dispatcher.clock = pool.shared_clock
        self._active = 0
        self.task_events = True
        # Events sent by tasks (a retry's task-sent, custom events) join this worker's
        # queue: from pool processes over their pipe, from pool threads directly.
        if hasattr(pool, "relay_events"):
            pool.relay_events = self.dispatcher.relay
        else:
            app.events.relay_to(self.dispatcher.relay)

    def start(self) -> None:
        """worker-online, then heartbeats every ``freq`` seconds (call after forking).
        worker-online is sent before this returns, so it is in the stream before the worker
        says it is ready and before any task sent to it after that."""
        self._worker_event("worker-online")
        self.dispatcher.start()
        self.dispatcher.flush()

    def stop(self) -> None:
        """worker-offline, and everything still queued sent before returning."""
        self._worker_event("worker-offline")
        self.dispatcher.stop()

    def heartbeat(self) -> None:
        self._worker_event("worker-heartbeat")

    def _worker_event(self, kind: str) -> None:
        try:
            active, processed = self.stats()
            self._active = active
        except RuntimeError:  # the pool changed under this thread's feet: last known
            active, processed = self._active, 0
        self.dispatcher.send(
            kind,
            freq=self.freq,
            active=active,
            processed=processed,
            loadavg=_loadavg(),
            **self._software,
        )

    # -- tasks -------------------------------------------------------------------------
    def _task(self, kind: str, **fields: Any) -> None:
        # Task events can be switched off and on at runtime (disable_events/enable_events);
        # worker-online, heartbeats and worker-offline go on regardless, as in Celery.
        if self.task_events:
            self.dispatcher.send(kind, **fields)

    def received(self, message: TaskMessage) -> None:
        h = message.headers
        self._task(
            "task-received",
            uuid=message.id,
            name=message.task,
            args=h.get("argsrepr"),
            kwargs=h.get("kwargsrepr"),
            root_id=h.get("root_id"),
            parent_id=h.get("parent_id"),
            retries=h.get("retries") or 0,
            eta=h.get("eta"),
            expires=h.get("expires"),
        )

    def started(self, message: TaskMessage, pid: int | None) -> None:
        self._task("task-started", uuid=message.id, pid=pid or os.getpid())

    def finished(
        self, message: TaskMessage, state: str, info: dict[str, Any] | None, requeue: bool = False
    ) -> None:
        """The pool's outcome: succeeded, failed, retried, revoked (expired) or rejected."""
        kind = _FINISHED.get(state)
        if kind == "task-revoked":
            self.revoked(message, None, expired=bool((info or {}).get("expired")))
        elif kind == "task-rejected":
            self.rejected(message, requeue)
        elif kind is not None:
            self._task(kind, uuid=message.id, **(info or {}))

    def revoked(self, message: TaskMessage, signum: int | None, expired: bool = False) -> None:
        self._task(
            "task-revoked",
            uuid=message.id,
            terminated=signum is not None,
            signum=signum,
            expired=expired,
        )

    def rejected(self, message: TaskMessage, requeue: bool) -> None:
        self._task("task-rejected", uuid=message.id, requeue=requeue)

    def failed(self, message: TaskMessage, exc: BaseException) -> None:
        """A task whose process was lost (killed, or past its hard time limit)."""
        self._task(
            "task-failed", uuid=message.id, exception=short_repr(exc), traceback=None
        )


_FINISHED = {
    states.SUCCESS: "task-succeeded",
    states.FAILURE: "task-failed",
    states.RETRY: "task-retried",
    states.REVOKED: "task-revoked",
    states.REJECTED: "task-rejected",
}


def _loadavg() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []
