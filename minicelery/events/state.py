"""The cluster as events describe it (Celery's ``app.events.State``): workers with their last
heartbeat, tasks with their latest state and fields, kept in bounded memory."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import states

HEARTBEAT_EXPIRE_WINDOW = 2.0  # a worker silent for this many heartbeat periods is offline

# Event type -> the task state it means.
TASK_STATES = {
    "task-sent": states.PENDING,
    "task-received": states.RECEIVED,
    "task-started": states.STARTED,
    "task-succeeded": states.SUCCESS,
    "task-failed": states.FAILURE,
    "task-retried": states.RETRY,
    "task-revoked": states.REVOKED,
    "task-rejected": states.REJECTED,
}
# Later in a task's life wins when events of one run interleave (Celery's precedence).
PRECEDENCE = [
    states.PENDING,
    states.RECEIVED,
    states.REJECTED,
    states.RETRY,
    states.STARTED,
    states.REVOKED,
    states.FAILURE,
    states.SUCCESS,
]
# Where the event's own time is kept on the task (``task.succeeded`` is its time).
TIME_FIELDS = {kind: kind.split("-", 1)[1] for kind in TASK_STATES}
TASK_FIELDS = (
    "name", "args", "kwargs", "retries", "eta", "expires", "result", "exception", "traceback",
    "runtime", "exchange", "routing_key", "root_id", "parent_id", "queue", "pid", "terminated",
    "signum", "expired", "requeue",
)  # fmt: skip
BOOKKEEPING = frozenset(
    {"type", "uuid", "hostname", "timestamp", "utcoffset", "pid", "clock", "local_received"}
)
WORKER_FIELDS = ("freq", "sw_ident", "sw_ver", "sw_sys", "active", "processed", "loadavg", "pid")


@dataclass
class Worker:
    """A worker as its events show it; ``alive`` until its heartbeats stop."""

    hostname: str
    freq: float = 2.0
    sw_ident: str | None = None
    sw_ver: str | None = None
    sw_sys: str | None = None
    active: int | None = None
    processed: int | None = None
    loadavg: list[float] | None = None
    pid: int | None = None
    clock: int = 0
    heartbeats: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=4)
    )
    offline: bool = False

    @property
    def heartbeat_expires(self) -> float:
        last = self.heartbeats[-1] if self.heartbeats else 0.0
        return last + self.freq * HEARTBEAT_EXPIRE_WINDOW + 1.0

    @property
    def alive(self) -> bool:
        return bool(self.heartbeats) and not self.offline and time.time() < self.heartbeat_expires

    @property
    def status_string(self) -> str:
        return "ONLINE" if self.alive else "OFFLINE"

    def event(self, event: dict[str, Any]) -> None:
        for name in WORKER_FIELDS:
            if name in event:
                setattr(self, name, event[name])
        self.clock = max(self.clock, int(event.get("clock") or 0))
        self.offline = event["type"] == "worker-offline"
        if not self.offline:
            self.heartbeats.append(float(event.get("local_received") or event["timestamp"]))


@dataclass
class Task:
    """A task as its events show it: the latest state and every field seen so far."""

    uuid: str
    name: str | None = None
    state: str = states.PENDING
    worker: str | None = None
    client: str | None = None
    timestamp: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # ``task.result``, ``task.runtime``, ``task.succeeded``... as in Celery's Task.
        fields, times = self.__dict__.get("fields", {}), self.__dict__.get("times", {})
        if name in fields:
            return fields[name]
        if name in times or name in TIME_FIELDS.values():
            return times.get(name)
        if name in TASK_FIELDS:
            return None
        raise AttributeError(name)

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        new_state = TASK_STATES.get(kind)
        when = float(event.get("timestamp") or time.time())
        if kind in TIME_FIELDS:
            self.times[TIME_FIELDS[kind]] = when
        if new_state is not None and not _happened_before(new_state, self.state):
            self.state = new_state
            self.timestamp = when
        for name, value in event.items():
            if name not in BOOKKEEPING or (name == "pid" and kind == "task-started"):
                self.fields[name] = value
        if event.get("name"):
            self.name = event["name"]
        if kind == "task-sent":
            self.client = event.get("hostname")
        elif kind.startswith("task-") and event.get("hostname"):
            self.worker = event["hostname"]

    def info(self) -> dict[str, Any]:
        """The fields worth showing, as Celery's ``Task.info()``."""
        return {k: v for k, v in self.fields.items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "state": self.state,
                "worker": self.worker, **self.times, **self.fields}  # fmt: skip


def _happened_before(incoming: str, current: str) -> bool:
    """Whether ``incoming`` is an older event arriving late (a worker's ``received`` after
    the client's ``sent`` was written later, say): its fields merge, its state does not.
    A retry starts the task's life again, so around RETRY the newest event always wins."""
    if states.RETRY in (incoming, current):
        return False
    return PRECEDENCE.index(incoming) < PRECEDENCE.index(current)


class State:
    """Celery's ``State``: feed it every event (``handlers={'*': state.event}``)."""

    def __init__(
        self,
        callback: Callable[[State, dict[str, Any]], Any] | None = None,
        max_workers_in_memory: int = 5000,
        max_tasks_in_memory: int = 10000,
        **options: Any,
    ) -> None:
        self.callback = callback
        self.max_workers_in_memory = max_workers_in_memory
        self.max_tasks_in_memory = max_tasks_in_memory
        self.workers: collections.OrderedDict[str, Worker] = collections.OrderedDict()
        self.tasks: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self.event_count = 0
        self.task_count = 0

    def event(self, event: dict[str, Any]) -> None:
        self.event_count += 1
        kind = str(event.get("type", ""))
        if kind.startswith("worker-") and event.get("hostname"):
            self._worker(str(event["hostname"])).event(event)
        elif kind.startswith("task-") and event.get("uuid"):
            self._task(str(event["uuid"])).event(event)
        if self.callback is not None:
            self.callback(self, event)

    def _worker(self, hostname: str) -> Worker:
        worker = self.workers.get(hostname)
        if worker is None:
            worker = self.workers[hostname] = Worker(hostname)
            if len(self.workers) > self.max_workers_in_memory:
                self.workers.popitem(last=False)
        return worker

    def _task(self, uuid: str) -> Task:
        task = self.tasks.get(uuid)
        if task is None:
            self.task_count += 1
            task = self.tasks[uuid] = Task(uuid)
            if len(self.tasks) > self.max_tasks_in_memory:
                self.tasks.popitem(last=False)
        return task

    def alive_workers(self) -> list[Worker]:
        return [worker for worker in self.workers.values() if worker.alive]

    def itertasks(self, limit: int | None = None) -> Iterator[tuple[str, Task]]:
        """Tasks, most recently first seen last; at most ``limit`` of them."""
        for index, item in enumerate(self.tasks.items()):
            if limit is not None and index >= limit:
                return
            yield item

    def tasks_by_time(self, limit: int | None = None) -> list[tuple[str, Task]]:
        """Tasks by the time of their latest event, newest first."""
        ordered = sorted(self.tasks.items(), key=lambda item: item[1].timestamp or 0, reverse=True)
        return ordered[:limit] if limit is not None else ordered

    def tasks_by_state(self) -> collections.Counter[str]:
        return collections.Counter(task.state for task in self.tasks.values())

    def clear(self) -> None:
        self.workers.clear()
        self.tasks.clear()
        self.event_count = self.task_count = 0
