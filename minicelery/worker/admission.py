"""Reserved messages on their way into the pool: what is buffered, what a rate limit let
through, and retries held back behind their last attempt. It decides what runs next; the
main loop starts it."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

from ..broker import Delivery
from ..exceptions import MessageError
from ..message import decode_message
from .pool import Job
from .state import Gate

RUN, REVOKED = Gate.RUN, Gate.REVOKED


class Admission:
    """The jobs a worker holds but has not started. ``to_job`` turns a delivery into a job
    (None when it cannot run and went elsewhere); ``rate_limit_of`` names a task's limit."""

    def __init__(
        self,
        gate: Gate,
        to_job: Callable[[Delivery], Job | None],
        rate_limit_of: Callable[[str], Any],
    ) -> None:
        self.gate = gate
        self.to_job = to_job
        self.rate_limit_of = rate_limit_of
        self.buffer: collections.deque[Delivery] = collections.deque()
        self.ready: collections.deque[Job] = collections.deque()  # due after a rate limit
        self.held_back: list[Job] = []  # retries that came before their last attempt ended

    def waiting(self) -> int:
        """Jobs waiting for their rate limit or their last attempt (not buffered ones)."""
        return len(self.gate) + len(self.ready) + len(self.held_back)

    def waiting_jobs(self) -> list[Job]:
        """Every held message not started yet, as jobs (for ``inspect reserved``)."""
        buffered = []
        for delivery in self.buffer:
            try:
                buffered.append(Job(delivery, decode_message(delivery.data), False, False))
            except MessageError:
                continue  # dead-lettered when its turn comes
        return [*self.ready, *self.held_back, *self.gate.waiting(), *buffered]

    def next(self, running: Iterable[Job]) -> tuple[str, Job] | None:
        """The next job and the gate's verdict on it (``RUN``, ``REVOKED`` or waiting for
        its rate limit), or None when nothing can start now."""
        self.ready.extend(self.gate.due())
        running_ids = {job.message.id for job in running}
        while True:
            job = self._next_job()
            if job is None:
                return None
            if job.message.id in running_ids:
                # A retry published from inside a task can reach this worker before that
                # attempt has reported: it waits, so the task's states and events stay in
                # order (RETRY before the new STARTED).
                self.held_back.append(job)
                continue
            return self.gate.admit(job, self.rate_limit_of(job.message.task)), job

    def _next_job(self) -> Job | None:
        if self.ready:
            return self.ready.popleft()
        while self.buffer:
            job = self.to_job(self.buffer.popleft())
            if job is not None:
                return job
        return None

    def release(self, task_id: str) -> None:
        """The attempt of ``task_id`` ended: a retry held back behind it may run now."""
        if not self.held_back:
            return
        kept: list[Job] = []
        for held in self.held_back:
            (self.ready if held.message.id == task_id else kept).append(held)
        self.held_back = kept

    def take_all(self) -> list[str]:
        """Empty it; the tags of every message it held (to give back to their queues)."""
        waiting = [*self.ready, *self.held_back, *self.gate.take_all()]
        tags = [job.delivery.tag for job in waiting] + [d.tag for d in self.buffer]
        self.ready.clear()
        self.held_back = []
        self.buffer.clear()
        return tags
