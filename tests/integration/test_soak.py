"""A small slice of the chaos soak (``python -m bench.soak``): a few hundred tasks through two
prefork workers while one child is SIGKILLed, one worker's main process is SIGKILLed and
restarted, Redis is restarted once (AOF, ``appendfsync always``) and frozen once for a few
seconds. Executions are counted from files the tasks append to, not from the result backend.

The soak runs once per session (the report is shared by the tests below, also across xdist
workers); each test checks one promise of the README, so a broken one is named by its test.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench.soak import SoakConfig, run_soak
from bench.soak_chaos import ChaosPlan
from tests.helpers import children_consume

TASKS = 300
# Its schedule (a hang first, then a Redis restart, a worker kill, a child kill) meets the
# most traffic.
SEED = 10

pytestmark = pytest.mark.timeout(180)


def _config(workdir: Path) -> SoakConfig:
    plan = ChaosPlan(seed=SEED, interval=(1.0, 2.0), hang=(3.0, 5.0), down=(0.2, 1.0), max_events=4)
    return SoakConfig(
        tasks=TASKS, seed=SEED, rate=30.0, duration_cap=60.0, drain_timeout=25.0,
        workers=2, concurrency=2, heartbeat=0.5, lost_timeout=3.0, plan=plan,
        workdir=workdir, children_consume=children_consume(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The soak's report; with xdist, the first worker to get here runs it for all."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return run_soak(_config(tmp_path_factory.mktemp("soak")))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    with (shared / "soak.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = shared / "soak-report.json"
        if cached.exists():
            report: dict[str, Any] = json.loads(cached.read_text())
            return report
        report = run_soak(_config(shared / "soak"))
        cached.write_text(json.dumps(report))
        return report


def _explain(report: dict[str, Any], *keys: str) -> str:
    shown = {key: report["examples"].get(key, []) for key in keys}
    return (
        f"{json.dumps(shown, indent=1)}\ndiagnosis: {json.dumps(report['diagnosis'], indent=1)}"
        f"\nfiles: {report['workdir']}"
    )


def test_the_soak_ran_its_chaos_and_drained(soak: dict[str, Any]) -> None:
    assert soak["driver_error"] is None
    assert soak["sent"] == TASKS
    assert soak["chaos"].get("child") == 1, soak["chaos"]
    assert soak["chaos"].get("worker") == 1, soak["chaos"]
    assert soak["chaos"].get("redis") == 1, soak["chaos"]
    assert soak["chaos"].get("hang") == 1, soak["chaos"]
    assert soak["worker_restarts"] == 1
    assert soak["outcomes"].get("SUCCESS", 0) > TASKS // 2, soak["outcomes"]
    assert soak["outcomes"].get("FAILURE ValueError", 0) > 0, soak["outcomes"]
    # The side channel saw every task that has a result run (or its child die under it).
    assert soak["verdicts"]["result_without_run"] == 0, _explain(soak, "result_without_run")


def test_no_worker_exits_by_itself(soak: dict[str, Any]) -> None:
    """Only the driver ends workers: any other exit is recorded (and the worker restarted)."""
    assert soak["workers_died_unexpectedly"] == [], "\n\n".join(soak["workers_died_unexpectedly"])


def test_no_task_is_lost(soak: dict[str, Any]) -> None:
    """Every task sent either ran or has a terminal result."""
    assert soak["verdicts"]["lost"] == 0, _explain(soak, "lost")


def test_no_task_runs_twice_beside_a_live_worker(soak: dict[str, Any]) -> None:
    """A second run is allowed only after the worker's main process died (or the child died
    and the task has ``reject_on_worker_lost``)."""
    keys = ("twice_early_worker_alive", "twice_late_worker_alive")
    assert [soak["verdicts"][key] for key in keys] == [0, 0], _explain(soak, *keys)


def test_every_task_that_ran_has_its_result_unless_its_worker_died(soak: dict[str, Any]) -> None:
    keys = ("no_result_worker_alive", "late_not_redelivered")
    assert [soak["verdicts"][key] for key in keys] == [0, 0], _explain(soak, *keys)


def test_time_limits_hold_through_redis_outages(soak: dict[str, Any]) -> None:
    """A task over its hard limit is killed, one over its soft limit interrupted, even while
    Redis is down or frozen; no task ends with an outcome it cannot have."""
    keys = ("unexpected_outcome", "hard_limit_overrun")
    assert [soak["verdicts"][key] for key in keys] == [0, 0], _explain(soak, *keys)
