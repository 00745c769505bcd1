"""What the soak sends (a seeded mix of tasks, each with the outcomes it may have), and how it
reads back results and finds where an unfinished task's message sits."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from bench import soak_app
from bench.soak_report import Spec
from minicelery import Celery
from minicelery.exceptions import OperationalError

OK = ("SUCCESS", "FAILURE WorkerLostError")
FAILED = ("FAILURE ValueError", "FAILURE WorkerLostError")
HARD = ("FAILURE TimeLimitExceeded", "FAILURE WorkerLostError")
SOFT = ("FAILURE SoftTimeLimitExceeded", "FAILURE WorkerLostError")


@dataclass(frozen=True)
class Flavour:
    weight: int
    kind: str
    seconds: tuple[float, float]
    expect: tuple[str, ...]
    options: tuple[tuple[str, float], ...] = ()
    fail: bool = False


TASK_NAMES = {name: getattr(soak_app, name).name for name in ("early", "late", "late_reject")}
SHORT = (0.0, 0.02)
MIX = (
    Flavour(42, "early", SHORT, OK),
    Flavour(30, "late", SHORT, OK),
    Flavour(8, "late_reject", SHORT, OK),
    Flavour(4, "early", SHORT, OK, (("time_limit", 5.0),)),
    Flavour(2, "early", (0.3, 1.5), OK),
    Flavour(2, "late", (0.3, 1.5), OK),
    Flavour(1, "early", SHORT, FAILED, fail=True),
    Flavour(1, "late", SHORT, FAILED, fail=True),
    # Over their limits: killed at 1 s (hard), or interrupted at 0.3 s (soft).
    Flavour(1, "early", (3.0, 3.0), HARD, (("time_limit", 1.0),)),
    Flavour(1, "late", (3.0, 3.0), HARD, (("time_limit", 1.0),)),
    Flavour(1, "early", (1.5, 1.5), SOFT, (("soft_time_limit", 0.3), ("time_limit", 5.0))),
    Flavour(1, "late", (1.5, 1.5), SOFT, (("soft_time_limit", 0.3), ("time_limit", 5.0))),
)


def make_specs(count: int, seed: int) -> tuple[list[Spec], dict[str, bool]]:
    """``count`` tasks drawn from :data:`MIX`; also which of them raise on purpose."""
    rng = random.Random(seed)
    flavours = rng.choices(MIX, [f.weight for f in MIX], k=count)
    specs: list[Spec] = []
    fails: dict[str, bool] = {}
    for number, flavour in enumerate(flavours):
        task_id = f"soak-{number:05d}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        seconds = round(rng.uniform(*flavour.seconds), 4)
        specs.append(Spec(task_id, flavour.kind, seconds, flavour.expect, dict(flavour.options)))
        fails[task_id] = flavour.fail
    return specs, fails


def publish(app: Celery, spec: Spec, fail: bool, attempts: int = 20) -> int:
    """Send one task with its own id; returns how many tries it took. A failed try is one
    Redis refused or could not be reached on (the soak never publishes during a hang)."""
    task = app.tasks[TASK_NAMES[spec.kind]]
    options: dict[str, Any] = dict(spec.options)
    for attempt in range(1, attempts + 1):
        try:
            task.apply_async((spec.seconds, fail), task_id=spec.task_id, **options)
            return attempt
        except OperationalError:
            if attempt == attempts:
                raise
            time.sleep(0.25)  # back off before a retry, not a synchronisation
    return attempts


def fetch_results(app: Celery, task_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """The state (and exception type of a failure) of every task that has a terminal one."""
    found: dict[str, tuple[str, str | None]] = {}
    for task_id in task_ids:
        result = app.AsyncResult(task_id)
        state = result.state
        if state == "FAILURE":
            found[task_id] = (state, type(result.result).__name__)
        elif state in ("SUCCESS", "REVOKED"):
            found[task_id] = (state, None)
    return found


def locate(client: redis.Redis, task_ids: list[str]) -> dict[str, list[str]]:
    """Which non-string keys (queues, holds, scheduled sets, dead letters) mention each id:
    where an unfinished task's message is stuck, if anywhere."""
    wanted = {task_id: task_id.encode() for task_id in task_ids}
    where: dict[str, list[str]] = {task_id: [] for task_id in task_ids}
    for key in client.scan_iter(count=1000):
        kind = _text(client.type(key))
        blob = _contents(client, key, kind)
        if blob is None:
            continue
        for task_id, needle in wanted.items():
            if needle in blob:
                where[task_id].append(f"{kind} {_text(key)}")
    return where


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _contents(client: redis.Redis, key: bytes, kind: str) -> bytes | None:
    values: Any
    if kind == "list":
        values = client.lrange(key, 0, -1)
    elif kind == "hash":
        values = [v for pair in client.hgetall(key).items() for v in pair]
    elif kind == "zset":
        values = client.zrange(key, 0, -1)
    elif kind == "set":
        values = list(client.smembers(key))
    else:
        return None
    return b"\n".join(v if isinstance(v, bytes) else str(v).encode() for v in values)
