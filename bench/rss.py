"""Per-process memory of an idle worker: ``python -m bench.rss [--concurrency 2]``.

Starts a private redis-server and ``minicelery -A bench.mc_app worker -c N``, runs a few
no-op tasks and a ``ping``/``stats``, waits for the fork server to leave (it lingers a while
after its last fork: an idle worker has none), then ``--idle`` seconds, then prints each
process of the worker's tree (main process, children) with its VmRSS, its PSS (shared pages
counted once over the processes sharing them).
Modules are compiled to bytecode first, as an installed package's are. Every process it
starts it stops, by its own PID.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bench.run import REPO_ROOT, descendants, redis_server

READY_TIMEOUT = 60.0


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def role(pid: int, main: int) -> str:
    name = Path(f"/proc/{pid}/comm").read_text().strip()
    if pid == main:
        return "main"
    return "fork server" if name == "mc-forkserver" else f"child ({name})"


@contextlib.contextmanager
def worker(url: str, concurrency: int, extra: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "BENCH_REDIS_URL": url}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = [sys.executable, "-m", "minicelery", "-A", "bench.mc_app", "worker",
            "-c", str(concurrency), "-l", "info", *extra]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while b"ready." not in _read(log):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the worker did not start:\n{_read(log).decode()}")
                time.sleep(0.05)  # polling the log file for the ready line
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _read(log: IO[bytes]) -> bytes:
    log.seek(0)
    return log.read()


def wait_for_no_fork_server(main: int, timeout: float = 120.0) -> None:
    """Until the worker's fork server has left (a worker that keeps one, started from code,
    times out here)."""
    deadline = time.monotonic() + timeout
    while any(role(p, main) == "fork server" for p in descendants(main)):
        if time.monotonic() > deadline:
            raise SystemExit("the fork server did not leave")
        time.sleep(0.5)  # polling /proc for the lingering server's exit


def exercise(url: str, tasks: int) -> None:
    """Round trips through the worker (and a ping, stats) before it idles, as the
    benchmark's latency run does."""
    code = (
        "from bench.mc_app import app, noop\n"
        f"for _ in range({tasks}): noop.delay().get(timeout=10)\n"
        "assert app.control.inspect(timeout=2).ping()\n"
        "assert app.control.inspect(timeout=2).stats()\n"
    )
    env = {**os.environ, "BENCH_REDIS_URL": url}
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", "-c", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("extra", nargs="*", help="more worker options")
    args = parser.parse_args()
    for folder in ("minicelery", "bench"):
        compileall.compile_dir(REPO_ROOT / folder, quiet=1)
    with redis_server() as server, worker(server.url(0), args.concurrency, args.extra) as proc:
        exercise(server.url(0), args.tasks)
        wait_for_no_fork_server(proc.pid)
        time.sleep(args.idle)  # the idle spell being measured
        pids = [proc.pid, *descendants(proc.pid)]
        rows = [(role(p, proc.pid), status_kib(p, "VmRSS"), pss_kib(p)) for p in pids]
    print(f"{'process':<22}{'VmRSS MiB':>10}{'PSS MiB':>10}")
    for name, rss, pss in rows:
        print(f"{name:<22}{rss / 1024:>10.1f}{pss / 1024:>10.1f}")
    total_rss, total_pss = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':<22}{total_rss / 1024:>10.1f}{total_pss / 1024:>10.1f}")


if __name__ == "__main__":
    main()
