"""Judging a chaos soak: each task's executions (from the side-channel files), its stored result
and the driver's kill log, weighed against the README's semantics:

- lost: sent, never ran, and no terminal result;
- ran twice: allowed when the worker's main process died in between (an early-ack task may
  run again if its worker dies in the few ms before its ack is sent; a late-ack task is
  redelivered), or when its child died and the task has ``reject_on_worker_lost``. Any other
  second run happened beside a live worker: a bug;
- a task that ran but has no terminal result is allowed only for an early-ack task whose
  worker died (at most once); otherwise its result was lost;
- every outcome must be one its task can have: a task over its hard or soft time limit ends
  ``TimeLimitExceeded`` / ``SoftTimeLimitExceeded`` (or ``WorkerLostError`` if its child was
  killed first), never SUCCESS.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak_chaos import ChaosLog

LOST_WORKER = "WorkerLostError"


@dataclass
class Spec:
    """One sent task: what it is and which outcomes it may have."""

    task_id: str
    kind: str  # early | late | late_reject
    seconds: float
    expect: tuple[str, ...]  # acceptable "STATE" or "FAILURE <exc>" outcomes
    options: dict[str, float] = field(default_factory=dict)

    @property
    def late(self) -> bool:
        return self.kind != "early"


@dataclass
class Run:
    pid: int
    ancestors: tuple[int, ...]
    started: float
    ended: float | None = None


def load_runs(runs_dir: Path) -> dict[str, list[Run]]:
    """Every execution the tasks wrote down, by task id, in start order."""
    runs: dict[str, list[Run]] = collections.defaultdict(list)
    open_runs: dict[tuple[str, int], Run] = {}
    for path in sorted(runs_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[0] == "S":
                chain = tuple(int(p) for p in parts[3].split(",") if p.isdigit())
                run = Run(int(parts[2]), chain, float(parts[4]))
                runs[parts[1]].append(run)
                open_runs[(parts[1], run.pid)] = run
            elif len(parts) == 4 and parts[0] == "E":
                begun = open_runs.get((parts[1], int(parts[2])))
                if begun is not None:
                    begun.ended = float(parts[3])
    for task_runs in runs.values():
        task_runs.sort(key=lambda run: run.started)
    return runs


def _killed_between(kills: dict[int, float], pids: Iterable[int], start: float,
                    end: float | None) -> bool:  # fmt: skip
    return any(start <= kills.get(pid, -1.0) <= (end or float("inf")) for pid in pids)


def death_after(run: Run, until: float | None, chaos: ChaosLog) -> str | None:
    """``main`` if the run's worker main process died after it started (and before
    ``until``), ``child`` if only its own process was killed, else None."""
    if _killed_between(chaos.killed_mains, run.ancestors, run.started, until) or \
            _killed_between(chaos.orphans, [run.pid], run.started, until):  # fmt: skip
        return "main"
    if _killed_between(chaos.killed_children, [run.pid], run.started, until):
        return "child"
    return None


@dataclass
class Verdicts:
    """Counts and examples, filled by :func:`judge`."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, what: str, task_id: str, detail: str = "") -> None:
        self.counts[what] += 1
        shown = self.examples.setdefault(what, [])
        if len(shown) < 10:
            shown.append(f"{task_id} {detail}".strip())


VIOLATIONS = (
    "lost",
    "twice_early_worker_alive",
    "twice_late_worker_alive",
    "no_result_worker_alive",
    "late_not_redelivered",
    "unexpected_outcome",
    "hard_limit_overrun",
)


def _where(run: Run) -> str:
    parent = run.ancestors[0] if run.ancestors else "?"
    stamp = time.strftime("%H:%M:%S", time.localtime(run.started))
    return f"pid {run.pid} (of {parent}) at {stamp}.{int(run.started % 1 * 1000):03d}"


def explained(spec: Spec, runs: list[Run], chaos: ChaosLog) -> bool:
    """Whether a task without a result will never have one, as the semantics allow: an
    early-ack task that started before its worker died."""
    return bool(runs) and not spec.late and death_after(runs[-1], None, chaos) == "main"


def _judge_twice(spec: Spec, runs: list[Run], chaos: ChaosLog, verdicts: Verdicts) -> None:
    """One verdict per task that ran more than once: the worst of its reruns."""
    worst, detail = "worker_died", ""
    for before, after in itertools.pairwise(runs):
        death = death_after(before, after.started, chaos)
        if death == "main" or (death == "child" and spec.kind == "late_reject"):
            continue
        worst = "worker_alive"
        detail = (f"{len(runs)} runs: {_where(before)} then {_where(after)}, "
                  f"death between: {death}")  # fmt: skip
    ack = "late" if spec.late else "early"
    verdicts.add(f"twice_{ack}_{worst}", spec.task_id, detail)


