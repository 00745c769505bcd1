"""Drain bench: 6 queues over a 3-shard Redis Cluster with 3 workers, against the same on
one Redis node.

Run from the repository root::

    python -m bench.cluster [-n 30000] [--rounds 3] [--only node|cluster] [--out FILE]
                            [--commands]

Each round runs both setups, the order alternating between rounds: "node" is one private
``redis-server``, "cluster" three masters (the test-suite's cluster, ``rediscluster://``
URL of the masters), without replicas by default like the one node (``--replicas 1``: a
replica each, whose replication costs the masters and the machine's two cores too). For each: every database is flushed, ``n`` no-op
tasks are queued round-robin on ``q0`` .. ``q5`` (by this process, untimed), then three
workers start (``-A bench.mc_app worker -Q q0,...,q5 -c 2 -P prefork``). The clock runs from
the first worker's "ready." line until every task's result is SUCCESS: ``DBSIZE`` (summed
over the masters) is polled every 20 ms until there are ``n`` keys, then the results are
read (batched) until none is missing; the clock stops when that last read began. ``INFO
cpu`` (system + user) of every master is read before the workers start and once the drain
is done: the difference, per task, is the Redis CPU each shard (and all of them) spent on
it (one read of every result included), a figure a busy machine disturbs less than the
rate. The 1-minute load average is given at the start and end of every run. With
``--commands``, ``INFO commandstats`` (reset before the drain) names each run's costliest
commands: calls and server µs per task, summed over the masters.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.probe import URL_ENV
from bench.run import REPO_ROOT, OutputWatcher, redis_server, stop_process

QUEUES = [f"q{number}" for number in range(6)]
WORKERS = 3
CONCURRENCY = 2
POLL = 0.02  # seconds between two DBSIZE polls
DRAIN_TIMEOUT = 600.0
TASK_NAME = "bench.mc_app.noop"
SETUPS = ("node", "cluster")


class Replicas:
    """Replicas per master of the cluster setup (``--replicas``)."""

    count = 0


@dataclass
class Shards:
    """Where a setup's data lives: its URL and the ports of its masters."""

    url: str
    ports: list[int]

    def client(self, port: int) -> redis.Redis:
        return redis.Redis("127.0.0.1", port, socket_timeout=30)

    def flush(self) -> None:
        for port in self.ports:
            with self.client(port) as node:
                node.flushall()

    def keys(self) -> int:
        """DBSIZE, summed over the masters."""
        total = 0
        for port in self.ports:
            with self.client(port) as node:
                total += int(node.dbsize())
        return total

    def reset_stats(self) -> None:
        for port in self.ports:
            with self.client(port) as node:
                node.config_resetstat()

    def commands(self, n: int, top: int = 6) -> str:
        """The ``top`` commands by server time since the last reset, summed over the
        masters: calls and µs per task."""
        totals: dict[str, list[float]] = {}
        for port in self.ports:
            with self.client(port) as node:
                for name, stat in node.info("commandstats").items():
                    total = totals.setdefault(name.removeprefix("cmdstat_"), [0.0, 0.0])
                    total[0] += stat["calls"] / n
                    total[1] += stat["usec"] / n
        ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
        return ", ".join(f"{name}: {calls:.2f} calls {us:.1f} µs" for name, (calls, us) in ranked)

    def cpu(self) -> list[float]:
        """CPU seconds (system + user) every master has used so far."""
        used = []
        for port in self.ports:
            with self.client(port) as node:
                info = node.info("cpu")
            used.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
        return used


@dataclass
class Round:
    setup: str
    rate: float = 0.0
    cpu_us: list[float] = field(default_factory=list)  # per task, one per shard
    load: tuple[float, float] = (0.0, 0.0)
    error: str = ""
    commands: str = ""  # the costliest commands per task (--commands)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_us)


@contextlib.contextmanager
def one_node() -> Iterator[Shards]:
    with redis_server() as server:
        yield Shards(f"redis://127.0.0.1:{server.port}/0", [server.port])


@contextlib.contextmanager
def three_shards() -> Iterator[Shards]:
    """The test-suite's cluster: 3 masters (with ``REPLICAS`` each), in a temporary
    directory."""
    from tests.integration.clusters import ClusterTopology

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        topology = ClusterTopology(Path(workdir), replicas=Replicas.count)
        topology.start()
        try:
            yield Shards(topology.url, [port for _, port, _ in topology.masters()])
        finally:
            topology.stop()


def fill(url: str, n: int) -> list[str]:
    """Queue ``n`` no-op tasks round-robin on the six queues; returns their ids."""
    from minicelery import Celery

    app = Celery("bench-fill", broker=url, backend=url)
    try:
        send = app.send_task
        return [send(TASK_NAME, queue=QUEUES[i % len(QUEUES)]).id for i in range(n)]
    finally:
        app.close()


