"""The worker's writes that are not a plain result and ack: requeues, dead letters, the
records and workflow steps of revoked and lost tasks, and the check of the worker's hold
after a lost reply. They run in order on a thread of their own, each retried with backoff
until Redis takes it, so the main loop that supervises the pool never waits on Redis.

Every errand is safe to run again after a failure part-way (a requeue of a tag no longer
held, a result stored twice, an ack repeated), which is what makes retrying it whole safe.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..exceptions import OperationalError
from .consumer import Backoff

logger = logging.getLogger("minicelery.worker")


@dataclass
class Errand:
    """One ordered write: ``run`` does it; ``holds`` is how many messages it will take out
    of the worker's hold (they count against the prefetch window until then)."""

    what: str
    run: Callable[[], object]
    holds: int = 0


class Errands:
    """A FIFO of errands and the thread that runs them. ``inline`` runs each at once in the
    caller instead (an in-process broker, which cannot hang: tests stay deterministic)."""

    def __init__(self, wake: Callable[[], None], inline: bool = False) -> None:
        self.wake = wake  # the main loop's, called after each errand that released messages
        self.inline = inline
        self._queue: collections.deque[Errand] = collections.deque()
        self._cond = threading.Condition()
        self._running: Errand | None = None
        self._stopping = False
        self._backoff = Backoff("worker writes")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.inline or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._thread.start()

    def add(self, what: str, run: Callable[[], object], holds: int = 0) -> None:
        errand = Errand(what, run, holds)
        if self.inline or self._thread is None:
            self._run_inline(errand)
            return
        with self._cond:
            self._queue.append(errand)
            self._cond.notify()

    def _run_inline(self, errand: Errand) -> None:
        try:
            errand.run()
        except OperationalError as exc:
            logger.error("Could not %s: %s", errand.what, exc)

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + (self._running is not None)

    def holding(self) -> int:
        """Messages still in the hold that queued errands will release."""
        with self._cond:
            running = self._running.holds if self._running is not None else 0
            return running + sum(errand.holds for errand in self._queue)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                self._running = self._queue[0]
            self._run_until_done(self._running)
            with self._cond:
                self._queue.popleft()
                self._running = None
                self._cond.notify_all()
            self.wake()

    def _run_until_done(self, errand: Errand) -> None:
        while True:
            try:
                errand.run()
                self._backoff.succeeded()
                return
            except OperationalError as exc:
                delay = self._backoff.failed(exc)
            except Exception:
                logger.exception("Worker write failed for good: %s", errand.what)
                return
            with self._cond:
                if self._stopping:
                    return  # shutting down while Redis is away: the rest is given up
                self._cond.wait(delay)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued errand to be done (shutdown);
        False if some were not, and are given up (logged)."""
        if self._thread is None:
            return True
        with self._cond:
            done = self._cond.wait_for(lambda: not self._queue, timeout)
            self._stopping = True
            left = len(self._queue)
            self._cond.notify_all()
        if not done:
            logger.error(
                "Redis did not take %d pending write(s) before shutdown; the messages still "
                "held are recovered by another worker after worker_lost_timeout",
                left,
            )
        self._thread.join(timeout=1.0)
        return bool(done)
