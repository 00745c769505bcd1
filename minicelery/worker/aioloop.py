"""The event loop of a prefork child that runs ``async def`` tasks: one long-lived loop in a
thread of its own, started at the child's first async task, so that many coroutines wait
at once and a sync task that blocks the child's own thread never freezes them.

The child's own thread reserves and settles: it hands coroutines over with
:meth:`AioLoop.submit` and takes their ends back with :meth:`AioLoop.take`, woken by
:attr:`AioLoop.wake_fd`, a pipe its ``select()`` watches. It holds :attr:`AioLoop.lock`
except while it runs a sync task: then the loop thread takes the lock and settles the ends
itself (:attr:`AioLoop.on_ended`), so a sync task that blocks does not hold them up.
This module imports asyncio, so it is imported only when a child meets its first async
task."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded


@dataclass
class Ended:
    """How one coroutine ended: its value, or what it raised, and how long it ran."""

    key: str
    value: Any
    exc: BaseException | None
    runtime: float
    cancelled: bool = False  # by cancel() (a revoke), not by a time limit


class AioLoop:
    """One child's event loop thread; see the module docstring."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ended: queue.SimpleQueue[Ended] = queue.SimpleQueue()
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self.in_flight = 0  # touched under the lock only
        self.lock = threading.Lock()
        self.lock.acquire()  # the child's own thread's, but while it runs a sync task
        self.on_ended: Callable[[], None] = lambda: None
        self._settle_due = False
        self.tasks: dict[str, asyncio.Task[None]] = {}  # the loop thread's only
        self.thread = threading.Thread(target=self._run, name="async-tasks", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(
        self,
        key: str,
        coro: Coroutine[Any, Any, Any],
        limits: tuple[float | None, float | None] = (None, None),
    ) -> None:
        """Start ``coro`` on the loop; ``limits`` are the hard and soft time limits,
        enforced here since the main process's kill would end every task of the child."""
        self.in_flight += 1
        self.loop.call_soon_threadsafe(self._start, key, coro, limits)

    def cancel(self, key: str) -> None:
        """Cancel a running coroutine (``revoke(terminate=True)``)."""
        self.loop.call_soon_threadsafe(self._cancel, key)

    def _cancel(self, key: str) -> None:
        task = self.tasks.get(key)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Stop the loop and its thread (a child that exits needs not: the thread dies
        with it)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
        os.close(self.wake_fd)
        os.close(self._wake_w)

    def take(self) -> list[Ended]:
        """The coroutines that ended since the last look (called when ``wake_fd`` reads)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_fd, 4096):
                pass
        ended: list[Ended] = []
        while True:
            try:
                ended.append(self.ended.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(ended)
        return ended

    # -- the loop thread ------------------------------------------------------------------
    def _start(
        self,
        key: str,
        coro: Coroutine[Any, Any, Any],
        limits: tuple[float | None, float | None],
    ) -> None:
        task = self.loop.create_task(self._guard(key, coro, limits))
        self.tasks[key] = task
        task.add_done_callback(lambda done: self._never_ran(key, coro, done))

    def _never_ran(
        self, key: str, coro: Coroutine[Any, Any, Any], task: asyncio.Task[None]
    ) -> None:
        """Cancelled before its first step (a revoke right behind it), ``_guard`` never
        ran to report it: it ends cancelled all the same."""
        if task.cancelled():
            self.tasks.pop(key, None)
            coro.close()
            self._report(Ended(key, None, asyncio.CancelledError(), 0.0, True))

    async def _guard(
        self,
        key: str,
        coro: Coroutine[Any, Any, Any],
        limits: tuple[float | None, float | None],
    ) -> None:
        started = time.perf_counter()
        timers = _arm(self.loop, self.tasks[key], limits)
        value: Any = None
        exc: BaseException | None = None
        try:
            value = await _SoftLimited(coro)
        except asyncio.CancelledError as stopped:
            exc = _cancelled_as(stopped)
        except BaseException as error:  # the task's own error: the child reports it
            exc = error
        finally:
            for timer in timers:
                timer.cancel()
            self.tasks.pop(key, None)
        runtime = time.perf_counter() - started
        self._report(Ended(key, value, exc, runtime, isinstance(exc, asyncio.CancelledError)))

    def _report(self, ended: Ended) -> None:
        """Hand an end to the child's thread and wake it."""
        self.ended.put(ended)
        with contextlib.suppress(BlockingIOError):  # full of wake-ups already
            os.write(self._wake_w, b"!")
        if not self._settle_due:  # once for all the tasks that end in this turn
            self._settle_due = True
            self.loop.call_soon(self._settle)

    def _settle(self) -> None:
        """Settle what ended if the child's own thread runs a sync task (it has let the
        lock go); else it settles them itself, woken by ``wake_fd``."""
        self._settle_due = False
        if self.lock.acquire(blocking=False):
            try:
                self.on_ended()
            finally:
                self.lock.release()


_SOFT = "soft:"
_HARD = "hard:"


def _arm(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[None],
    limits: tuple[float | None, float | None],
) -> list[asyncio.TimerHandle]:
    """Timers for the time limits: both cancel the task with a message saying which;
    :class:`_SoftLimited` turns the soft one into SoftTimeLimitExceeded in the coroutine."""
    hard, soft = limits
    timers = []
    if soft:
        timers.append(loop.call_later(soft, task.cancel, f"{_SOFT}{soft}"))
    if hard:
        timers.append(loop.call_later(hard, task.cancel, f"{_HARD}{hard}"))
    return timers


def _cancelled_as(cancelled: asyncio.CancelledError) -> BaseException:
    """What a cancelled coroutine ended with: TimeLimitExceeded after its hard limit, else
    the CancelledError itself (a revoke that terminated it)."""
    message = cancelled.args[0] if cancelled.args else ""
    if isinstance(message, str) and message.startswith(_HARD):
        return TimeLimitExceeded(float(message[len(_HARD) :]))
    return cancelled


class _SoftLimited:
    """Awaits a coroutine as ``await`` would, but a cancellation sent for the soft time
    limit reaches it as SoftTimeLimitExceeded, raised where it waits: it may catch it and
    clean up, as a sync task does in Celery."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                step = coro.send(sent) if thrown is None else coro.throw(thrown)
            except StopIteration as stop:
                return stop.value
            sent, thrown = None, None
            try:
                sent = yield step
            except asyncio.CancelledError as cancelled:
                thrown = _soft_or(cancelled)
            except BaseException as other:
                thrown = other


def _soft_or(cancelled: asyncio.CancelledError) -> BaseException:
    message = cancelled.args[0] if cancelled.args else ""
    if isinstance(message, str) and message.startswith(_SOFT):
        uncancel = getattr(asyncio.current_task(), "uncancel", None)
        if uncancel is not None:  # Python 3.11+
            uncancel()  # handled: asyncio.timeout() inside the task still works
        return SoftTimeLimitExceeded("SoftTimeLimitExceeded()")  # as a sync task's
    return cancelled
