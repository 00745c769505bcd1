"""Prometheus metrics with Flower's names and labels (so Grafana boards built for Flower work
unchanged), plus the queue lengths Flower leaves to other exporters."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    """One registry per dashboard (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "flower_events_total", "Number of events", ["worker", "type", "task"], registry=r
        )
        self.runtime = Histogram(
            "flower_task_runtime_seconds", "Task runtime", ["worker", "task"], registry=r
        )
        self.prefetch_time = Gauge(
            "flower_task_prefetch_time_seconds",
            "The time the task spent waiting at the worker to be executed.",
            ["worker", "task"],
            registry=r,
        )
        self.prefetched = Gauge(
            "flower_worker_prefetched_tasks",
            "Number of tasks of given type prefetched at a worker",
            ["worker", "task"],
            registry=r,
        )
        self.online = Gauge("flower_worker_online", "Worker online status", ["worker"], registry=r)
        self.executing = Gauge(
            "flower_worker_number_of_currently_executing_tasks",
            "Number of tasks currently executing at a worker",
            ["worker"],
            registry=r,
        )
        self.queue_length = Gauge(
            "minicelery_queue_length",
            "Messages waiting in a queue (ready to be reserved)",
            ["queue"],
            registry=r,
        )
        self.scheduled = Gauge(
            "minicelery_scheduled_tasks",
            "Messages waiting for their ETA or countdown, all queues",
            registry=r,
        )
        self.dead_letters = Gauge(
            "minicelery_dead_letters", "Messages in the dead-letter store", registry=r
        )

    def task_event(
        self, event: dict[str, Any], name: str, times: dict[str, float], eta: Any
    ) -> None:
        """Count a task event as Flower does: runtime observed on success or failure, the
        prefetch gauges moved between received and started (tasks with an ETA excluded)."""
        kind, worker = event["type"], str(event.get("hostname") or "")
        self.events.labels(worker, kind, name).inc()
        runtime = event.get("runtime")
        if runtime:
            self.runtime.labels(worker, name).observe(float(runtime))
        if eta:
            return
        received, started = times.get("received"), times.get("started")
        if kind == "task-received" and received:
            self.prefetched.labels(worker, name).inc()
        elif kind == "task-started" and started and received:
            self.prefetch_time.labels(worker, name).set(started - received)
            self.prefetched.labels(worker, name).dec()
        elif kind in ("task-succeeded", "task-failed") and started and received:
            self.prefetch_time.labels(worker, name).set(0)

    def worker_event(self, event: dict[str, Any]) -> None:
        kind, worker = event["type"], str(event.get("hostname") or "")
        if kind == "worker-offline":
            self.online.labels(worker).set(0)
            return
        self.online.labels(worker).set(1)
        if kind == "worker-heartbeat" and event.get("active") is not None:
            self.executing.labels(worker).set(int(event["active"]))

    def worker_lost(self, worker: str) -> None:
        """A worker whose heartbeats stopped without a worker-offline."""
        self.online.labels(worker).set(0)

    def queues(self, lengths: dict[str, int], scheduled: int, dead: int) -> None:
        for queue, length in lengths.items():
            self.queue_length.labels(queue).set(length)
        self.scheduled.set(scheduled)
        self.dead_letters.set(dead)

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data
