"""The async workload: N tasks that each ``await asyncio.sleep(S)`` (2,000 x 0.1 s by
default), drained by minicelery prefork ``-c 2`` (async def tasks on each child's event
loop), Celery prefork ``-c 2`` and Celery ``-P threads -c 100`` (both run the task through
``asyncio.run()``, Celery having no async def tasks), on one private redis-server.

Each round fills the queue with the worker stopped, starts the worker and times from its
'ready.' line to the last task's end (reported by the tasks themselves, :mod:`bench.probe`).
Every round of every system is printed with the 1-minute load average before it.

    python -m bench.async_tasks [--tasks 2000] [--seconds 0.1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from bench.run import (
    BenchError,
    OutputWatcher,
    RedisServer,
    _spawn,
    _wait_drained,
    log,
    redis_server,
    stop_process,
    wait_ready,
)

# fmt: off
SYSTEMS: dict[str, tuple[str, list[str]]] = {
    "minicelery prefork -c 2": ("minicelery", [
        "-m", "minicelery", "-A", "bench.mc_app", "worker", "-c", "2", "-P", "prefork",
        "-l", "info",
    ]),
    "celery prefork -c 2": ("celery", [
        "-m", "celery", "-A", "bench.celery_app", "worker", "-c", "2", "-P", "prefork",
        "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]),
    "celery -P threads -c 100": ("celery", [
        "-m", "celery", "-A", "bench.celery_app", "worker", "-c", "100", "-P", "threads",
        "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]),
}
# fmt: on


def fill(system: str, url: str, n: int, seconds: float) -> None:
    """Queue ``n`` tasks by name through the system's own client."""
    if system == "celery":
        from celery import Celery  # type: ignore[import-untyped,unused-ignore]

        app = Celery("fill", broker=url, backend=url)
        name = "bench.celery_app.sleep_async"
    else:
        from minicelery import Celery as McCelery

        app = McCelery("fill", broker=url, backend=url)
        name = "bench.mc_app.sleep_async"
    for _ in range(n):
        app.send_task(name, args=[seconds, n])
    app.close()


def drain(label: str, server: RedisServer, db: int, n: int, seconds: float) -> float:
    """One round of one system: seconds from 'ready.' to the last task's end."""
    system, argv = SYSTEMS[label]
    client = server.client(db)
    client.flushdb()
    fill(system, server.url(db), n, seconds)
    proc = _spawn(argv, server.url(db))
    watcher = OutputWatcher(proc)
    try:
        started = wait_ready(system, proc, watcher)
        finished = _wait_drained(label, proc, watcher, client, n)
    finally:
        stop_process(proc, f"{label} worker")
        watcher.join()
    client.flushdb()
    return finished - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {label: [] for label in SYSTEMS}
    try:
        with redis_server() as server:
            for round_no in range(1, args.rounds + 1):
                for db, label in enumerate(SYSTEMS):
                    load = os.getloadavg()[0]
                    took = drain(label, server, db, args.tasks, args.seconds)
                    times[label].append(took)
                    log(f"round {round_no}: {label}: {args.tasks} x sleep({args.seconds}) in "
                        f"{took:.2f}s ({args.tasks / took:,.0f}/s), load {load:.2f}")  # fmt: skip
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 1
    print(f"\n| system | {args.tasks} x await sleep({args.seconds}), median of "
          f"{args.rounds} | rounds |\n|---|---|---|")  # fmt: skip
    for label, runs in times.items():
        each = ", ".join(f"{t:.2f}" for t in runs)
        print(f"| {label} | {statistics.median(runs):.2f} s | {each} |")
    print(f"\n(at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load {os.getloadavg()[0]:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
