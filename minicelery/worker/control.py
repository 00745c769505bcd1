"""The worker's end of remote control: a thread listens on the command channel and queues
commands for this worker; the main loop runs them between tasks (so no handler races the
loop) and sends replies. Handlers live in ``worker.commands``."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from ..exceptions import OperationalError
from .consumer import Backoff

if TYPE_CHECKING:
    from ..broker.mailbox import Listener, Mailbox

logger = logging.getLogger(__name__)

LISTEN_WAIT = 1.0


class ControlServer:
    """Receives broadcast commands addressed to ``hostname`` (or to everyone)."""

    def __init__(
        self,
        mailbox: Mailbox,
        hostname: str,
        wake: Callable[[], None],
        on_revoked: Callable[[dict[str, float]], None],
    ) -> None:
        self.mailbox = mailbox
        self.hostname = hostname
        self.wake = wake
        self.on_revoked = on_revoked
        # Appended by the listener thread, emptied by the main loop: deque operations are
        # atomic, and an empty one costs the loop a length check, not an exception.
        self.commands: collections.deque[dict[str, Any]] = collections.deque()
        self._stopping = threading.Event()
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Subscribe, then load the revoked set (in that order: see ``Listener``). Raises
        OperationalError if Redis is unreachable, like the worker's first ping."""
        self._connect()
        self._thread = threading.Thread(target=self._listen, name="remote-control", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        self._listener = self.mailbox.listen()
        self.on_revoked(self.mailbox.revoked())

    def _listen(self) -> None:
        backoff = Backoff("remote control")
        while not self._stopping.is_set():
            try:
                if self._listener is None:
                    self._connect()
                assert self._listener is not None
                data = self._listener.get(LISTEN_WAIT)
                backoff.succeeded()
            except OperationalError as exc:
                self._drop_listener()
                self._stopping.wait(backoff.failed(exc))
                continue
            if data is not None:
                self._accept(data)

    def _accept(self, data: bytes) -> None:
        try:
            command = msgpack.unpackb(data)
            destination = command.get("destination")
            method = command["method"]
        except Exception:
            logger.warning("Ignored a malformed remote control command")
            return
        if destination and self.hostname not in destination:
            return
        logger.debug("Remote control command %s received", method)
        self.commands.append(command)
        self.wake()

    def pending(self) -> list[dict[str, Any]]:
        """Commands received since the last call, oldest first."""
        found: list[dict[str, Any]] = []
        while self.commands:
            found.append(self.commands.popleft())
        return found

    def reply(self, ticket: str, value: Any) -> None:
        try:
            self.mailbox.reply(ticket, msgpack.packb({self.hostname: value}, default=str))
        except OperationalError as exc:
            logger.error("Could not reply to a remote control command: %s", exc)

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def stop(self, timeout: float = LISTEN_WAIT + 5) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._drop_listener()
