"""The worker's end of remote control: a thread listens on the command channel and queues
commands for this worker; the main loop runs them between tasks (so no handler races the
loop) and sends replies. Handlers live in ``worker.commands``; users add their own with
Celery's ``control_command`` / ``inspect_command`` decorators, defined here as in Celery."""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ..exceptions import OperationalError
from . import commands
from .consumer import Backoff

if TYPE_CHECKING:
    from ..broker.mailbox import Listener, Mailbox
    from .controller import WorkController

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
        self._reading = threading.Lock()  # one reader of the subscription at a time
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None
        # Written to by stop(): the listener's select() returns at once instead of at the
        # end of its LISTEN_WAIT, so a shutdown does not wait for it.
        self._wake_pipe: tuple[int, int] | None = None

    def start(self) -> None:
        """Subscribe, then load the revoked set (in that order: see ``Listener``). Raises
        OperationalError if Redis is unreachable, like the worker's first ping."""
        self._connect()
        self._wake_pipe = os.pipe()
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
                if self._wait_readable(LISTEN_WAIT):
                    self._take()
                else:
                    self._read_unwatched(LISTEN_WAIT)
                backoff.succeeded()
            except OperationalError as exc:
                with self._reading:
                    self._drop_listener()
                self._stopping.wait(backoff.failed(exc))

    def _wait_readable(self, timeout: float) -> bool:
        """Wait for the subscription's socket to have data (without reading it); False when
        there is no socket to watch (an in-process server, or a connection being lost)."""
        listener = self._listener
        fd = listener.fileno() if listener is not None else None
        if fd is None:
            return False
        watched = [fd] if self._wake_pipe is None else [fd, self._wake_pipe[0]]
        try:
            select.select(watched, [], [], timeout)
        except (OSError, ValueError) as exc:
            raise OperationalError(f"the remote control subscription failed: {exc}") from exc
        return True

    def _read_unwatched(self, timeout: float) -> None:
        """Wait for a command by reading (the in-process server), or find the connection
        lost (an OperationalError)."""
        listener = self._listener
        data = listener.get(timeout) if listener is not None else None
        if data is not None:
            self._accept(data)

    def _take(self) -> None:
        """Accept every command received so far. One reader at a time: the listener thread,
        or the main loop catching up."""
        with self._reading:
            if self._listener is not None:
                for data in self._listener.drain():
                    self._accept(data)

    def catch_up(self) -> None:
        """Take the commands already received before this returns.

        Called when tasks arrive: a command published before a task was sent (a revoke, then
        the task) is on the subscription's socket by the time the task reaches the worker,
        and must be obeyed before that task starts. Never waits for Redis: it reads what is
        there (or waits for the listener thread to finish reading it)."""
        try:
            self._take()
        except OperationalError as exc:  # the listener thread reconnects
            logger.debug("Remote control catch-up failed: %s", exc)

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
        if self._wake_pipe is not None:
            os.write(self._wake_pipe[1], b"\0")
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._drop_listener()
        if self._wake_pipe is not None and not (self._thread and self._thread.is_alive()):
            for end in self._wake_pipe:
                os.close(end)
            self._wake_pipe = None


# -- commands registered by users ---------------------------------------------------------
class ControlState:
    """What a user's command receives first, as Celery's handlers receive their ``state``:
    ``state.app``, ``state.hostname``, and ``state.consumer`` (here the worker itself, which
    has the ``app``, ``hostname``, ``pool`` and ``queues`` a command usually needs)."""

    def __init__(self, worker: WorkController) -> None:
        self.worker = worker
        self.consumer = worker
        self.app = worker.app
        self.hostname = worker.hostname


def _register(
    kind: str,
    name: str | None,
    args: Sequence[tuple[str, Any]] | None,
    signature: str | None,
    visible: bool,
    help: str | None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        info = commands.CommandInfo(
            name or func.__name__, kind, tuple(args or ()), signature, visible,
            help or (func.__doc__ or "").strip().split("\n")[0] or None,
        )  # fmt: skip

        def handler(worker: WorkController, **arguments: Any) -> Any:
            return func(ControlState(worker), **arguments)

        commands.register(info, handler)
        return func

    return decorator


def control_command(
    name: str | None = None,
    args: Sequence[tuple[str, Any]] | None = None,
    signature: str | None = None,
    visible: bool = True,
    help: str | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a remote-control command every worker of this process answers::

        @control_command(args=[('n', int)], signature='[N=1]')
        def increase_prefetch_count(state, n=1):
            ...

    The function receives a :class:`ControlState` and the command's arguments; its return
    value is the reply (``app.control.broadcast(name, arguments={...}, reply=True)``)."""
    return _register("control", name, args, signature, visible, help)


def inspect_command(
    name: str | None = None,
    args: Sequence[tuple[str, Any]] | None = None,
    signature: str | None = None,
    visible: bool = True,
    help: str | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an inspect command (read-only by convention), as :func:`control_command`."""
    return _register("inspect", name, args, signature, visible, help)


def _worker_of(state: ControlState | WorkController) -> WorkController:
    return state.worker if isinstance(state, ControlState) else state


def add_consumer(state: ControlState | WorkController, queue: str, **kwargs: Any) -> Any:
    """Start consuming from ``queue`` (the built-in command, callable from a user's own)."""
    return commands.HANDLERS["add_consumer"](_worker_of(state), queue=queue, **kwargs)


def cancel_consumer(state: ControlState | WorkController, queue: str, **kwargs: Any) -> Any:
    """Stop consuming from ``queue`` (the built-in command, callable from a user's own)."""
    return commands.HANDLERS["cancel_consumer"](_worker_of(state), queue=queue, **kwargs)
