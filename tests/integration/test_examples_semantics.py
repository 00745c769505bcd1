"""``examples/retry`` and ``examples/time_limits``, run as their READMEs say: a worker started
with ``minicelery -A tasks worker`` in the example's folder, on the test's redis-server, and the
README's client code in a fresh interpreter in that folder. What the client prints (results,
errors, timings) and what the worker logs are checked against Celery's behaviour."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import ManagedProcess, RedisServer, wait_until
from tests.integration.examples_support import EXAMPLES, example_env, run_python, start_worker

EXAMPLE_DB = 9  # the examples use the default key prefix: a database of this file's own


@pytest.fixture
def env(redis_server: RedisServer) -> Iterator[dict[str, str]]:
    with example_env(redis_server, EXAMPLE_DB) as environment:
        yield environment


@dataclass
class Run:
    report: Any  # what the client printed (one JSON document)
    worker: ManagedProcess  # stopped, with its log
    children_before: list[int]  # the worker's processes before the client ran
    children_after: list[int]  # and after


def run_with_worker(example: str, client: str, env: dict[str, str]) -> Run:
    """Start the example's worker, run ``client`` against it, stop the worker by its PID."""
    folder = EXAMPLES / example
    worker = start_worker(folder, "tasks", env)
    try:
        before = worker.children()
        output = run_python(client, folder, env)
        # A killed process is replaced as soon as the worker notices: give it that moment.
        after = wait_until(
            lambda: as_many(worker.children(), len(before)), timeout=10, message=worker.describe
        )
    finally:
        worker.close()
        print(worker.describe(tail=200))
    assert worker.returncode == 0, worker.describe()
    return Run(json.loads(output.strip().splitlines()[-1]), worker, before, after)


def as_many(pids: list[int], count: int) -> list[int] | None:
    return pids if len(pids) == count else None


def lines_about(worker: ManagedProcess, task_id: str, text: str) -> list[str]:
    return [line for line in worker.lines if task_id in line and text in line]


# --------------------------------------------------------------------------- retry

RETRY_CLIENT = """
import json, time
from tasks import fetch

sent = time.monotonic()
ok = fetch.delay("https://api.example.com/timeline")          # down for 2 attempts
down = fetch.delay("https://api.example.com/status", outage=10)
missing = fetch.delay("https://api.example.com/missing")
report = {"ids": [ok.id, down.id, missing.id], "ok": ok.get(timeout=30)}
report["ok_seconds"] = time.monotonic() - sent
for name, result in (("down", down), ("missing", missing)):
    try:
        result.get(timeout=30)
    except Exception as exc:
        report[name] = [type(exc).__module__, type(exc).__name__, str(exc), result.state]
print(json.dumps(report))
"""


def test_retry_example_retries_with_backoff_then_gives_up(env: dict[str, str]) -> None:
    run = run_with_worker("retry", RETRY_CLIENT, env)
    report, worker = run.report, run.worker
    ok_id, down_id, missing_id = report["ids"]

    # Two 503s, then the answer, on the third attempt; at most 1 s + 2 s of backoff before it.
    assert report["ok"] == {"url": "https://api.example.com/timeline", "status": 200, "attempts": 3}
    assert report["ok_seconds"] < 3 + 5, report
    assert len(lines_about(worker, ok_id, "retry:")) == 2

    # Still down after max_retries=3: the last 503 is the task's error, after four attempts.
    assert report["down"] == [
        "tasks",
        "ServiceUnavailable",
        "503 Service Unavailable: https://api.example.com/status (attempt 4)",
        "FAILURE",
    ]
    assert [
        line.rsplit("(attempt ", 1)[1] for line in lines_about(worker, down_id, "GET ")
    ] == ["1)", "2)", "3)", "4)"]
    # Backoff with full jitter: the n-th retry waits a random whole number of seconds up to
    # 2**n (retry_backoff=True is a 1 s base), as the worker's retry lines say.
    waits = [
        float(re.search(r"Retry in ([0-9.]+)s", line).group(1))  # type: ignore[union-attr]
        for line in lines_about(worker, down_id, "retry:")
    ]
    assert len(waits) == 3, worker.output()
    for retries, wait in enumerate(waits):
        assert wait == int(wait) and 0 <= wait <= 2**retries, waits

    # A 404 is not in autoretry_for: it fails at once, never retried.
    assert report["missing"] == [
        "tasks",
        "NotFound",
        "404 Not Found: https://api.example.com/missing",
        "FAILURE",
    ]
    assert lines_about(worker, missing_id, "retry:") == []
    assert len(lines_about(worker, missing_id, "raised unexpected")) == 1


# --------------------------------------------------------------------------- time limits

TIME_LIMITS_CLIENT = """
import json, time
from minicelery.exceptions import TimeLimitExceeded
from tasks import crunch, runaway, whoami

report = {}
sent = time.monotonic()
quick = crunch.delay(5, 0.05)
slow = crunch.delay(100, 0.1)                     # 10 s of work, soft limit 1 s
report["quick"] = quick.get(timeout=10)
report["slow"] = slow.get(timeout=10)
report["slow_seconds"] = time.monotonic() - sent

sent = time.monotonic()
hurried = crunch.apply_async((100, 0.1), soft_time_limit=0.5)
report["hurried"] = hurried.get(timeout=10)
report["hurried_seconds"] = time.monotonic() - sent

sent = time.monotonic()
killed = runaway.delay(30)
try:
    killed.get(timeout=15)
except TimeLimitExceeded as exc:
    report["runaway"] = [type(exc).__name__, killed.state]
report["runaway_seconds"] = time.monotonic() - sent
report["runaway_id"] = killed.id
report["after"] = sorted({whoami.delay().get(timeout=10) for _ in range(6)})
print(json.dumps(report))
"""


def test_time_limits_example_soft_limit_cleans_up_hard_limit_kills(
    env: dict[str, str],
) -> None:
    run = run_with_worker("time_limits", TIME_LIMITS_CLIENT, env)
    report, worker = run.report, run.worker

    assert report["quick"] == {"done": 5, "of": 5, "complete": True}

    # The soft limit (1 s) stopped the work part-way; the task returned what it had done.
    slow = report["slow"]
    assert slow["complete"] is False and slow["of"] == 100, slow
    assert 3 <= slow["done"] <= 11, slow
    assert 0.9 < report["slow_seconds"] < 3.0, report

    # A soft limit given with the call beats the task's own.
    hurried = report["hurried"]
    assert hurried["complete"] is False and hurried["done"] <= 6, hurried
    assert 0.4 < report["hurried_seconds"] < 2.0, report

    # The hard limit (1 s) killed the process; the task failed with TimeLimitExceeded.
    assert report["runaway"] == ["TimeLimitExceeded", "FAILURE"]
    assert 0.9 < report["runaway_seconds"] < 4.0, report
    runaway_id = report["runaway_id"]
    assert lines_about(worker, runaway_id, "Hard time limit (1")
    assert not lines_about(worker, runaway_id, "succeeded in")

    # ... and the worker went on with a new process in the killed one's place.
    assert len(run.children_before) == len(run.children_after) == 2, run
    assert len(set(run.children_before) & set(run.children_after)) == 1, run
    assert set(report["after"]) <= set(run.children_after), run
