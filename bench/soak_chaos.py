"""The chaos driver of the soak: at seeded random intervals it SIGKILLs a pool child or a
worker's main process (and restarts that worker), restarts Redis (``SHUTDOWN NOSAVE`` or
SIGKILL, then the same port and AOF), or freezes Redis with SIGSTOP for a while.

It writes down every process it kills, with the time, so that the report can tell a task
that ran twice because its worker died (allowed) from one that ran twice beside a live
worker (a bug). While it disturbs Redis it holds ``publish_gate``, so the soak's client does
not publish into an outage: a publish that timed out might still land, and a resend would
then be a duplicate of the client's making, not the worker's.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field

from bench.soak_procs import DurableRedis, Workers
from tests.helpers import kill_pid

logger = logging.getLogger("bench.soak")

CHILD, WORKER, REDIS, HANG = "child", "worker", "redis", "hang"
WEIGHTS = {CHILD: 5, WORKER: 2, REDIS: 2, HANG: 2}


@dataclass
class ChaosPlan:
    """What the driver may do and how often (seconds)."""

    seed: int = 1
    interval: tuple[float, float] = (4.0, 12.0)
    hang: tuple[float, float] = (10.0, 60.0)
    down: tuple[float, float] = (0.2, 3.0)  # how long Redis stays down in a restart
    hangs: bool = True
    max_events: int | None = None


@dataclass
class ChaosLog:
    """What the driver did, for the report."""

    killed_children: dict[int, float] = field(default_factory=dict)  # pid -> time
    killed_mains: dict[int, float] = field(default_factory=dict)
    orphans: dict[int, float] = field(default_factory=dict)  # children of a killed main
    counts: dict[str, int] = field(default_factory=dict)
    redis_down_s: float = 0.0
    events: list[str] = field(default_factory=list)
    died: list[str] = field(default_factory=list)  # the output of workers that exited

    def note(self, kind: str, text: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = time.time()
        line = f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} {text}"
        self.events.append(line)
        logger.info("chaos: %s", text)


class ChaosDriver(threading.Thread):
    """Runs the plan until ``stop()``; every action leaves the system running again."""

    def __init__(self, plan: ChaosPlan, server: DurableRedis, workers: Workers) -> None:
        super().__init__(name="chaos", daemon=True)
        self.plan = plan
        self.server = server
        self.workers = workers
        self.log = ChaosLog()
        self.publish_gate = threading.Lock()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._random = random.Random(plan.seed)
        self._kinds = [kind for kind in WEIGHTS if plan.hangs or kind != HANG]

    def stop(self) -> None:
        self._stopping.set()

    @property
    def finite(self) -> bool:
        """Whether the plan ends by itself (``max_events``)."""
        return self.plan.max_events is not None

    def run(self) -> None:
        try:
            for kind in self._schedule():
                if self._stopping.wait(self._random.uniform(*self.plan.interval)):
                    return
                self.revive()
                self._act(kind)
        except BaseException as exc:  # reported by the soak, which then stops
            logger.exception("chaos driver failed")
            self.error = exc

    def _schedule(self) -> list[str]:
        """Every kind once first (in a random order), then a weighted random draw."""
        first = list(self._kinds)
        self._random.shuffle(first)
        total = self.plan.max_events if self.plan.max_events is not None else 100_000
        weights = [WEIGHTS[kind] for kind in self._kinds]
        rest = self._random.choices(self._kinds, weights, k=max(0, total - len(first)))
        return (first + rest)[:total]

    def _act(self, kind: str) -> None:
        if kind == CHILD:
            self.kill_child()
        elif kind == WORKER:
            self.kill_worker()
        elif kind == REDIS:
            self.restart_redis()
        else:
            self.hang_redis(self._random.uniform(*self.plan.hang))

    def revive(self) -> None:
        """Restart any worker that exited by itself (a bug the report names), so the soak
        goes on with all of them."""
        for slot, worker in enumerate(self.workers.current):
            if worker.is_alive():
                continue
            self.log.died.append(worker.describe(tail=40))
            self.log.note("died", f"worker {slot + 1} ({worker.pid}) exited by itself with "
                                  f"code {worker.returncode}; restarting it")  # fmt: skip
            self.workers.restart(slot)

    def kill_child(self) -> None:
        slot = self._random.randrange(len(self.workers.current))
        children = self.workers.children(slot)
        if not children:
            self.log.note("child-skipped", f"worker {slot + 1} has no child to kill")
            return
        pid = self._random.choice(children)
        if kill_pid(pid, signal.SIGKILL):
            self.log.killed_children[pid] = time.time()
            self.log.note(CHILD, f"SIGKILL child {pid} of worker {slot + 1}")

    def kill_worker(self) -> None:
        slot = self._random.randrange(len(self.workers.current))
        pid, orphans = self.workers.kill_main(slot)
        now = time.time()
        self.log.killed_mains[pid] = now
        self.log.orphans.update((child, now) for child in orphans)
        self.log.note(WORKER, f"SIGKILL worker {slot + 1} main process {pid} "
                              f"(orphans {orphans}); restarting it")  # fmt: skip
        worker = self.workers.restart(slot)
        self.log.note("restart", f"worker {slot + 1} back as {worker.pid}")

    def restart_redis(self) -> None:
        nosave = self._random.random() < 0.5
        down = self._random.uniform(*self.plan.down)
        with self.publish_gate:
            started = time.monotonic()
            self.log.note(REDIS, f"redis {'SHUTDOWN NOSAVE' if nosave else 'SIGKILL'}, "
                                 f"down {down:.1f}s")  # fmt: skip
            self.server.crash(nosave)
            self._stopping.wait(down)
            self.server.start(timeout=60)
            self.log.redis_down_s += time.monotonic() - started

    def hang_redis(self, seconds: float) -> None:
        with self.publish_gate:
            self.log.note(HANG, f"redis SIGSTOP for {seconds:.1f}s")
            self.server.freeze()
            try:
                # Not cut short by stop(): the soak waits for a hang to end like any other.
                time.sleep(seconds)
            finally:
                self.server.thaw()
                self.log.redis_down_s += seconds
            self.server.wait_answering(timeout=60)
