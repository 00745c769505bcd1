"""Remote control of a beat (``beat_enable_remote_control``): a ``celerybeat@host`` node on the
workers' command channel that answers ``ping``, so ``inspect ping`` (and a liveness probe)
reaches beat too, and that falls silent once the scheduler has stopped ticking."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import msgpack

from ..exceptions import OperationalError
from ..utils.nodenames import default_nodename, host_format

if TYPE_CHECKING:
    from ..broker.mailbox import Listener
    from .service import Service

logger = logging.getLogger(__name__)

NODENAME_DEFAULT = "celerybeat"
DEFAULT_MAX_INTERVAL = 300.0
LISTEN_WAIT = 1.0


def beat_nodename(hostname: str | None = None) -> str:
    """The node name beat answers on: ``celerybeat@<host>`` by default; a name given
    expands ``%h``, ``%n`` and ``%d`` as ``worker -n`` does."""
    return host_format(default_nodename(hostname, NODENAME_DEFAULT))


class BeatPidbox:
    """Beat's node on the remote-control channel, in a thread of its own.

    Only ``ping`` is answered; other commands are for workers and are ignored (an error
    reply would pollute ``inspect active``). The node stops replying when the scheduler has
    not ticked for ``max_tick_age`` seconds: silence is what a probe can act on.
    """

    retry_interval = 5.0  # seconds before listening again after Redis went away
    join_timeout = 3.0
    min_tick_age = 60.0  # floor of the derived max_tick_age: one slow pass is no stall

    def __init__(self, service: Service) -> None:
        self.service = service
        self.app = service.app
        self.hostname = beat_nodename(service.hostname)
        self.handlers = {"ping": self._ping}
        self.thread: threading.Thread | None = None
        self._shutdown = threading.Event()

    @property
    def max_tick_age(self) -> float:
        """``beat_remote_control_max_tick_age``, else twice the scheduler's loop interval
        (at least ``min_tick_age``); 0 turns the check off."""
        configured = self.app.conf.beat_remote_control_max_tick_age
        if configured is not None:
            return float(configured)
        interval = self.service.effective_max_interval or DEFAULT_MAX_INTERVAL
        return max(interval * 2, self.min_tick_age)

    def tick_age(self) -> float | None:
        """Seconds since the scheduler's last pass (None before the first)."""
        last_tick = self.service._last_tick  # one float, written by the scheduler's thread
        return None if last_tick is None else time.monotonic() - last_tick

    def is_stale(self) -> bool:
        limit = self.max_tick_age
        age = self.tick_age()
        return bool(limit) and age is not None and age > limit

    def _ping(self) -> dict[str, str]:
        return {"ok": "pong"}

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self._shutdown.clear()
        self.thread = threading.Thread(target=self._loop, name="BeatPidbox", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._shutdown.set()
        if self.thread is None:
            return
        self.thread.join(timeout=self.join_timeout)
        if self.thread.is_alive():
            logger.warning("beat pidbox: the listening thread did not stop in %ss (a daemon, "
                           "it will not hold up exit)", self.join_timeout)  # fmt: skip
        else:
            self.thread = None

    def _loop(self) -> None:
        listener: Listener | None = None
        while not self._shutdown.is_set():
            try:
                if listener is None:
                    listener = self.app.broker.mailbox().listen()
                    logger.info("beat pidbox: listening as %s", self.hostname)
                data = listener.get(LISTEN_WAIT)
            except OperationalError as exc:
                logger.error("beat pidbox: %s; listening again in %ss", exc, self.retry_interval)
                self._close(listener)
                listener = None
                self._shutdown.wait(self.retry_interval)
                continue
            if data is not None:
                self.on_message(data)
        self._close(listener)

    @staticmethod
    def _close(listener: Listener | None) -> None:
        if listener is not None:
            listener.close()

    def on_message(self, data: bytes) -> None:
        """Answer a command addressed to this node (or to all) that beat knows."""
        try:
            command = msgpack.unpackb(data)
            method, destination = command.get("method"), command.get("destination")
        except Exception:
            return
        if method not in self.handlers or (destination and self.hostname not in destination):
            return
        if self.is_stale():
            logger.warning(
                "beat pidbox: not answering %s, the scheduler has not ticked for %.1fs "
                "(over the %ss limit).", method, self.tick_age(), self.max_tick_age,
            )  # fmt: skip
            return
        self._reply(command.get("ticket"), self.handlers[method]())

    def _reply(self, ticket: Any, value: Any) -> None:
        if not ticket:
            return
        try:
            self.app.broker.mailbox().reply(ticket, msgpack.packb({self.hostname: value}))
        except OperationalError as exc:
            logger.error("beat pidbox: could not reply: %s", exc)