def _judge_missing(spec: Spec, runs: list[Run], chaos: ChaosLog, verdicts: Verdicts) -> None:
    if not runs:
        verdicts.add("lost", spec.task_id)
        return
    last = runs[-1]
    death = death_after(last, None, chaos)
    detail = f"last run {_where(last)}, death after: {death}"
    if death == "main" and not spec.late:
        verdicts.add("ran_no_result_worker_died", spec.task_id, detail)
    elif death == "main":
        verdicts.add("late_not_redelivered", spec.task_id, detail)
    else:
        verdicts.add("no_result_worker_alive", spec.task_id, detail)


def judge(
    specs: list[Spec], results: dict[str, tuple[str, str | None]], runs: dict[str, list[Run]],
    chaos: ChaosLog, resent: AbstractSet[str] = frozenset(),
) -> Verdicts:  # fmt: skip
    """Classify every sent task. A task the client had to publish again (its first try
    failed, yet may have landed) that ran twice is counted apart: not the worker's doing."""
    verdicts = Verdicts()
    for spec in specs:
        task_runs = runs.get(spec.task_id, [])
        state, exc = results.get(spec.task_id, ("PENDING", None))
        outcome = f"{state} {exc}" if exc else state
        verdicts.outcomes[outcome] += 1
        if len(task_runs) > 1 and spec.task_id in resent:
            verdicts.add("twice_client_resent", spec.task_id)
        elif len(task_runs) > 1:
            _judge_twice(spec, task_runs, chaos, verdicts)
        if state not in ("SUCCESS", "FAILURE", "REVOKED"):
            _judge_missing(spec, task_runs, chaos, verdicts)
            continue
        if outcome not in spec.expect:
            verdicts.add("unexpected_outcome", spec.task_id, f"{outcome} ({spec.options})")
        limit = spec.options.get("time_limit")
        if limit is not None and spec.seconds > limit and any(r.ended for r in task_runs):
            verdicts.add("hard_limit_overrun", spec.task_id, f"{outcome} {spec.options}")
        if not task_runs and exc != LOST_WORKER:
            verdicts.add("result_without_run", spec.task_id, outcome)
    return verdicts


ROWS = (
    ("lost (sent, never ran, no terminal result)", "lost"),
    ("ran twice, early ack, after its worker died (allowed)", "twice_early_worker_died"),
    ("ran twice, early ack, worker alive (BUG)", "twice_early_worker_alive"),
    ("ran twice, late ack, after its worker/child died (allowed)", "twice_late_worker_died"),
    ("ran twice, late ack, worker alive (BUG)", "twice_late_worker_alive"),
    ("ran twice, published twice by the client after an error", "twice_client_resent"),
    ("ran, no result: early ack, worker died (allowed)", "ran_no_result_worker_died"),
    ("ran, no result, worker alive (BUG)", "no_result_worker_alive"),
    ("late ack, worker died, never rerun (BUG)", "late_not_redelivered"),
    ("outcome its task cannot have (BUG)", "unexpected_outcome"),
    ("ran to the end past its hard time limit (BUG)", "hard_limit_overrun"),
    ("result without a recorded run", "result_without_run"),
)


def summary(
    sent: int, verdicts: Verdicts, chaos: ChaosLog, extra: dict[str, Any]
) -> dict[str, Any]:
    """Everything the soak prints, as one JSON-able dict."""
    return {
        "sent": sent,
        "outcomes": dict(sorted(verdicts.outcomes.items())),
        "verdicts": {key: verdicts.counts.get(key, 0) for _, key in ROWS},
        "violations": sum(verdicts.counts.get(key, 0) for key in VIOLATIONS),
        "examples": verdicts.examples,
        "chaos": dict(sorted(chaos.counts.items())),
        "redis_down_s": round(chaos.redis_down_s, 1),
        **extra,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    mode = "children consume" if report.get("children_consume") else "classic"
    lines = ["| | |", "|---|---:|", f"| worker mode | {mode} |", f"| sent | {report['sent']:,} |"]
    lines += [f"| result {name} | {count:,} |" for name, count in report["outcomes"].items()]
    lines += [f"| {label} | {report['verdicts'][key]:,} |" for label, key in ROWS]
    chaos = report["chaos"]
    lines += [
        f"| child processes SIGKILLed | {chaos.get('child', 0)} |",
        f"| worker main processes SIGKILLed and restarted | {chaos.get('worker', 0)} |",
        f"| child kills skipped: the worker had no child | {chaos.get('child-skipped', 0)} |",
        f"| Redis restarts (SHUTDOWN NOSAVE / SIGKILL) | {chaos.get('redis', 0)} |",
        f"| Redis hangs (SIGSTOP) | {chaos.get('hang', 0)} |",
        f"| Redis down or frozen, total | {report['redis_down_s']} s |",
        f"| workers that exited by themselves (BUG) | {len(report['workers_died_unexpectedly'])} |",
        f"| times a worker logged nothing for 6 s (stacks dumped) | {report['worker_stalls']} |",
        f"| wall time (send + chaos / drain) | {report['wall_s']} s "
        f"({report['send_s']} / {report['drain_s']}) |",
    ]
    return "\n".join(lines)
