"""A/B round-trip latency: ``noop.delay().get()`` against several source trees, interleaved.

Run from the repository root::

    python -m bench.ab_latency --variant before=/path/to/other/tree --variant after=. \\
                               [-n 2000] [--rounds 5] [-c 2]

Each variant's worker (``-c 2 -P prefork``, idle on an empty queue, on a database of its
own on one private redis-server) and its own client (an interpreter importing that tree's
``bench.mc_app``) are started once; after 50 warm-up calls each, round after round, each
client makes ``n`` timed calls of ``noop.delay().get(timeout=10)``, one at a time, as
``bench.run``'s latency phase does, in blocks of ``--block`` calls taking turns with the
other variants' clients (the order rotated after each block), so that a shared machine's
changing load falls on every variant alike. Every round's p50/p99 (nearest rank) and the
1-minute load average at its start are printed, with the CPU time per call of the client,
the worker (main process and children) and redis-server (from /proc, Linux only; a busy
machine disturbs it less than wall time), then each variant's median over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.ab_drain import _cpu_seconds, parse_variant
from bench.probe import URL_ENV
from bench.run import OutputWatcher, RedisServer, descendants, redis_server, stop_process


def _env(src: Path, url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra, URL_ENV: url, "PYTHONPATH": str(src)}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@contextlib.contextmanager
def started_worker(
    src: Path, url: str, concurrency: int, extra: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``src``'s worker on ``url`` once it is ready; stopped on the way out."""
    argv = [sys.executable, "-m", "minicelery", "-A", "bench.mc_app", "worker",
            "-c", str(concurrency), "-P", "prefork", "-l", "info"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=src, env=_env(src, url, extra), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    watcher = OutputWatcher(proc)
    try:
        if not watcher.ready.wait(60):
            raise RuntimeError("no ready line:\n" + watcher.text())
        yield proc
    finally:
        stop_process(proc, "worker")
        watcher.join()


def nearest_rank(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(math.ceil(pct / 100 * len(ordered)) - 1, 0)]


# The client each variant runs with its own tree on its path: told "N" on stdin, it makes N
# timed calls and answers with their durations (seconds) as one JSON line.
CLIENT = """
import json, sys, time
from bench import mc_app
delay = mc_app.noop.delay
for _ in range(50):
    delay().get(timeout=10)
print("[]", flush=True)
for line in sys.stdin:
    samples = []
    for _ in range(int(line)):
        start = time.perf_counter()
        delay().get(timeout=10)
        samples.append(time.perf_counter() - start)
    print(json.dumps(samples), flush=True)
"""


class Client:
    """One variant's client process (see ``CLIENT``)."""

    def __init__(self, src: Path, url: str, extra: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT], cwd=src, env=_env(src, url, extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.calls(0, warm_up=True)

    def calls(self, n: int, warm_up: bool = False) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not warm_up:
            self.proc.stdin.write(f"{n}\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the client ended")
        return [s * 1000 for s in json.loads(line)]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def summary(samples: Sequence[float], load: float, cpu: dict[str, float]) -> dict[str, float]:
    """Percentiles (ms), load, and CPU microseconds per call of each process group."""
    per_call = {name: 1e6 * seconds / len(samples) for name, seconds in cpu.items()}
    return {
        "p50": nearest_rank(samples, 50),
        "p99": nearest_rank(samples, 99),
        "mean": statistics.fmean(samples),
        "load": load,
        **per_call,
    }


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(_cpu_seconds(pid) for pid in group) for name, group in pids.items()}


def run(args: argparse.Namespace, server: RedisServer) -> dict[str, list[dict[str, float]]]:
    variants = [parse_variant(spec) for spec in args.variant]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    redis_pid = int(server.client(0).info("server")["process_id"])
    with contextlib.ExitStack() as stack:
        clients: dict[str, Client] = {}
        pids: dict[str, dict[str, list[int]]] = {}
        for db, (name, src, extra) in enumerate(variants, start=1):
            server.client(db).flushdb()
            worker = stack.enter_context(started_worker(src, server.url(db), args.c, extra))
            clients[name] = Client(src, server.url(db), extra)
            stack.callback(clients[name].close)
            pids[name] = {
                "client": [clients[name].proc.pid],
                "worker": [worker.pid, *descendants(worker.pid)],
                "redis": [redis_pid],
            }
        for round_no in range(args.rounds):
            load = os.getloadavg()[0]
            samples: dict[str, list[float]] = {name: [] for name in clients}
            cpu = {name: dict.fromkeys(("client", "worker", "redis"), 0.0) for name in clients}
            for block in range(0, args.n, args.block):
                # Rotated, never reversed: with three or more variants a reversal hands the
                # ones at either end two blocks in a row (warm caches), the middle none.
                turn = (block // args.block) % len(clients)
                order = list(clients.items())
                order = order[turn:] + order[:turn]
                for name, client in order:
                    before = cpu_of(pids[name])
                    samples[name] += client.calls(min(args.block, args.n - block))
                    for group, seconds in cpu_of(pids[name]).items():
                        cpu[name][group] += seconds - before[group]
            for name, taken in samples.items():
                result = summary(taken, load, cpu[name])
                rows[name].append(result)
                print(
                    f"round {round_no + 1} {name:>8}: p50 {result['p50']:.3f} ms  "
                    f"p99 {result['p99']:.3f} ms  mean {result['mean']:.3f} ms  "
                    f"cpu/call client {result['client']:.0f} us worker "
                    f"{result['worker']:.0f} us redis {result['redis']:.0f} us  "
                    f"load {result['load']:.2f}",
                    flush=True,
                )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", action="append", required=True,
        help="name=source dir[,VAR=value...] (environment for its worker and client)",
    )  # fmt: skip
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=100, help="calls per turn")
    args = parser.parse_args(argv)
    with redis_server() as server:
        rows = run(args, server)
    for name, results in rows.items():
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(
            f"median {name:>8}: p50 {med['p50']:.3f} ms  p99 {med['p99']:.3f} ms  "
            f"cpu/call client {med['client']:.0f} us worker {med['worker']:.0f} us "
            f"redis {med['redis']:.0f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
