"""What a worker's main process is told to change while it runs: by remote control (queues,
task events, shutdown, terminate) and by signals (warm and cold shutdown)."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Celery
    from ..events.worker import WorkerEvents
    from .consumer import Consumer
    from .options import WorkerOptions
    from .pool import Job, Pool, Waker

logger = logging.getLogger("minicelery.worker")


class Steering:
    """The part of :class:`~minicelery.worker.controller.WorkController` that changes its
    course at runtime; the loop reads the flags these set."""

    app: Celery
    options: WorkerOptions
    queues: list[str]
    pool: Pool
    events: WorkerEvents | None
    waker: Waker
    warm: bool
    cold: bool
    terminated: dict[str, int]

    @property
    def consumer(self) -> Consumer:
        raise NotImplementedError

    def _make_events(self) -> WorkerEvents:
        raise NotImplementedError

    def set_queues(self, queues: list[str]) -> None:
        """Read from these queues from now on (``add_consumer`` / ``cancel_consumer``); a
        wait already under way ends within a second and the next one uses them."""
        self.queues = queues
        self.consumer.queues = list(queues)
        self.pool.reconfigure({"queues": list(queues)})

    @property
    def task_events(self) -> bool:
        """Whether this worker sends task events now (``-E``, or ``enable_events``)."""
        return self.events is not None and self.events.task_events

    def set_task_events(self, on: bool) -> bool:
        """Switch task events on or off at runtime; False if they already were. The first
        switch on of a worker started without ``-E`` also starts its worker events
        (worker-online, heartbeats)."""
        if on == self.task_events:
            return False
        if self.events is None:
            self.events = self._make_events()
            self.events.start()
        self.events.task_events = on
        self.pool.reconfigure({"events": on})  # children that send their own events
        logger.info("Events of group {task} %s by remote.", "enabled" if on else "disabled")
        return True

    def request_stop(self) -> None:
        """A warm shutdown, as SIGTERM would start (the remote ``shutdown`` command)."""
        self.warm = True
        self.waker.wake()

    def terminate(self, job: Job, signum: int) -> None:
        """Stop a running job's process with ``signum`` (``revoke(terminate=True)``)."""
        task_id = job.message.id
        if self.pool.terminate(job, signum):
            self.terminated[task_id] = signum
            logger.info("Terminating %s (%s)", task_id, signal.Signals(signum).name)
        else:
            logger.warning("Cannot terminate %s: the %s pool has no process to stop",
                           task_id, self.options.pool)  # fmt: skip

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_cold_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        # Flag-only: the loop does the work. A second signal means "stop now".
        if self.warm:
            self.cold = True
        self.warm = True
        self.waker.wake()

    def _on_cold_signal(self, signum: int, frame: FrameType | None) -> None:
        self.warm = self.cold = True
        self.waker.wake()