def _worker_env(url: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, URL_ENV: url, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def workers(url: str) -> Iterator[list[tuple[subprocess.Popen[bytes], OutputWatcher]]]:
    """Three workers on the six queues, started together; stopped by PID on the way out."""
    started: list[tuple[subprocess.Popen[bytes], OutputWatcher]] = []
    try:
        for number in range(WORKERS):
            argv = [sys.executable, "-m", "minicelery", "-A", "bench.mc_app", "worker",
                    "-Q", ",".join(QUEUES), "-c", str(CONCURRENCY), "-P", "prefork",
                    "-l", "info", "-n", f"bench{number}@%h"]  # fmt: skip
            proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=_worker_env(url),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
            started.append((proc, OutputWatcher(proc)))
        yield started
    finally:
        for proc, watcher in started:
            stop_process(proc, f"worker {proc.pid}")
            watcher.join()


def _first_ready(started: list[tuple[subprocess.Popen[bytes], OutputWatcher]]) -> float:
    """The wall-clock time of the first "ready." line (a worker that dies fails the run)."""
    deadline = time.monotonic() + 60
    while not any(watcher.ready.is_set() for _, watcher in started):
        for proc, watcher in started:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{watcher.text()}")
        if time.monotonic() > deadline:
            raise RuntimeError("no worker was ready within 60 s")
        time.sleep(POLL)
    return min(w.ready_at for _, w in started if w.ready_at is not None)


def wait_drained(shards: Shards, url: str, ids: list[str]) -> float:
    """Until every result is SUCCESS: DBSIZE first (cheap), then the records themselves.
    Returns when the read that found them all began (reading 12,000 records on the cluster
    takes 0.15 s: not part of the drain)."""
    from minicelery import Celery, states

    deadline = time.monotonic() + DRAIN_TIMEOUT
    while shards.keys() < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the queues did not drain")
        time.sleep(POLL)
    app = Celery("bench-check", broker=url, backend=url)
    try:
        missing, began = ids, time.time()
        while missing:
            began = time.time()
            metas = app.backend.get_many(missing)
            missing = [i for i, meta in zip(missing, metas, strict=True)
                       if meta.get("status") != states.SUCCESS]  # fmt: skip
            if missing and time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} results never became SUCCESS")
            if missing:
                time.sleep(POLL)
    finally:
        app.close()
    return began


def run_once(setup: str, shards: Shards, n: int, commands: bool = False) -> Round:
    result = Round(setup)
    shards.flush()
    ids = fill(shards.url, n)
    if commands:
        shards.reset_stats()
    cpu_before = shards.cpu()
    load_start = os.getloadavg()[0]
    with workers(shards.url) as started:
        began = _first_ready(started)
        finished = wait_drained(shards, shards.url, ids)
    cpu_after = shards.cpu()
    result.rate = n / (finished - began)
    result.cpu_us = [(a - b) * 1e6 / n for a, b in zip(cpu_after, cpu_before, strict=True)]
    result.load = (load_start, os.getloadavg()[0])
    if commands:
        result.commands = shards.commands(n)
    return result


def line(row: Round) -> str:
    if row.error:
        return f"| {row.setup} | failed: {row.error} | | | |"
    shards = " / ".join(f"{us:.0f}" for us in row.cpu_us)
    return (f"| {row.setup} | {row.rate:,.0f} | {shards} | {row.cpu_total:.0f} "
            f"| {row.load[0]:.2f} → {row.load[1]:.2f} |")  # fmt: skip


HEADER = (
    "| setup | drain tasks/s | Redis CPU µs/task per shard | total µs/task | load 1m |\n"
    "|---|---:|---:|---:|---|"
)


def medians(rows: list[Round]) -> list[str]:
    out = []
    for setup in SETUPS:
        done = [row for row in rows if row.setup == setup and not row.error]
        if done:
            median = Round(setup, statistics.median(r.rate for r in done))
            median.cpu_us = [statistics.median(r.cpu_us[i] for r in done)
                             for i in range(len(done[0].cpu_us))]  # fmt: skip
            median.load = (done[0].load[0], done[-1].load[1])
            out.append(line(median).replace(f"| {setup} ", f"| **median {setup}** ", 1))
    return out


SETUP_OF = {"node": one_node, "cluster": three_shards}


def run_setup(setup: str, n: int, commands: bool) -> Round:
    """One run of ``setup``; an error (say, a URL refused) is reported, not raised."""
    try:
        with SETUP_OF[setup]() as shards:
            return run_once(setup, shards, n, commands)
    except Exception as exc:  # the table says what failed; the other runs go on
        return Round(setup, error=str(exc).splitlines()[0] if str(exc) else repr(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=30_000, help="tasks per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=0, help="per master of the cluster")
    parser.add_argument("--only", choices=SETUPS)
    parser.add_argument("--out", type=Path, help="save the table (markdown) here")
    parser.add_argument("--commands", action="store_true",
                        help="also print each run's costliest Redis commands per task")  # fmt: skip
    args = parser.parse_args(argv)
    Replicas.count = args.replicas
    setups = [args.only] if args.only else list(SETUPS)
    rows: list[Round] = []
    print(HEADER, flush=True)
    for number in range(args.rounds):
        for setup in setups if number % 2 == 0 else setups[::-1]:
            rows.append(run_setup(setup, args.n, args.commands))
            print(line(rows[-1]), flush=True)
            if rows[-1].commands:
                print(f"  {setup} commands per task: {rows[-1].commands}", flush=True)
    summary = medians(rows)
    print("\n".join(summary))
    if args.out:
        table = "\n".join([HEADER, *(line(row) for row in rows), *summary])
        args.out.write_text(f"{args.n} no-op tasks, {WORKERS} workers -c {CONCURRENCY}\n\n"
                            f"{table}\n")  # fmt: skip
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
