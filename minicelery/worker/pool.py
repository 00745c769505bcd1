"""Execution pools behind one small interface: prefork (child processes), threads, solo.

The main process hands a job to an idle slot and hears back when it is done or lost; a pool
never talks to the broker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import states
from ..broker import Delivery
from ..message import TaskMessage

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """A message on its way through the pool."""

    delivery: Delivery
    message: TaskMessage
    acks_late: bool
    reject_on_worker_lost: bool
    acks_on_failure: bool = True  # acks_on_failure_or_timeout
    time_limit: float | None = None
    soft_time_limit: float | None = None
    started: float = 0.0
    wall_started: float = 0.0
    slot: Any = None
    event_fields: bool = False  # task events are on: the pool adds their fields
    announced: bool = False  # "received" logged, signalled and sent as an event
    hold: str | None = None  # whose hold has the message: a consuming child's; None: ours


@dataclass
class Done:
    """A job finished: its state, whether to requeue it, a dead-letter reason if any, and the
    result records its process left for the main process to store."""

    job: Job
    state: str
    requeue: bool = False
    dead_reason: str | None = None
    results: list[tuple[str, bytes]] = field(default_factory=list)
    info: dict[str, Any] | None = None  # the task event's fields (with -E): result, runtime...


@dataclass
class Results:
    """Result records a running job wants stored now (STARTED, PROGRESS...)."""

    results: list[tuple[str, bytes]]


@dataclass
class Lost:
    """The process running a job died (killed, crashed, or past its hard time limit)."""

    job: Job
    exitcode: int | None
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Wake:
    """A broker connection watched alongside the pool (``fd``) has something to read."""

    fd: int


@dataclass
class Released:
    """A consuming child is gone: what it still holds goes back to its queues, after ``ack``
    (the tag of a task it ran that was due to be acknowledged when it started)."""

    consumer: str
    ack: list[str] = field(default_factory=list)
    tags: list[str] | None = None  # only these go back (a child's unstarted batch); [] none
    records: list[tuple[str, bytes]] = field(default_factory=list)  # stored before the acks


Event = Done | Lost | Results | Wake | Released
Runner = Callable[[Job], Done]


class Waker:
    """A self-pipe: other threads and signal handlers wake the main loop through it."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self) -> None:
        # A full pipe means the loop is already awake; a closed one means it is shutting down.
        with contextlib.suppress(OSError):
            os.write(self.write_fd, b"x")

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class Pool(ABC):
    """Slots that run jobs; ``wait`` returns finished or lost jobs."""

    concurrency: int

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def idle_slots(self) -> int: ...

    @abstractmethod
    def busy_jobs(self) -> list[Job]: ...

    @abstractmethod
    def submit(self, job: Job) -> bool:
        """Start ``job`` in an idle slot; False if that slot turned out dead (try again)."""

    @abstractmethod
    def wait(self, timeout: float, waker: Waker, watch: Sequence[int] = ()) -> list[Event]:
        """Finished or lost jobs (and a ``Wake`` for each readable fd of ``watch``), waiting
        up to ``timeout`` seconds for the first."""

    @abstractmethod
    def stop(self, cold: bool = False) -> list[Event]:
        """Stop all slots; a cold stop kills running jobs and returns them as Lost."""

    def info(self) -> dict[str, Any]:
        return {"max-concurrency": self.concurrency}

    def terminate(self, job: Job, signum: int) -> bool:
        """Send ``signum`` to the process running ``job``; False where jobs have none."""
        return False

    def grow(self, n: int) -> int:
        """Add ``n`` slots; returns the new size. Only the prefork pool resizes."""
        raise NotImplementedError(f"the {type(self).__name__} cannot be resized")

    def shrink(self, n: int) -> int:
        """Remove ``n`` slots (never the last); returns the new size."""
        raise NotImplementedError(f"the {type(self).__name__} cannot be resized")

    def restart(self, modules: Sequence[str] = (), reload: bool = False) -> None:
        """Replace every slot, after importing ``modules`` (re-importing with ``reload``)."""
        raise NotImplementedError(f"the {type(self).__name__} cannot be restarted")

    def pids(self) -> list[int]:
        return [os.getpid()]

    consumes = False  # whether the slots reserve their messages themselves (off the loop)

    def quiesce(self) -> list[Event]:
        """A warm shutdown begins: slots that consume stop taking messages, and what they
        reserved but did not start goes back (as events to handle)."""
        return []

    def unstarted(self) -> int:
        """Messages consuming slots reserved and have not started (0: the main process
        holds every reserved message itself)."""
        return 0

    def waiting_jobs(self) -> list[Job]:
        """Those messages, as jobs (``inspect reserved``)."""
        return []

    def attach(self, worker: Any) -> None:
        """Follow what the worker decides for the slots (consuming children: revokes, rate
        limits); nothing for slots the main process feeds itself."""
        return None

    def reconfigure(self, change: dict[str, Any]) -> None:
        """Tell consuming children of a remote command's change (``queues``: the queues to
        read; ``limits``: ``{task name: [soft, hard]}``); the main process applies it."""
        return None

    def forward_revoked(self, task_ids: list[str]) -> None:
        """Tell slots that check revokes themselves (consuming children) of these ids."""
        return None

    def forward_stamps(self, headers: dict[str, Any], news_id: str | None = None) -> None:
        """Tell those slots of these revoked stamps (``{stamp name: value or values}``; the
        revoke's ``news_id``, when its client gave one, says which revoke it was)."""
        return None

    def processed(self) -> int:
        """Tasks the slots ran that the main process did not see end (consuming children)."""
        return 0

    def task_totals(self) -> dict[str, int]:
        """Those tasks by name (``inspect stats``' total)."""
        return {}

    def hold_ids(self) -> tuple[str, ...]:
        """Consumer ids the worker keeps alive besides its own (consuming children)."""
        return ()


