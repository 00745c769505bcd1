"""The live view of ``minicelery events``: workers and their status, tasks per state with
their rate, and the latest tasks, rendered as plain text lines that fit a terminal."""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from .. import states
from .state import TASK_STATES, State, Task, Worker

RATE_WINDOW = 5.0  # seconds the per-second rates are averaged over
# The states a monitor shows, in a task's order of life (the dashboard shows the same).
SHOWN_STATES = (
    states.PENDING,
    states.RECEIVED,
    states.STARTED,
    states.SUCCESS,
    states.FAILURE,
    states.RETRY,
    states.REVOKED,
    states.REJECTED,
)
EVENT_OF_STATE = {state: kind for kind, state in TASK_STATES.items()}


class Monitor:
    """Feed it every event (``on_event``); ``render()`` draws the current picture."""

    def __init__(
        self,
        state: State | None = None,
        window: float = RATE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state or State()
        self.window = window
        self.clock = clock
        self.started = clock()
        self._recent: collections.deque[tuple[float, str]] = collections.deque()

    def on_event(self, event: dict[str, Any]) -> None:
        self.state.event(event)
        self._recent.append((self.clock(), str(event.get("type"))))

    def rates(self) -> collections.Counter[str]:
        """Events per second of each type, over the last ``window`` seconds."""
        now = self.clock()
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        span = max(min(self.window, now - self.started), 1.0)
        counts = collections.Counter(kind for _, kind in self._recent)
        return collections.Counter({kind: count / span for kind, count in counts.items()})

    def render(self, width: int = 100, height: int = 40) -> list[str]:
        rates = self.rates()
        lines = [self._title(rates), ""]
        lines += self._workers()
        lines.append("")
        lines += self._states(rates)
        lines.append("")
        room = max(height - len(lines) - 1, 0)
        lines += self._recent_tasks(room)
        return [line[:width] for line in lines[:height]]

    def _title(self, rates: collections.Counter[str]) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        online = len(self.state.alive_workers())
        total = sum(rates.values())
        return (
            f"minicelery events   {now:%H:%M:%S} UTC   workers: {online} online   "
            f"events: {self.state.event_count} ({total:.1f}/s)   tasks: {self.state.task_count}"
        )

    def _workers(self) -> list[str]:
        header = (
            f"{'WORKER':<36} {'STATUS':<8} {'ACTIVE':>6} {'PROCESSED':>9}  {'LOAD':<16} HEARTBEAT"
        )
        rows = [_worker_row(worker) for worker in self.state.workers.values()]
        return [header, *(rows or ["(no worker has sent an event yet: is it running with -E?)"])]

    def _states(self, rates: collections.Counter[str]) -> list[str]:
        counts = self.state.tasks_by_state()
        lines = [f"{'STATE':<10} {'TASKS':>7} {'PER SEC':>8}"]
        for state in SHOWN_STATES:
            rate = rates.get(EVENT_OF_STATE[state], 0.0)
            lines.append(f"{state:<10} {counts.get(state, 0):>7} {rate:>8.1f}")
        return lines

    def _recent_tasks(self, room: int) -> list[str]:
        if room < 2:
            return []
        header = f"{'UUID':<36} {'NAME':<28} {'STATE':<9} {'WORKER':<24} INFO"
        rows = [_task_row(task) for _, task in self.state.tasks_by_time(room - 1)]
        return [header, *rows]


def _worker_row(worker: Worker) -> str:
    load = " ".join(f"{value:.2f}" for value in worker.loadavg or ())
    if worker.heartbeats:
        heartbeat = f"{max(time.time() - worker.heartbeats[-1], 0.0):.1f}s ago"
    else:
        heartbeat = "-"
    active = "-" if worker.active is None else worker.active
    processed = "-" if worker.processed is None else worker.processed
    return (
        f"{worker.hostname:<36} {worker.status_string:<8} {active:>6} {processed:>9}  "
        f"{load:<16} {heartbeat}"
    )


def _task_row(task: Task) -> str:
    if task.state == states.SUCCESS:
        info = f"{task.result} in {task.runtime or 0:.3f}s"
    elif task.state in (states.FAILURE, states.RETRY):
        info = str(task.exception)
    else:
        info = ""
    name, worker = task.name or "?", task.worker or ""
    if len(name) > 28:  # the end of a dotted name says more than its package
        name = "..." + name[-25:]
    return f"{task.uuid:<36} {name:<28.28} {task.state:<9} {worker:<24.24} {info}"
