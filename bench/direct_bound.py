"""How fast could prefork children be if each reserved, acknowledged and stored results
itself, with no main process on a task's path? An upper bound, measured beside the worker.

Run from the repository root::

    python -m bench.direct_bound [-n 20000] [--rounds 3] [-c 2] [--batch 4] [--latency 1000]

Each round runs the no-op drain (as ``bench.ab_drain``) and ``delay().get()`` round trips (as
``bench.run``) twice on one private redis-server: once with ``minicelery worker -c 2``, once
with ``-c`` bare children forked here, each looping over one pipelined round trip that stores
the results of its last batch, acknowledges them and reserves the next ``--batch`` messages
(with a blocking wait chained to the reserve when the queue is dry). The children run the
worker's own executor and write the worker's own records and keys, but nothing supervises
them: no time limits, revokes, rate limits, events or crash handling. So this bounds what
moving the work into the children can win; it is not a worker.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.ab_drain import _cpu_seconds, _env, fill_noop, run_once, started_worker
from bench.probe import URL_ENV
from bench.run import DBSIZE_POLL, RedisServer, percentile, redis_server

ROOT = Path(__file__).resolve().parent.parent
ACCEPT = frozenset(["json", "msgpack", "application/json", "application/x-msgpack"])


def child_loop(batch: int, stop_when_dry: bool) -> None:
    """One bare child: [store + ack + reserve] per round trip, nothing else."""
    import bench.mc_app as bench_app
    from minicelery.backend.relay import RelayBackend
    from minicelery.worker.executor import run_logged

    app = bench_app.app
    relay = RelayBackend(app.conf.result_serializer, lambda records: None, app.open_backend)
    app.relay_results(relay)
    broker: Any = app.broker
    backend: Any = relay.real
    consumer, queues = f"bound-{os.getpid()}", ["celery"]
    hold = broker.ack_key(consumer)
    records: list[tuple[str, bytes]] = []
    tags: list[str] = []
    while True:
        commands = [c for c, _ in backend.store_commands(records, (hold, tags))]
        sha = str(broker._reserve.sha)
        commands.append(broker._reserve_command(sha, consumer, tuple(queues), batch))
        deliveries = broker._deliveries(broker.fast.pipeline(commands)[-1], queues)
        records, tags = [], []
        if not deliveries:
            if stop_when_dry:
                return
            fd = broker.wait_start(queues, 1.0, reserve_for=(consumer, batch))
            while True:
                select.select([fd], [], [])
                got = broker.wait_finish()
                if got is not None:
                    deliveries = got
                    break
        for delivery in deliveries:
            run_logged(app, delivery.queue, delivery.data, "bound@h", ACCEPT)
            records += relay.take()
            tags.append(delivery.tag)


def fork_children(count: int, batch: int, stop_when_dry: bool) -> list[int]:
    import bench.mc_app  # noqa: F401 - imported once, before the forks (no connection yet)

    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child_loop(batch, stop_when_dry)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def bound_drain(server: RedisServer, n: int, count: int, batch: int) -> dict[str, float]:
    client = server.client(1)
    client.flushdb()
    fill_noop(ROOT, server, n)
    load = os.getloadavg()[0]
    started = time.time()
    pids = fork_children(count, batch, stop_when_dry=False)
    try:
        while int(client.dbsize()) < n:  # one result key per task
            time.sleep(DBSIZE_POLL)  # the poll interval of a measurement
        finished = time.time()
        cpu = sum(_cpu_seconds(pid) for pid in pids)
    finally:
        _stop(pids)
    return {"rate": n / (finished - started), "kids_ms": 1e6 * cpu / n, "load": load}


def _stop(pids: Sequence[int]) -> None:
    for pid in pids:
        os.kill(pid, 9)
    for pid in pids:
        os.waitpid(pid, 0)


def latency(server: RedisServer, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "bench.client", "minicelery", "latency", "-n", str(n),
         "--warmup", "200"],
        cwd=ROOT, env=_env(ROOT, server.url(1)), check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    samples = json.loads(out.stdout)["samples"]
    return 1000 * percentile(samples, 50)


def bound_latency(server: RedisServer, n: int, count: int, batch: int) -> float:
    server.client(1).flushdb()
    os.environ[URL_ENV] = server.url(1)
    pids = fork_children(count, batch, stop_when_dry=False)
    try:
        return latency(server, n)
    finally:
        _stop(pids)


def worker_latency(server: RedisServer, n: int, count: int) -> float:
    server.client(1).flushdb()
    with started_worker(ROOT, server, count, {}):
        return latency(server, n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("-c", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="messages per child reserve")
    parser.add_argument("--latency", type=int, default=1000, help="timed delay().get() calls")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    rows: dict[str, list[dict[str, float]]] = {"worker": [], "bound": []}
    with redis_server() as server:
        os.environ[URL_ENV] = server.url(1)
        for round_no in range(args.rounds):
            worker = run_once(ROOT, server, args.n, args.c, {})
            worker["p50"] = worker_latency(server, args.latency, args.c)
            bound = bound_drain(server, args.n, args.c, args.batch)
            bound["p50"] = bound_latency(server, args.latency, args.c, args.batch)
            for name, row in (("worker", worker), ("bound", bound)):
                rows[name].append(row)
                print(
                    f"round {round_no + 1} {name:>6}: drain {row['rate']:8,.0f}/s  children "
                    f"{row['kids_ms']:5.0f} ms/1k  main {row.get('main_ms', 0):5.0f} ms/1k  "
                    f"p50 {row['p50']:.3f} ms  load {row['load']:.2f}",
                    flush=True,
                )
    for name, results in rows.items():
        print(
            f"median {name:>6}: drain {statistics.median(r['rate'] for r in results):8,.0f}/s"
            f"  p50 {statistics.median(r['p50'] for r in results):.3f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
