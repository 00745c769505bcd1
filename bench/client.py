"""Client side of the benchmark, run in a fresh interpreter per system and phase.

``python -m bench.client SYSTEM PHASE [-n N] [--warmup W]`` prints one JSON
object on stdout.  ``SYSTEM`` is ``celery`` or ``minicelery``; the app module
reads its Redis URL from ``BENCH_REDIS_URL``.  Phases:

* ``check``: import the app, check that ``python -m SYSTEM`` exists, report the version;
* ``enqueue``: time ``N`` calls of ``noop.delay()`` and report tasks/s;
* ``fill``: queue ``N`` calls of ``count.delay(N)`` for the drain workload (untimed);
* ``latency``: ``W`` warm-up then ``N`` timed calls of ``noop.delay().get(timeout=10)``;
* ``chord``: one warm-up chord of 10, then ``chord(one.s() for _ in range(N))(xsum.s())``
  timed from building it to ``get()`` returning ``N`` (a worker must be running).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import time
from types import ModuleType
from typing import Any

APP_MODULES = {"celery": "bench.celery_app", "minicelery": "bench.mc_app"}
GET_TIMEOUT = 10.0


def _version(system: str) -> str:
    module = importlib.import_module(system)
    return str(getattr(module, "__version__", "?"))


def enqueue(app: ModuleType, n: int) -> dict[str, Any]:
    delay = app.noop.delay
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(n):
        delay()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu  # the client's own CPU, which a busy machine disturbs less
    return {"n": n, "seconds": elapsed, "rate": n / elapsed, "cpu_seconds": cpu}


def fill(app: ModuleType, n: int) -> dict[str, Any]:
    delay = app.count.delay
    start = time.perf_counter()
    for _ in range(n):
        delay(n)
    return {"n": n, "seconds": time.perf_counter() - start}


def fill_noop(app: ModuleType, n: int) -> dict[str, Any]:
    delay = app.noop.delay
    start = time.perf_counter()
    for _ in range(n):
        delay()
    return {"n": n, "seconds": time.perf_counter() - start}


def latency(app: ModuleType, n: int, warmup: int) -> dict[str, Any]:
    delay = app.noop.delay
    for _ in range(warmup):
        delay().get(timeout=GET_TIMEOUT)
    samples: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        delay().get(timeout=GET_TIMEOUT)
        samples.append(time.perf_counter() - start)
    return {"n": n, "warmup": warmup, "samples": samples}


def chord(system: str, app: ModuleType, n: int) -> dict[str, Any]:
    chord_type = importlib.import_module(system).chord
    warmup = chord_type([app.one.s() for _ in range(10)], app.xsum.s()).apply_async()
    if warmup.get(timeout=60) != 10:
        raise SystemExit("warm-up chord gave a wrong result")
    start = time.perf_counter()
    result = chord_type(app.one.s() for _ in range(n))(app.xsum.s())
    sent = time.perf_counter()
    # Waited on without re-checking the 10,000 header results at every interval (which
    # Celery's get() does by default, one GET each, fighting the workers for Redis).
    value = result.get(timeout=60 + n / 10, follow_parents=False)
    elapsed = time.perf_counter() - start
    if value != n:
        raise SystemExit(f"chord body returned {value!r}, expected {n}")
    return {"n": n, "seconds": elapsed, "publish_seconds": sent - start, "rate": n / elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("system", choices=sorted(APP_MODULES))
    phases = ["check", "enqueue", "fill", "fill_noop", "latency", "chord"]
    parser.add_argument("phase", choices=phases)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)

    app = importlib.import_module(APP_MODULES[args.system])
    result: dict[str, Any] = {}
    if args.phase == "check" and importlib.util.find_spec(f"{args.system}.__main__") is None:
        parser.error(f"`python -m {args.system}` is not available (no {args.system}.__main__)")
    if args.phase == "enqueue":
        result = enqueue(app, args.n)
    elif args.phase == "fill":
        result = fill(app, args.n)
    elif args.phase == "fill_noop":
        result = fill_noop(app, args.n)
    elif args.phase == "latency":
        result = latency(app, args.n, args.warmup)
    elif args.phase == "chord":
        result = chord(args.system, app, args.n)
    result["version"] = _version(args.system)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
