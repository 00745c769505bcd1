"""A/B no-op drain: the same drain run against two source trees, interleaved.

Run from the repository root::

    python -m bench.ab_drain --variant main=/path/to/other/tree --variant here=. [-n 20000]
                             [--rounds 3] [-c 2]

Each round flushes a private redis-server's database, queues ``n`` no-op tasks with the
variant's own client, starts that variant's worker (``-c 2 -P prefork``) and times from its
"ready." line until every result key exists (as ``bench.run``'s no-op drain does). Variants
alternate their order between rounds. Besides the rate it reports the CPU seconds the worker's
main process and its pool children used per 1,000 tasks (from /proc, Linux only), which a
noisy machine disturbs less than wall time, and the load average at the start of each run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.probe import URL_ENV
from bench.run import (
    DBSIZE_POLL,
    OutputWatcher,
    RedisServer,
    descendants,
    redis_server,
    stop_process,
)

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _env(src: Path, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env[URL_ENV] = url
    env["PYTHONPATH"] = str(src)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def fill_noop(src: Path, server: RedisServer, n: int) -> None:
    """Queue ``n`` no-op tasks on database 1 with ``src``'s own client."""
    subprocess.run(
        [sys.executable, "-m", "bench.client", "minicelery", "fill_noop", "-n", str(n)],
        cwd=src, env=_env(src, server.url(1)), check=True, capture_output=True, timeout=300,
    )  # fmt: skip


@contextlib.contextmanager
def started_worker(
    src: Path, server: RedisServer, concurrency: int, extra: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], OutputWatcher]]:
    """``src``'s worker (``-c concurrency -P prefork``) on database 1, once it is ready;
    stopped on the way out."""
    argv = [sys.executable, "-m", "minicelery", "-A", "bench.mc_app", "worker",
            "-c", str(concurrency), "-P", "prefork", "-l", "info"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=src, env=_env(src, server.url(1), extra), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    watcher = OutputWatcher(proc)
    try:
        if not watcher.ready.wait(60):
            raise RuntimeError("no ready line:\n" + watcher.text())
        yield proc, watcher
    finally:
        stop_process(proc, "worker")
        watcher.join()


def run_once(
    src: Path, server: RedisServer, n: int, concurrency: int, extra: dict[str, str]
) -> dict[str, float]:
    client = server.client(1)
    client.flushdb()
    fill_noop(src, server, n)
    load = os.getloadavg()[0]
    with started_worker(src, server, concurrency, extra) as (proc, watcher):
        children = descendants(proc.pid)
        cpu0_main = _cpu_seconds(proc.pid)
        cpu0_kids = sum(_cpu_seconds(pid) for pid in children)
        # One result key per task (two before result streams were written only for waiters:
        # give such a tree the variant setting BENCH_KEYS_PER_TASK=2).
        while int(client.dbsize()) < int(extra.get("BENCH_KEYS_PER_TASK", "1")) * n:
            if proc.poll() is not None:
                raise RuntimeError("worker died:\n" + watcher.text())
            time.sleep(DBSIZE_POLL)  # the poll interval of a measurement
        finished = time.time()
        cpu_main = _cpu_seconds(proc.pid) - cpu0_main
        cpu_kids = sum(_cpu_seconds(pid) for pid in descendants(proc.pid)) - cpu0_kids
    assert watcher.ready_at is not None
    return {
        "rate": n / (finished - watcher.ready_at),
        "main_ms": 1000 * cpu_main / n * 1000,
        "kids_ms": 1000 * cpu_kids / n * 1000,
        "load": load,
    }


def parse_variant(spec: str) -> tuple[str, Path, dict[str, str]]:
    """A ``--variant``: ``name=source dir[,VAR=value...]`` (environment for its processes)."""
    name, _, rest = spec.partition("=")
    path, *pairs = rest.split(",")
    return name, Path(path).resolve(), dict(pair.split("=", 1) for pair in pairs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", action="append", required=True,
        help="name=source dir[,VAR=value...] (environment for its worker)",
    )  # fmt: skip
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("-c", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    variants = [parse_variant(spec) for spec in args.variant]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    with redis_server() as server:
        for round_no in range(args.rounds):
            order = variants if round_no % 2 == 0 else variants[::-1]
            for name, src, extra in order:
                result = run_once(src, server, args.n, args.c, extra)
                rows[name].append(result)
                print(
                    f"round {round_no + 1} {name:>6}: {result['rate']:8,.0f} tasks/s  "
                    f"cpu/1k tasks main {result['main_ms']:6.0f} ms children "
                    f"{result['kids_ms']:6.0f} ms  load {result['load']:.2f}",
                    flush=True,
                )
    for name, results in rows.items():
        rate = statistics.median(r["rate"] for r in results)
        main_ms = statistics.median(r["main_ms"] for r in results)
        kids_ms = statistics.median(r["kids_ms"] for r in results)
        print(f"median {name:>6}: {rate:8,.0f} tasks/s  main {main_ms:6.0f} ms/1k  "
              f"children {kids_ms:6.0f} ms/1k")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
