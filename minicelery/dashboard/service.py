"""One running dashboard: the app it watches, its history, metrics, event collector and
inspector, and the views of them that pages and the API share."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .collector import Collector
from .history import History
from .inspector import Inspector
from .metrics import Metrics

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)

INSPECT_EVERY = 15.0  # seconds between background refreshes of the workers' inspect replies


@dataclass
class WorkerRow:
    """A line of the workers page."""

    hostname: str
    online: bool
    pool: str
    size: int | None
    processed: int | None
    active: int | None
    loadavg: list[float] | None
    heartbeat_age: float | None
    sw: str


class Dashboard:
    """Owns the background threads; ``start()`` them, ``stop()`` them."""

    def __init__(
        self,
        app: Celery,
        max_tasks: int = 100_000,
        max_age: float = 86_400.0,
        enable_events: bool = True,
        inspect_timeout: float = 1.0,
    ) -> None:
        self.app = app
        self.history = History.for_broker(app.broker, max_tasks, max_age)
        self.metrics = Metrics()
        self.inspector = Inspector(app, inspect_timeout)
        self.collector = Collector(app, self.history, self.metrics, self.inspector, enable_events)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._refresher = threading.Thread(
            target=self._refresh_loop, daemon=True, name="dashboard-inspect-loop"
        )

    def start(self) -> None:
        self.collector.start()
        self._refresher.start()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()
        self.collector.stop()
        self.inspector.close()

    def _refresh_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.inspector.refresh(expected=self.expected_workers())
            except Exception:  # a supervision loop: Redis may be away, try again later
                logger.warning("Inspecting workers failed", exc_info=True)
            if self._wake.wait(INSPECT_EVERY):
                self._wake.clear()
                self.stopping.wait(1.0)  # the command that woke us is answered by then

    def refresh_soon(self) -> None:
        """Ask the workers again now (after a command that changes what they report)."""
        self._wake.set()

    # -- shared views ---------------------------------------------------------------------
    def expected_workers(self) -> int | None:
        """How many workers should answer an inspect (so it can end before its timeout)."""
        alive = len(self.collector.state.alive_workers())
        return alive or None

    def is_worker(self, name: str) -> bool:
        return name in self.collector.state.workers or name in self.inspector.snapshot()

    def queue_sizes(self) -> dict[str, int]:
        names = self.collector.known_queues | self.inspector.queue_names()
        return dict(self.app.broker.queue_sizes(sorted(names)))

    def task_types(self) -> set[str]:
        names = {name for name in self.app.tasks if not name.startswith("celery.")}
        for info in self.inspector.snapshot().values():
            names.update(str(name).split(" ")[0] for name in info.get("registered") or ())
        return names

    def worker_rows(self) -> list[WorkerRow]:
        now = time.time()
        rows = []
        for worker in list(self.collector.state.workers.values()):
            kind, size = self.inspector.pool(worker.hostname)
            last = worker.heartbeats[-1] if worker.heartbeats else None
            rows.append(
                WorkerRow(
                    hostname=worker.hostname,
                    online=worker.alive,
                    pool=kind,
                    size=size,
                    processed=worker.processed,
                    active=worker.active,
                    loadavg=worker.loadavg,
                    heartbeat_age=None if last is None else max(0.0, now - last),
                    sw=" ".join(str(p) for p in (worker.sw_ident, worker.sw_ver) if p),
                )
            )
        return sorted(rows, key=lambda row: (not row.online, row.hostname))

    def counts(self) -> dict[str, Any]:
        """The summary line every page shows."""
        workers = self.collector.state.workers.values()
        return {
            "online": sum(1 for worker in workers if worker.alive),
            "workers": len(self.collector.state.workers),
            "events": self.collector.events_seen,
            "history": self.history.count(),
        }
