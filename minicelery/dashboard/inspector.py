"""What the workers say about themselves when asked (``app.control.inspect()``), gathered the
way Flower gathers it for ``/api/workers``: every inspect method at once, the replies kept per
worker with the time they came."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)

METHODS = (
    "stats",
    "active_queues",
    "registered",
    "scheduled",
    "active",
    "reserved",
    "revoked",
    "conf",
)


class Inspector:
    """``workers``: ``{hostname: {method: reply, ..., "timestamp": when}}``."""

    def __init__(self, app: Celery, timeout: float = 1.0) -> None:
        self.app = app
        self.timeout = timeout
        self.workers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(len(METHODS), thread_name_prefix="dashboard-inspect")
        self.last_refresh = 0.0

    def refresh(self, workername: str | None = None, expected: int | None = None) -> None:
        """Ask every worker (or ``workername``) everything, all methods in parallel; each
        waits up to ``timeout`` seconds, or until ``expected`` workers answered."""
        futures = [self._pool.submit(self._ask, method, workername, expected) for method in METHODS]
        for future in futures:
            future.result()
        self.last_refresh = time.time()

    def _ask(self, method: str, workername: str | None, expected: int | None) -> None:
        limit = 1 if workername else expected
        inspect = self.app.control.inspect(
            destination=workername, timeout=self.timeout, limit=limit
        )
        replies = getattr(inspect, method)() or {}
        now = time.time()
        with self._lock:
            for hostname, reply in replies.items():
                info = self.workers.setdefault(hostname, {})
                info[method] = reply
                info["timestamp"] = now

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: dict(info) for name, info in self.workers.items()}

    def queue_names(self) -> set[str]:
        """The queues the workers said they consume from."""
        names: set[str] = set()
        with self._lock:
            for info in self.workers.values():
                for queue in info.get("active_queues") or ():
                    if isinstance(queue, dict) and queue.get("name"):
                        names.add(str(queue["name"]))
        return names

    def pool(self, hostname: str) -> tuple[str, int | None]:
        """The worker's pool kind and size, from its last ``stats`` reply."""
        with self._lock:
            stats = (self.workers.get(hostname) or {}).get("stats") or {}
        pool = stats.get("pool") or {}
        kind = pool.get("implementation") or ("prefork" if "processes" in pool else "solo")
        size = pool.get("max-concurrency")
        return (str(kind) if pool else "", int(size) if size is not None else None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
