"""Chaos soak: N tasks through real workers while a driver kills children and workers,
restarts Redis and freezes it; then every task is accounted for. Run from the repository root::

    python -m bench.soak [--tasks 10000] [--seed 1] [--workers 2] [--concurrency 2]
                         [--hang-min 10 --hang-max 60 | --no-hangs] [--classic]
                         [--json]

A private ``redis-server`` (AOF, ``appendfsync always``) runs on a free loopback port; workers
are ``minicelery -A bench.soak_app worker -P prefork`` started through the CLI (with
``--classic``, with ``--no-children-consume``: the main process reserves and hands tasks to
the children, which otherwise reserve, acknowledge and store by themselves). Tasks are sent
at ``--rate`` per second, a seeded mix of early-ack,
``acks_late`` and ``reject_on_worker_lost`` tasks, short and longer sleeps, deliberate
failures, and tasks over their hard or soft time limit. Each task writes its executions to a
per-process file (see ``bench.soak_app``), so executions are counted without trusting the
result backend. Once
everything is sent (or ``--duration-cap`` is reached) the driver stops and the soak waits for
results until none has come for a while (longer than ``worker_lost_timeout``), or
``--drain-timeout``. ``bench.soak_report`` says what counts as lost, as an allowed or a
forbidden second run, and as a wrong outcome. Exit code 1 if anything forbidden happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import soak_app
from bench.soak_chaos import ChaosDriver, ChaosLog, ChaosPlan
from bench.soak_procs import DurableRedis, Workers
from bench.soak_report import Spec, explained, judge, load_runs, summary, table
from bench.soak_tasks import fetch_results, locate, make_specs, publish
from tests.helpers import find_redis_server_bin, pointed_at

logger = logging.getLogger("bench.soak")


@dataclass
class SoakConfig:
    tasks: int = 10_000
    seed: int = 1
    rate: float = 50.0  # tasks sent per second
    duration_cap: float = 900.0  # seconds of sending and chaos, at most
    drain_timeout: float = 180.0
    workers: int = 2
    concurrency: int = 2
    heartbeat: float = 2.0  # the project's defaults
    lost_timeout: float = 10.0
    plan: ChaosPlan = field(default_factory=ChaosPlan)
    workdir: Path | None = None
    keep: bool = False
    children_consume: bool = True  # the workers' --children-consume (else the classic pool)


@dataclass
class Sent:
    specs: list[Spec] = field(default_factory=list)
    resent: set[str] = field(default_factory=set)  # publishes that needed another try
    seconds: float = 0.0


def _send(config: SoakConfig, driver: ChaosDriver, specs: list[Spec],
          fails: dict[str, bool]) -> Sent:  # fmt: skip
    """Publish at ``config.rate``, never while the driver disturbs Redis."""
    sent = Sent()
    started = time.monotonic()
    deadline = started + config.duration_cap
    due = started
    pause = threading.Event()
    for spec in specs:
        if time.monotonic() > deadline or driver.error is not None:
            break
        due = max(due + 1.0 / config.rate, time.monotonic() - 1.0)
        pause.wait(max(0.0, due - time.monotonic()))  # pacing, not synchronisation
        with driver.publish_gate:
            tries = publish(soak_app.app, spec, fails[spec.task_id])
        if tries > 1:
            sent.resent.add(spec.task_id)
        sent.specs.append(spec)
    sent.seconds = time.monotonic() - started
    return sent


def _drain(config: SoakConfig, specs: list[Spec], runs_dir: Path,
           chaos: ChaosLog) -> dict[str, Any]:  # fmt: skip
    """Collect terminal results until every task has one (or never will: an early-ack task
    whose worker died while it ran), or until nothing has changed for longer than a lost
    worker takes to be noticed, or the drain timeout."""
    pending = {spec.task_id: spec for spec in specs}
    results: dict[str, Any] = {}
    quiet_for = config.lost_timeout + 3 * config.heartbeat + 5.0
    deadline = time.monotonic() + config.drain_timeout
    marker, changed = (-1, -1), time.monotonic()
    pause = threading.Event()
    while time.monotonic() < deadline:
        results.update(fetch_results(soak_app.app, pending))
        pending = {key: spec for key, spec in pending.items() if key not in results}
        runs = load_runs(runs_dir)
        if all(explained(spec, runs.get(key, []), chaos) for key, spec in pending.items()):
            break
        now_marker = (len(results), sum(len(task_runs) for task_runs in runs.values()))
        if now_marker != marker:
            marker, changed = now_marker, time.monotonic()
        elif time.monotonic() - changed > quiet_for:
            break
        pause.wait(1.0)  # polling interval
    return results


def _diagnose(server: DurableRedis, workers: Workers, report: dict[str, Any]) -> dict[str, Any]:
    """For the first few tasks of each violation: where their message is, and what the
    workers logged about them."""
    ids = sorted({example.split()[0] for key, shown in report["examples"].items()
                  if key not in ("ran_no_result_worker_died", "twice_early_worker_died",
                                 "twice_late_worker_died") for example in shown})  # fmt: skip
    if not ids:
        return {}
    with server.client() as client:
        where = locate(client, ids)
    logs = [line for worker in workers.every for line in worker.lines]
    return {task_id: {"keys": where[task_id],
                      "log": [line for line in logs if task_id in line][:8]}
            for task_id in ids}  # fmt: skip


def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Run one soak and return its report (see :func:`bench.soak_report.summary`)."""
    binary = find_redis_server_bin()
    if binary is None:
        raise SystemExit("redis-server not found (set REDIS_SERVER_BIN)")
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="minicelery-soak-"))
    runs_dir, redis_dir = workdir / "runs", workdir / "redis"
    runs_dir.mkdir(parents=True, exist_ok=True)
    redis_dir.mkdir(exist_ok=True)
    server = DurableRedis(binary, redis_dir)
    server.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MC_SOAK_REDIS_URL": server.url,
           "MC_SOAK_PREFIX": "soak", "MC_SOAK_RUNS_DIR": str(runs_dir),
           "MC_SOAK_HEARTBEAT": str(config.heartbeat),
           "MC_SOAK_LOST_TIMEOUT": str(config.lost_timeout)}  # fmt: skip
    mode = ("--children-consume",) if config.children_consume else ("--no-children-consume",)
    workers = Workers(config.workers, config.concurrency, env, workdir, mode)
    driver = ChaosDriver(config.plan, server, workers)
    began = time.monotonic()
    try:
        with pointed_at(soak_app.app, server, "soak"):
            report = _run(config, server, workers, driver, runs_dir, began)
    finally:
        driver.stop()
        driver.join(120)
        workers.stop_all()
        workers.save_logs()
        server.stop()
    report["workdir"] = str(workdir)
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    (workdir / "chaos.log").write_text("\n".join(driver.log.events) + "\n")
    if not report["violations"] and not config.keep and config.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
        report["workdir"] = None
    return report


