"""The asyncio client's own figures, on a private redis-server::

    python -m bench.aio_client [--n 10000] [--waits 1000] [--rounds 3]

Per round, all in one event loop of this process (``bench.mc_app``'s tasks):

* **send, one at a time**: ``n`` times ``await noop.adelay()``, each awaited before the next;
* **send, concurrent**: the same ``n`` sends started 1,000 at a time (``asyncio.gather``);
* **awaits of ready results**: ``waits`` results already stored, awaited all at once
  (``gather`` of ``aget()``): one reading connection serves them all;
* **end to end**: ``waits`` tasks sent with ``adelay`` and awaited all at once while a worker
  (``-c 2 -P prefork``) runs them: tasks/s from the first send to the last value;
* **join latency**: while the reader blocks on a task that is not done, how long an await for an
  already-finished task takes (a ``CLIENT UNBLOCK`` wakes the reader; without it, up to the
  one-second slice).

Every round is printed with the load average (a shared machine's speed drifts: read the
figures with it). The database is flushed between phases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.run import redis_server, wait_ready, worker

CONCURRENT = 1000


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


async def _timed(make: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


async def send_phases(app: Any, noop: Any, n: int) -> dict[str, float]:
    async def one_at_a_time() -> None:
        for _ in range(n):
            await noop.adelay()

    async def concurrent() -> None:
        for start in range(0, n, CONCURRENT):
            await asyncio.gather(*(noop.adelay() for _ in range(min(CONCURRENT, n - start))))

    await noop.adelay()  # warm-up: connections open, script loaded
    sequential = await _timed(one_at_a_time)
    together = await _timed(concurrent)
    return {"send_sequential": _rate(n, sequential), "send_concurrent": _rate(n, together)}


async def ready_awaits(app: Any, waits: int) -> float:
    from minicelery import states
    from minicelery.trace import build_meta

    ids = [f"ready-{i}" for i in range(waits)]
    for task_id in ids:
        app.backend.store(task_id, build_meta(task_id, states.SUCCESS, 1))
    results = [app.AsyncResult(task_id) for task_id in ids]
    took = await _timed(lambda: asyncio.gather(*(r.aget(timeout=60) for r in results)))
    return _rate(waits, took)


async def end_to_end(noop: Any, waits: int) -> float:
    async def run() -> None:
        results = await asyncio.gather(*(noop.adelay() for _ in range(waits)))
        await asyncio.gather(*(r.aget(timeout=120) for r in results))

    return _rate(waits, await _timed(run))


async def join_latency(app: Any, noop: Any) -> float:
    blocked = asyncio.ensure_future(app.AsyncResult("never-sent").aget(timeout=30))
    await asyncio.sleep(0.3)  # the reader is blocking on that one alone now
    done = noop.delay()
    done.get(timeout=30)  # finished before it is awaited (by a new handle: no cached value)
    took = await _timed(lambda: app.AsyncResult(done.id).aget(timeout=30))
    blocked.cancel()
    return took * 1000


def one_round(url: str, n: int, waits: int) -> dict[str, float]:
    os.environ["BENCH_REDIS_URL"] = url
    from bench import mc_app

    app = mc_app.app
    threads = threading.active_count()

    async def main() -> dict[str, float]:
        try:
            figures = await send_phases(app, mc_app.noop, n)
            app.broker.purge(["celery"])
            figures["ready_awaits"] = await ready_awaits(app, waits)
            with worker("minicelery", url) as (proc, watcher):
                wait_ready("minicelery", proc, watcher)
                figures["end_to_end"] = await end_to_end(mc_app.noop, waits)
                figures["join_ms"] = await join_latency(app, mc_app.noop)
            return figures
        finally:
            await app.aio.aclose()

    figures = asyncio.run(main())
    figures["threads_added"] = threading.active_count() - threads
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=10_000, help="sends per phase")
    parser.add_argument("--waits", type=int, default=1000, help="results awaited at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    with redis_server() as server:
        for number in range(1, args.rounds + 1):
            server.client(1).flushdb()
            row = one_round(server.url(1), args.n, args.waits)
            rows.append(row)
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"round {number}: send {row['send_sequential']:,.0f}/s one at a time, "
                  f"{row['send_concurrent']:,.0f}/s concurrent; {args.waits} ready awaits at "
                  f"{row['ready_awaits']:,.0f}/s; end to end {row['end_to_end']:,.0f} tasks/s; "
                  f"join {row['join_ms']:.1f} ms; threads added {row['threads_added']:.0f}; "
                  f"load {load}", flush=True)  # fmt: skip
    for key in rows[0]:
        print(f"median {key}: {statistics.median(row[key] for row in rows):,.1f}")


if __name__ == "__main__":
    main()
