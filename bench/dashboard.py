"""The dashboard under the worker's peak event rate: CPU and memory of ``minicelery dashboard``
while a worker with ``-E`` drains queued no-op tasks at full speed.

Run from the repository root (after ``pip install -e '.[bench,dashboard]'``)::

    python -m bench.dashboard [--tasks 20000]

Method: a private redis-server; the dashboard is started first (no authentication, loopback);
``--tasks`` no-op tasks are queued with no worker running; then one worker
(``-c 2 -P prefork -E``) drains them. The drain ends when every task's result is stored (DBSIZE
polled as in ``bench.run``); the dashboard has kept up when its ``/metrics`` counts a
``task-succeeded`` event for every task (read after the drain: no event may be lost, since the
stream keeps only its latest thousand batches). Its CPU time (user + system) and resident
memory are sampled with psutil every 0.2 s. Every process is stopped by its own PID.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from bench.run import (
    BenchError,
    OutputWatcher,
    RedisServer,
    _spawn,
    free_port,
    log,
    redis_server,
    run_client,
    stop_process,
    wait_ready,
)

WORKER = ["-m", "minicelery", "-A", "bench.mc_app", "worker", "-l", "info", "-c", "2",
          "-P", "prefork", "-E"]  # fmt: skip
SUCCEEDED = re.compile(r'^flower_events_total\{[^}]*type="task-succeeded"[^}]*\} ([0-9.e+]+)$',
                       re.M)  # fmt: skip
TIMEOUT = 300.0


class Sampler(threading.Thread):
    """CPU seconds and RSS of one process, every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.stop = threading.Event()

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.peak_rss = max(self.peak_rss, self.rss())


def succeeded(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(float(value) for value in SUCCEEDED.findall(text)))


@contextmanager
def dashboard(server: RedisServer) -> Iterator[tuple[Any, str]]:
    port = free_port()
    argv = ["-m", "minicelery", "-A", "bench.mc_app", "dashboard", "--port", str(port),
            "--unauthenticated-loopback"]  # fmt: skip
    proc = _spawn(argv, server.url(1))
    watcher = OutputWatcher(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthcheck", timeout=1).close()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the dashboard did not start:\n" + watcher.text()) from exc
                time.sleep(0.1)  # start-up poll interval
        yield proc, url
    finally:
        stop_process(proc, "dashboard")
        watcher.join()


def measure(n: int) -> dict[str, float]:
    with redis_server() as server:
        client = server.client(1)
        client.flushdb()
        with dashboard(server) as (proc, url):
            sampler = Sampler(proc.pid)
            sampler.start()
            idle_rss = sampler.rss()
            log(f"queueing {n} no-op tasks ...")
            run_client("minicelery", "fill_noop", n, server.url(1), timeout=120 + n / 20)
            worker = _spawn(WORKER, server.url(1))
            watcher = OutputWatcher(worker)
            try:
                started = wait_ready("minicelery", worker, watcher)
                cpu_start = sampler.cpu()
                drained = _wait_drained(client, n, worker, watcher)
                caught_up = _wait_caught_up(url, n)
            finally:
                stop_process(worker, "worker")
                watcher.join()
            cpu = sampler.cpu() - cpu_start
            sampler.stop.set()
            return {
                "tasks": n,
                "drain_seconds": drained - started,
                "drain_rate": n / (drained - started),
                "lag_after_drain": max(0.0, caught_up - drained),
                "dashboard_cpu_seconds": cpu,
                "dashboard_cpu_percent": 100 * cpu / (caught_up - started),
                "dashboard_idle_rss_mb": idle_rss / 2**20,
                "dashboard_peak_rss_mb": sampler.peak_rss / 2**20,
                "dashboard_end_rss_mb": sampler.rss() / 2**20,
            }


def _wait_drained(client: Any, n: int, worker: Any, watcher: OutputWatcher) -> float:
    """Until every task's result record exists (two keys per task, the history's own few
    keys make this stop a handful of tasks early)."""
    deadline = time.monotonic() + TIMEOUT
    while int(client.dbsize()) < 2 * n:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise BenchError("the worker did not drain the queue:\n" + watcher.text())
        time.sleep(0.02)  # the poll interval of a measurement
    return time.time()


def _wait_caught_up(url: str, n: int) -> float:
    deadline = time.monotonic() + TIMEOUT
    while (seen := succeeded(url)) < n:
        if time.monotonic() > deadline:
            raise BenchError(f"the dashboard saw {seen} of {n} task-succeeded events")
        time.sleep(0.05)
    return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    for name, value in measure(args.tasks).items():
        print(f"{name:24} {value:,.2f}")


if __name__ == "__main__":
    main()