class ThreadPool(Pool):
    """Jobs run in threads of the main process (``-P threads``, and ``-P solo`` with one)."""

    def __init__(self, concurrency: int, runner: Runner) -> None:
        self.concurrency = concurrency
        self.runner = runner
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._done: queue.Queue[Done] = queue.Queue()
        self._busy: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._waker: Waker | None = None

    def start(self) -> None:
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._work, name=f"ThreadPoolWorker-{index + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                done = self.runner(job)
            except Exception:  # a bug of ours must not cost the pool a thread
                logger.exception("Pool thread failed to run %s", job.message.id)
                done = Done(job, states.FAILURE)
            with self._lock:
                self._busy.pop(id(job), None)
            self._done.put(done)
            if self._waker is not None:
                self._waker.wake()

    def idle_slots(self) -> int:
        with self._lock:
            return self.concurrency - len(self._busy)

    def busy_jobs(self) -> list[Job]:
        with self._lock:
            return list(self._busy.values())

    def submit(self, job: Job) -> bool:
        job.started = time.monotonic()
        with self._lock:
            self._busy[id(job)] = job
        self._jobs.put(job)
        return True

    def wait(self, timeout: float, waker: Waker, watch: Sequence[int] = ()) -> list[Event]:
        self._waker = waker
        events: list[Event] = []
        if self._done.empty():
            ready, _, _ = select.select([waker.read_fd, *watch], [], [], max(timeout, 0))
            events.extend(Wake(fd) for fd in watch if fd in ready)
        waker.drain()
        while not self._done.empty():
            events.append(self._done.get_nowait())
        return events

    def stop(self, cold: bool = False) -> list[Event]:
        for _ in self._threads:
            self._jobs.put(None)
        if cold:
            # Threads cannot be killed; report their jobs as lost and let the process exit.
            return [Lost(job, None) for job in self.busy_jobs()]
        for thread in self._threads:
            thread.join()
        return []