def _run(config: SoakConfig, server: DurableRedis, workers: Workers, driver: ChaosDriver,
         runs_dir: Path, began: float) -> dict[str, Any]:  # fmt: skip
    specs, fails = make_specs(config.tasks, config.seed)
    workers.start_all()
    driver.start()
    watching = threading.Event()
    watchdog = threading.Thread(target=workers.watch_stalls, args=(watching,), daemon=True)
    watchdog.start()
    sent = _send(config, driver, specs, fails)
    if not driver.finite:
        driver.stop()
    driver.join()  # a hang under way ends first; a finite plan runs to its end
    drain_began = time.monotonic()
    results = _drain(config, sent.specs, runs_dir, driver.log)
    drain_s = time.monotonic() - drain_began
    watching.set()
    if len(results) < len(sent.specs):
        workers.dump_stacks()  # why nothing more came: in the logs, before they stop
        threading.Event().wait(1.0)
    died = driver.log.died + [w.describe(tail=40) for w in workers.dead_unexpectedly()]
    workers.stop_all()  # a warm shutdown flushes what the workers still hold
    results.update(fetch_results(soak_app.app, [s.task_id for s in sent.specs
                                                if s.task_id not in results]))  # fmt: skip
    runs = load_runs(runs_dir)
    verdicts = judge(sent.specs, results, runs, driver.log, sent.resent)
    _write_manifest(runs_dir.parent / "tasks.tsv", sent.specs, results, runs)
    extra = {
        "seed": config.seed, "workers": config.workers, "concurrency": config.concurrency,
        "children_consume": config.children_consume,
        "wall_s": round(time.monotonic() - began, 1), "send_s": round(sent.seconds, 1),
        "drain_s": round(drain_s, 1), "publish_retried": len(sent.resent),
        "worker_restarts": driver.log.counts.get("restart", 0),
        "worker_stalls": workers.stalls,
        "workers_died_unexpectedly": died,
        "driver_error": repr(driver.error) if driver.error else None,
    }  # fmt: skip
    report = summary(len(sent.specs), verdicts, driver.log, extra)
    report["diagnosis"] = _diagnose(server, workers, report)
    return report


