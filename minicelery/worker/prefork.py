"""The prefork pool: N child processes, each fed one job at a time over its own pipe, so a
busy child never holds a message an idle one could run."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from . import forkserver
from .channel import Channel
from .child import DONE, EVENTS, READY, RESULTS, STOP, ChildRunner, child_main, encode_job
from .forkexec import ExecForkServer
from .pool import Done, Event, Job, Lost, Pool, Results, Wake, Waker
from .spawning import Spawner

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)

KILL_AFTER = 5.0
WATCHED = object()  # selector data marking the broker connection
SERVER = object()  # selector data marking the exec'd fork server's socket


@dataclass
class Child:
    index: int
    pid: int
    conn: Channel
    job: Job | None = None
    ready: bool = False
    soft_sent: bool = False
    retiring: bool = False  # leaves after its current job (a shrink or a restart)


class PreforkPool(Pool):
    """Forks children, feeds them, notices when one dies and replaces it."""

    def __init__(
        self,
        app: Celery,
        concurrency: int,
        runner: ChildRunner,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self.app = app
        self.concurrency = concurrency
        self.runner = runner
        # One selector for the pool's lifetime: building one per wait costs more than a task.
        self.selector = selectors.DefaultSelector()
        self._waker_fd: int | None = None
        self._watched: set[int] = set()
        self.children: dict[int, Child] = {}
        self._next_index = 1
        self._stopping = False
        self.max_tasks_per_child = max_tasks_per_child
        self._task_counts: dict[int, int] = {}
        self.max_memory_per_child = max_memory_per_child  # KiB, checked by the child itself
        self.relay_events: Callable[[list[bytes]], None] | None = None  # with -E
        self.boot: ExecForkServer | None = None  # set when the app can be imported by name
        self.spawner: Spawner | None = None

    def start(self) -> None:
        """Start the first fork server (before the worker starts any thread), then the
        children."""
        self.spawner = Spawner(self._child_entry, self._fork_here, self.boot)
        self.spawner.on_watch = self._watch_server
        self.spawner.start()
        for _ in range(self.concurrency):
            self._spawn()

    def _child_entry(self, sock: socket.socket, index: int) -> int:
        """A child's life, in a process the forked fork server forked (and named)."""
        return self._child_life(Channel(sock), index, [])

    def _child_life(self, conn: Channel, index: int, inherited: list[Channel]) -> int:
        """Run in the child after fork: its loop, until it exits (the exit code)."""
        return child_main(self.app, conn, index, self.runner, [*inherited],
                          self.max_memory_per_child)  # fmt: skip

    def _spawn(self) -> None:
        """Ask for one more child: born now, or when a starting fork server is ready."""
        index = self._next_index
        self._next_index += 1
        assert self.spawner is not None
        for born in self.spawner.spawn(index):
            self._add_child(*born)

    def _watch_server(self, new: int | None, old: int | None) -> None:
        """Follow the exec'd fork server's socket (``new``), or stop following it."""
        if old is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(old)
        if new is not None:
            self.selector.register(new, selectors.EVENT_READ, SERVER)

    def _fork_here(self, index: int, parent_conn: Channel, child_conn: Channel) -> int:
        """Fork a child from this process (where there is no fork server); its PID."""
        inherited = [c.conn for c in self.children.values()]
        # Block signals across fork so the child never runs the parent's handlers before it
        # has installed its own.
        old = signal.pthread_sigmask(
            signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD}
        )
        main = os.getpid()
        pid = os.fork()
        if pid == 0:
            forkserver.die_with_parent(main)
            parent_conn.close()
            code = 1
            try:
                code = self._child_life(child_conn, index, inherited)
            except BaseException:
                logger.exception("child %d crashed", index)
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        child_conn.close()
        return pid

    def _add_child(self, index: int, pid: int, parent_conn: Channel) -> Child:
        child = Child(index, pid, parent_conn)
        self.children[pid] = child
        self.selector.register(parent_conn.fileno(), selectors.EVENT_READ, child)
        self._task_counts[pid] = 0
        return child

    def _idle(self) -> list[Child]:
        return [c for c in self.children.values() if c.job is None and c.ready and not c.retiring]

    def idle_slots(self) -> int:
        return len(self._idle())

    def busy_jobs(self) -> list[Job]:
        return [c.job for c in self.children.values() if c.job is not None]

    def pids(self) -> list[int]:
        return list(self.children)

    def submit(self, job: Job) -> bool:
        child = self._idle()[0]
        try:
            child.conn.send_bytes(
                encode_job(job.delivery.queue, job.delivery.data, job.event_fields)
            )
        except OSError:
            # It died and has not been reaped yet (its channel's end is read later): it
            # gets no more jobs, and this one goes to another.
            child.ready = False
            return False
        job.started = time.monotonic()
        job.slot = child.pid
        child.job = job
        child.soft_sent = False
        return True

    def next_deadline(self) -> float | None:
        deadlines = []
        for child in self.children.values():
            job = child.job
            if job is None:
                continue
            if job.soft_time_limit and not child.soft_sent:
                deadlines.append(job.started + job.soft_time_limit)
            if job.time_limit:
                deadlines.append(job.started + job.time_limit)
        return min(deadlines) if deadlines else None

    def _watch(self, fds: Sequence[int]) -> None:
        """Keep the selector watching exactly ``fds`` (broker connections)."""
        wanted = set(fds)
        for fd in self._watched - wanted:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
        for fd in wanted - self._watched:
            self.selector.register(fd, selectors.EVENT_READ, WATCHED)
        self._watched = wanted

    def wait(self, timeout: float, waker: Waker, watch: Sequence[int] = ()) -> list[Event]:
        if self._waker_fd is None:
            self._waker_fd = waker.read_fd
            self.selector.register(waker.read_fd, selectors.EVENT_READ, None)
        self._watch(watch)
        deadline = self.next_deadline()
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        events: list[Event] = []
        for key, _ in self.selector.select(timeout):
            child = key.data
            if child is WATCHED:
                events.append(Wake(key.fd))
            elif child is None:
                waker.drain()
            elif child is SERVER and self.spawner is not None:
                if self._stopping:  # a warm shutdown began: no child is wanted any more
                    self.spawner.drop()
                for born in self.spawner.readable():
                    self._add_child(*born)
            elif isinstance(child, Child) and child.pid in self.children:
                events.extend(self._read(child))
        events.extend(self._enforce_time_limits())
        return events

    def _read(self, child: Child) -> list[Event]:
        try:
            frames = child.conn.recv_ready()
        except (EOFError, OSError):
            return self._reap(child)
        events: list[Event] = []
        for frame in frames:
            events.extend(self._on_frame(child, frame))
        return events

    def _on_frame(self, child: Child, frame: bytes) -> list[Event]:
        if frame == READY:
            child.ready = True
            return []
        if frame[:1] == RESULTS:
            return [Results([tuple(r) for r in msgpack.unpackb(frame[1:])])]
        if frame[:1] == EVENTS:
            if self.relay_events is not None:
                self.relay_events(msgpack.unpackb(frame[1:]))
            return []
        job = child.job
        child.job = None
        if job is None or frame[:1] != DONE:
            return []
        state, requeue, dead_reason, info, records, over_memory = msgpack.unpackb(frame[1:])
        self._task_counts[child.pid] += 1
        if child.retiring or over_memory or (
            self.max_tasks_per_child and self._task_counts[child.pid] >= self.max_tasks_per_child
        ):
            self._retire(child)
        return [Done(job, state, requeue, dead_reason, [tuple(r) for r in records], info)]

    def _retire(self, child: Child) -> None:
        child.retiring = True  # never handed another job: it may read STOP first
        with contextlib.suppress(OSError):
            child.conn.send_bytes(STOP)

    def _reap(self, child: Child, timed_out: bool = False) -> list[Event]:
        """A child's pipe closed: collect its exit status, replace it, report its job lost."""
        self.children.pop(child.pid, None)
        self._task_counts.pop(child.pid, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(child.conn.fileno())
        child.conn.close()
        exitcode = _waitpid(child.pid)
        while not self._stopping and self._serving() < self.concurrency:
            self._spawn()
        if child.job is None:
            if exitcode and not self._stopping:
                logger.warning(
                    "Idle process 'ForkPoolWorker-%d' pid:%d exited with %s",
                    child.index,
                    child.pid,
                    _describe(exitcode),
                )
            return []
        if not timed_out:
            logger.error(
                "Process 'ForkPoolWorker-%d' pid:%d exited with %s",
                child.index,
                child.pid,
                _describe(exitcode),
            )
        return [Lost(child.job, exitcode, timed_out)]

    def _enforce_time_limits(self) -> list[Event]:
        now = time.monotonic()
        events: list[Event] = []
        for child in list(self.children.values()):
            job = child.job
            if job is None:
                continue
            if job.time_limit and now >= job.started + job.time_limit:
                logger.error(
                    "Hard time limit (%ss) exceeded for %s[%s]",
                    job.time_limit,
                    job.message.task,
                    job.message.id,
                )
                _kill(child.pid, signal.SIGKILL)
                events.extend(self._reap(child, timed_out=True))
            elif (
                job.soft_time_limit
                and not child.soft_sent
                and now >= job.started + job.soft_time_limit
            ):
                logger.warning(
                    "Soft time limit (%ss) exceeded for %s[%s]",
                    job.soft_time_limit,
                    job.message.task,
                    job.message.id,
                )
                child.soft_sent = True
                _kill(child.pid, signal.SIGUSR1)
        return events

    def stop(self, cold: bool = False) -> list[Event]:
        """Ask idle children to exit (a cold stop kills busy ones); escalate to SIGKILL for
        any still alive after a grace period."""
        self._stopping = True
        self._watch(())
        if self.spawner is not None:  # no child is forked from now on
            self.spawner.stop()
        events: list[Event] = []
        for child in list(self.children.values()):
            if cold and child.job is not None:
                _kill(child.pid, signal.SIGKILL)
            else:
                with contextlib.suppress(OSError):
                    child.conn.send_bytes(STOP)
        deadline = time.monotonic() + KILL_AFTER
        while self.children:
            ready = self.selector.select(max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for key, _ in ready:
                child = key.data
                if isinstance(child, Child) and child.pid in self.children:
                    events.extend(self._read(child))
        for child in list(self.children.values()):  # did not exit in time: escalate
            _kill(child.pid, signal.SIGKILL)
            events.extend(self._reap(child))
        return events

    def _serving(self) -> int:
        waiting = len(self.spawner.pending) if self.spawner is not None else 0
        return waiting + sum(not child.retiring for child in self.children.values())

    def grow(self, n: int) -> int:
        self.concurrency += n
        while self._serving() < self.concurrency:
            self._spawn()
        return self.concurrency

    def shrink(self, n: int) -> int:
        """Retire ``n`` children, idle ones first; busy ones leave after their job."""
        n = min(n, self.concurrency - 1)
        self.concurrency -= n
        if self.spawner is not None:  # children still waiting for a server go first
            self.spawner.cancel(self._serving() - self.concurrency)
        serving = sorted(
            (c for c in self.children.values() if not c.retiring), key=lambda c: c.job is not None
        )
        for child in serving[: max(0, len(serving) - self.concurrency)]:
            child.retiring = True
            if child.job is None:
                self._retire(child)
        return self.concurrency

    def restart(self, modules: Sequence[str] = (), reload: bool = False) -> None:
        """Replace every child, after importing ``modules`` where children are forked
        (re-importing them with ``reload``)."""
        if self.spawner is not None and modules:
            self.spawner.load(list(modules), reload)
        for child in list(self.children.values()):
            if not child.retiring:
                child.retiring = True
                if child.job is None:
                    self._retire(child)
        while self._serving() < self.concurrency:
            self._spawn()

    def terminate(self, job: Job, signum: int) -> bool:
        if not isinstance(job.slot, int) or job.slot not in self.children:
            return False
        _kill(job.slot, signum)
        return True

    def info(self) -> dict[str, Any]:
        return {"max-concurrency": self.concurrency, "processes": self.pids()}


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _waitpid(pid: int) -> int | None:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def _describe(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown status"
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exitcode {exitcode}"
