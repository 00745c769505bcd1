"""``--autoscale=MAX,MIN``: grow the pool while reserved messages wait for a slot, shrink it
back once it has had spare processes for ``worker_autoscale_keepalive`` seconds."""

from __future__ import annotations

import logging
import time

from .pool import Pool

logger = logging.getLogger("minicelery.worker")

CHECK_EVERY = 0.1  # seconds between looks; each look is a few comparisons


class Autoscaler:
    """Sizes ``pool`` between ``min_procs`` and ``max_procs`` from the worker's backlog."""

    def __init__(self, pool: Pool, max_procs: int, min_procs: int, keepalive: float) -> None:
        if not 0 < min_procs <= max_procs:
            raise ValueError(f"autoscale needs 0 < MIN <= MAX, got {max_procs},{min_procs}")
        self.pool = pool
        self.max_procs = max_procs
        self.min_procs = min_procs
        self.keepalive = keepalive
        self._last_up = time.monotonic()
        self._next_check = 0.0

    def update(self, max_procs: int | None = None, min_procs: int | None = None) -> None:
        """The remote ``autoscale`` command: new bounds, applied at the next look."""
        self.max_procs = max_procs or self.max_procs
        self.min_procs = min(min_procs or self.min_procs, self.max_procs)
        self._next_check = 0.0

    def step(self, waiting: int) -> None:
        """Look at the backlog (``waiting`` reserved messages not yet started)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY
        busy = len(self.pool.busy_jobs())
        wanted = min(max(busy + waiting, self.min_procs), self.max_procs)
        procs = self.pool.concurrency
        if wanted > procs:
            self.pool.grow(wanted - procs)
            self._last_up = now
            logger.info("Autoscaler: grew the pool to %d processes", self.pool.concurrency)
        elif busy + waiting >= procs:
            self._last_up = now  # every process is needed: the keepalive starts again
        elif wanted < procs and now - self._last_up > self.keepalive:
            self.pool.shrink(procs - wanted)
            logger.info("Autoscaler: shrank the pool to %d processes", self.pool.concurrency)
