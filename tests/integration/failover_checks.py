"""What the failover drills check once the new master serves: monitoring events (workers
started with ``-E``) still reach a receiver on the client's own connection, and a
remote-control command that changes the workers reaches every one of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from minicelery import Celery

Events = list[dict[str, Any]]


def _seen_enough(seen: Events, hostnames: set[str], ids: list[str]) -> bool:
    beats = {e["hostname"] for e in seen if e["type"] == "worker-heartbeat"}
    done = {e.get("uuid") for e in seen if e["type"] == "task-succeeded"}
    return beats >= hostnames and done >= set(ids)


def collect_events(
    receiver: Any, hostnames: set[str], ids: list[str], timeout: float = 15.0
) -> Events:
    """Events read (blocking, no sleeps) until both workers' heartbeats and a
    ``task-succeeded`` for each of ``ids`` are among them."""
    seen: Events = []
    deadline = time.monotonic() + timeout
    while not _seen_enough(seen, hostnames, ids):
        left = deadline - time.monotonic()
        if left <= 0:
            beats = sorted({e["hostname"] for e in seen if e["type"] == "worker-heartbeat"})
            done = sum(e["type"] == "task-succeeded" and e.get("uuid") in ids for e in seen)
            raise AssertionError(
                f"within {timeout}s: heartbeats from {beats} (want {sorted(hostnames)}), "
                f"{done} of {len(ids)} task-succeeded, {len(seen)} events in all"
            )
        seen.extend(receiver.poll(min(left, 0.5)))
    return seen


def events_and_control_carry_on(
    app: Celery, hostnames: set[str], task: str, send: Callable[[], list[str]]
) -> tuple[list[str], Events]:
    """After a failover: a receiver started now sees heartbeats from every worker of
    ``hostnames`` and ``task-succeeded`` for the tasks ``send`` sends, and a ``rate_limit``
    on ``task`` is answered ok by every worker. Returns the ids sent and the events seen."""
    receiver = app.events.Receiver()
    ids = send()
    seen = collect_events(receiver, hostnames, ids)
    limit = len(hostnames)
    replies = app.control.rate_limit(task, "1000/s", reply=True, timeout=3.0, limit=limit) or []
    answers = {host: answer for reply in replies for host, answer in reply.items()}
    assert answers == {h: {"ok": "new rate limit set successfully"} for h in hostnames}, replies
    return ids, seen