def _write_manifest(path: Path, specs: list[Spec], results: dict[str, Any],
                    runs: dict[str, list[Any]]) -> None:  # fmt: skip
    """One line per task: what it was, how it ended, where and when it ran."""
    with path.open("w") as out:
        out.write("task_id\tkind\tseconds\toptions\toutcome\truns (pid@start)\n")
        for spec in specs:
            state, exc = results.get(spec.task_id, ("PENDING", None))
            ran = " ".join(f"{r.pid}@{r.started:.3f}" for r in runs.get(spec.task_id, []))
            out.write(f"{spec.task_id}\t{spec.kind}\t{spec.seconds}\t{spec.options}\t"
                      f"{state} {exc or ''}\t{ran}\n")  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--tasks", type=int, default=10_000)
    add("--seed", type=int, default=1)
    add("--rate", type=float, default=50.0, help="tasks sent per second")
    add("--duration-cap", type=float, default=900.0, help="seconds of sending and chaos")
    add("--drain-timeout", type=float, default=180.0)
    add("--workers", type=int, default=2)
    add("--concurrency", type=int, default=2)
    add("--interval-min", type=float, default=4.0, help="seconds between chaos events")
    add("--interval-max", type=float, default=12.0)
    add("--hang-min", type=float, default=10.0, help="seconds Redis stays SIGSTOPped")
    add("--hang-max", type=float, default=60.0)
    add("--no-hangs", action="store_true")
    add("--max-events", type=int, default=None, help="stop the chaos after this many events")
    add("--heartbeat", type=float, default=2.0, help="worker_heartbeat_interval")
    add("--lost-timeout", type=float, default=10.0, help="worker_lost_timeout")
    add("--classic", action="store_true", help="start the workers with --no-children-consume")
    add("--workdir", type=Path, default=None, help="keep every file of the run here")
    add("--keep", action="store_true", help="keep the run's files even if all went well")
    add("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> SoakConfig:
    plan = ChaosPlan(seed=args.seed, interval=(args.interval_min, args.interval_max),
                     hang=(args.hang_min, args.hang_max), hangs=not args.no_hangs,
                     max_events=args.max_events)  # fmt: skip
    return SoakConfig(
        tasks=args.tasks, seed=args.seed, rate=args.rate, duration_cap=args.duration_cap,
        drain_timeout=args.drain_timeout, workers=args.workers, concurrency=args.concurrency,
        heartbeat=args.heartbeat, lost_timeout=args.lost_timeout, plan=plan,
        workdir=args.workdir, keep=args.keep, children_consume=not args.classic,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    report = run_soak(config_from(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
        for key, shown in report["examples"].items():
            print(f"\n{key}: " + "; ".join(shown[:5]))
        if report["workdir"]:
            print(f"\nfiles of this run: {report['workdir']}")
    if report["driver_error"] or report["workers_died_unexpectedly"]:
        return 2
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
