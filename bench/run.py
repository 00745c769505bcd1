"""Benchmark minicelery against Celery 5 on the same Redis server.

Run from the repository root::

    python -m bench.run [--tasks N] [--latency-n N] [--chord-n N] [--rounds N]
                        [--only celery|minicelery] [--out FILE]

Methodology
-----------
* One private ``redis-server`` (``/usr/bin/redis-server`` if present, otherwise the
  first on ``PATH``) is started on a free 127.0.0.1 port with persistence off
  (``--save '' --appendonly no``) and stopped by PID at the end.  Celery uses
  Redis DB 0 and minicelery DB 1 (broker and result backend share the DB); the
  DB is flushed before every phase.  The systems run one after the other, never
  concurrently: each workload on one system, then the same workload on the other, the
  order alternating between rounds (``--rounds``, default 3); the report gives each
  metric's median over the rounds, the ratio of the medians, and each round's ratio
  (a shared machine's speed drifts by tens of percent within minutes). Both run
  identical task code (``bench.celery_app`` / ``bench.mc_app``, both delegating the
  completion probe to ``bench.probe``).
* Client phases run in a fresh interpreter (``python -m bench.client``) per
  system and phase, so neither library's state leaks into the other's numbers.
* **Enqueue rate**: ``N`` calls of ``noop.delay()`` in one client process, no
  worker running; tasks/s over the loop only (interpreter start-up excluded).
* **Drain throughput**: ``N`` tasks (``count.delay(N)``) are queued first, then a
  worker is started with ``-c 2 -P prefork``.  The clock starts when the worker's
  "ready." line is read from its output (so interpreter start-up, imports and
  pool start-up are *excluded*) and stops at the wall-clock time at which the
  task that completes the ``N``-th INCR of a Redis counter finished (reported by
  that task itself).  The driver waits with a blocking BLPOP (1 s timeout per
  call), so completion detection adds no polling load.  Each task costs one
  extra INCR round trip; both systems pay it.  Results are stored as usual
  (both apps have the Redis result backend configured).
* **No-op drain**: the same with ``N`` truly no-op tasks (``noop.delay()``); completion is
  seen by polling ``DBSIZE`` every 20 ms until the result keys of all ``N`` tasks exist
  (each system leaves one key per task, its record; the few other keys make it stop a
  handful of tasks early, under 0.1% of the run). One cheap command per poll, and no
  extra work inside the tasks, whose per-task INCR above costs a fast worker
  proportionally more than a slow one.
* **Round-trip latency**: a second worker (``-c 2 -P prefork``) on an empty
  queue; 50 warm-up calls, then ``--latency-n`` timed calls of
  ``noop.delay().get(timeout=10)`` one at a time; p50 and p99 (nearest rank).
* **Canvas: a chord**: with a worker (``-c 2 -P prefork``) ready on an empty queue, the
  client builds and sends ``chord(one.s() for _ in range(N))(xsum.s())`` (``one`` returns
  1, ``xsum`` adds up the header's results) and waits on the body with ``get()``; timed
  from building the chord to ``get()`` returning ``N`` (checked), after a warm-up chord of
  10. Reported as header tasks per second over that whole time (how long sending took
  is logged). Celery counts chord parts with its Redis backend's own chord support.
* **Idle RSS**: after the latency run the worker is left idle for 2 s (minicelery's,
  once its fork server has left: it stays 20 s after its last fork, so the
  figure is the steady idle state), then the resident set sizes of its whole process
  tree (main process plus pool children) are summed (psutil, or ``/proc`` if psutil is
  missing). minicelery's modules are compiled to bytecode first, as Celery's were when
  pip installed it.
* Workers are started with ``-l info`` only so that the "ready." line is
  printed; the Celery app silences its per-task INFO records so that it does the
  same logging work as at ``-l warning`` (Celery additionally runs with
  ``--without-gossip --without-mingle --without-heartbeat``).
* Every wait has a timeout; a worker that dies or stops making progress fails
  that system's run with its last output lines.  Every process started here is
  stopped by its own PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from bench.probe import COUNT_KEY, DONE_KEY, FIRST_KEY, URL_ENV

try:
    import psutil  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - fallback to /proc
    psutil = None

REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("celery", "minicelery")
DB_NUMBER = {"celery": 0, "minicelery": 1}
# fmt: off
WORKER_ARGV = {
    "celery": [
        "-m", "celery", "-A", "bench.celery_app", "worker", "-c", "2", "-P", "prefork",
        "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ],
    "minicelery": [
        "-m", "minicelery", "-A", "bench.mc_app", "worker", "-c", "2", "-P", "prefork",
        "-l", "info",
    ],
}
# fmt: on
LATENCY_WARMUP = 50
IDLE_SECONDS = 2.0
READY_TIMEOUT = 60.0
STALL_TIMEOUT = 30.0
STOP_GRACE = 15.0
REDIS_START_TIMEOUT = 10.0
PROGRESS_EVERY = 5.0


class BenchError(RuntimeError):
    """A benchmark step failed (timeout, crashed process, bad output)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def wait_for_no_fork_server(pid: int, timeout: float = 90.0) -> None:
    """Until no descendant of ``pid`` is a fork server (minicelery's leaves 20 s after its
    last fork; Celery has none)."""
    deadline = time.monotonic() + timeout
    while any(_comm(child) == "mc-forkserver" for child in descendants(pid)):
        if time.monotonic() > deadline:
            raise BenchError("the fork server did not leave")
        time.sleep(0.5)  # polling /proc for the lingering server's exit


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """PIDs of all descendants of ``pid`` (children, grandchildren, ...)."""
    if psutil is not None:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


def rss_bytes(pid: int) -> int:
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """Summed RSS of ``pid`` and all its descendants, and the number of processes."""
    pids = [pid, *descendants(pid)]
    return sum(rss_bytes(p) for p in pids), len(pids)


def pss_bytes(pid: int) -> int:
    """Proportional set size: each shared page counted once over the processes sharing it
    (RSS counts a forked process's shared pages in every process)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no Pss for pid {pid}")


def tree_pss_bytes(pid: int) -> int | None:
    """Summed PSS of ``pid`` and its descendants; None where /proc has no smaps_rollup."""
    try:
        return sum(pss_bytes(p) for p in [pid, *descendants(pid)])
    except (OSError, BenchError):
        return None


LOAD_SAMPLES: list[float] = []  # the 1-minute load average at the start of every phase


def sample_load() -> None:
    with contextlib.suppress(OSError):
        LOAD_SAMPLES.append(os.getloadavg()[0])


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if psutil is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        return False
    return True


def stop_process(proc: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM ``proc``, SIGKILL it after a grace period, then reap leftover children."""
    if proc.poll() is not None:
        return
    children = descendants(proc.pid)
    _signal(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        log(f"{name}: pid {proc.pid} ignored SIGTERM for {STOP_GRACE:.0f}s, sending SIGKILL")
        _signal(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE)
    deadline = time.monotonic() + 5.0
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in children:
        if _alive(child):
            log(f"{name}: child pid {child} survived its parent, sending SIGKILL")
            _signal(child, signal.SIGKILL)


class OutputWatcher:
    """Drain a process's stdout/stderr in threads; remember the tail and a 'ready.' time."""

    def __init__(self, proc: subprocess.Popen[bytes], marker: str = "ready.") -> None:
        self.marker = marker
        self.tail: deque[str] = deque(maxlen=40)
        self.ready_at: float | None = None
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._pump, args=(stream,), daemon=True)
            for stream in (proc.stdout, proc.stderr)
            if stream is not None
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            now = time.time()
            line = raw.decode("utf-8", "replace").rstrip()
            with self._lock:
                self.tail.append(line)
                if self.ready_at is None and self.marker in line:
                    self.ready_at = now
                    self.ready.set()

    def text(self) -> str:
        with self._lock:
            return "\n".join(f"    | {line}" for line in self.tail) or "    | (no output)"

    def join(self, timeout: float = 2.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _child_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env[URL_ENV] = redis_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(argv: Sequence[str], redis_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=_child_env(redis_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@contextlib.contextmanager
def worker(system: str, redis_url: str) -> Iterator[tuple[subprocess.Popen[bytes], OutputWatcher]]:
    """Start a worker for ``system``; always stop it (and its pool) on exit."""
    name = f"{system} worker"
    proc = _spawn(WORKER_ARGV[system], redis_url)
    watcher = OutputWatcher(proc)
    try:
        yield proc, watcher
    finally:
        stop_process(proc, name)
        watcher.join()


def wait_ready(system: str, proc: subprocess.Popen[bytes], watcher: OutputWatcher) -> float:
    """Wait for the worker's 'ready.' line; return the wall-clock time it was read."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not watcher.ready.wait(0.1):
        if proc.poll() is not None:
            raise BenchError(
                f"{system} worker exited with code {proc.returncode} before it was ready:\n"
                + watcher.text()
            )
        if time.monotonic() > deadline:
            raise BenchError(
                f"{system} worker printed no 'ready.' line within {READY_TIMEOUT:.0f}s:\n"
                + watcher.text()
            )
    assert watcher.ready_at is not None
    return watcher.ready_at


def run_client(system: str, phase: str, n: int, redis_url: str, timeout: float) -> dict[str, Any]:
    """Run one ``bench.client`` phase in a fresh interpreter and return its JSON result."""
    argv = ["-m", "bench.client", system, phase, "-n", str(n), "--warmup", str(LATENCY_WARMUP)]
    proc = _spawn(argv, redis_url)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"{system}: client phase {phase!r} did not finish in {timeout:.0f}s"
        ) from exc
    finally:
        stop_process(proc, f"{system} client")
    if proc.returncode != 0:
        lines = err.decode(errors="replace").splitlines()[-25:]
        tail = "\n".join(f"    | {line}" for line in lines)
        raise BenchError(
            f"{system}: client phase {phase!r} failed (exit {proc.returncode}):\n{tail}"
        )
    try:
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise BenchError(f"{system}: client phase {phase!r} printed no JSON result") from exc
    return result


# --------------------------------------------------------------------------- redis-server


def find_redis_server() -> str:
    preferred = "/usr/bin/redis-server"
    if os.access(preferred, os.X_OK):
        return preferred
    found = shutil.which("redis-server")
    if found is None:
        raise BenchError("redis-server not found (install the Redis server package)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    version: str

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=30)


def _wait_for_redis(proc: subprocess.Popen[bytes], port: int) -> str | None:
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return str(client.info("server")["redis_version"])
        except redis.ConnectionError:
            time.sleep(0.05)
    return None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start a private, non-persistent redis-server on a free loopback port."""
    binary = find_redis_server()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        for _attempt in range(3):
            port = free_port()
            argv = [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--loglevel",
                "warning",
            ]
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            watcher = OutputWatcher(proc)
            try:
                version = _wait_for_redis(proc, port)
                if version is not None:
                    log(f"redis-server {version} (pid {proc.pid}) on 127.0.0.1:{port}")
                    yield RedisServer(port=port, version=version)
                    return
                log(f"redis-server failed to start on port {port}:\n{watcher.text()}")
            finally:
                stop_process(proc, "redis-server")
                watcher.join()
        raise BenchError("could not start redis-server")


# --------------------------------------------------------------------------- measurements


@dataclass
class Metrics:
    version: str = "?"
    enqueue_rate: float | None = None
    drain_rate: float | None = None
    drain_noop_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rss_mib: float | None = None
    pss_mib: float | None = None
    chord_rate: float | None = None
    errors: list[str] = field(default_factory=list)


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def measure_enqueue(system: str, server: RedisServer, n: int, metrics: Metrics) -> None:
    db = DB_NUMBER[system]
    server.client(db).flushdb()
    log(f"{system}: enqueue {n} noop.delay() ...")
    result = run_client(system, "enqueue", n, server.url(db), timeout=120 + n / 20)
    metrics.version = str(result["version"])
    metrics.enqueue_rate = float(result["rate"])
    log(f"{system}: enqueue {n} ... {metrics.enqueue_rate:,.0f}/s")


def _wait_drained(
    system: str, proc: subprocess.Popen[bytes], watcher: OutputWatcher, client: redis.Redis, n: int
) -> float:
    """Block until the worker reports the n-th finished task; return that wall-clock time."""
    last_count, last_change, last_report = -1, time.monotonic(), time.monotonic()
    while True:
        popped = client.blpop([DONE_KEY], timeout=1)
        if popped is not None:
            return float(popped[1])
        if proc.poll() is not None:
            raise BenchError(
                f"{system} worker died during drain (exit {proc.returncode}):\n" + watcher.text()
            )
        count, now = int(client.get(COUNT_KEY) or 0), time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > STALL_TIMEOUT:
            raise BenchError(
                f"{system} worker made no progress for {STALL_TIMEOUT:.0f}s "
                f"({count}/{n} tasks done):\n" + watcher.text()
            )
        if now - last_report >= PROGRESS_EVERY:
            log(f"{system}: drain ... {count}/{n}")
            last_report = now


def measure_drain(system: str, server: RedisServer, n: int, metrics: Metrics) -> None:
    db = DB_NUMBER[system]
    client = server.client(db)
    client.flushdb()
    log(f"{system}: queueing {n} count tasks for the drain ...")
    run_client(system, "fill", n, server.url(db), timeout=120 + n / 20)
    if client.exists(COUNT_KEY, DONE_KEY):
        raise BenchError(f"{system}: tasks ran before any worker was started")
    log(f"{system}: drain {n} tasks, worker -c 2 -P prefork ...")
    with worker(system, server.url(db)) as (proc, watcher):
        started = wait_ready(system, proc, watcher)
        finished = _wait_drained(system, proc, watcher, client, n)
    first = client.get(FIRST_KEY)
    if first is not None:
        delay_ms = 1000 * (float(first) - started)
        log(f"{system}: first task finished {delay_ms:.0f} ms after 'ready.'")
    metrics.drain_rate = n / (finished - started)
    log(f"{system}: drain {n} ... {metrics.drain_rate:,.0f}/s ({finished - started:.2f}s)")


# Each finished task leaves one result-backend key: Celery's celery-task-meta-<id>,
# minicelery's record (its stream is written only while a client waits on the task).
DBSIZE_POLL = 0.02


def measure_drain_noop(system: str, server: RedisServer, n: int, metrics: Metrics) -> None:
    """Drain of truly no-op tasks: completion is seen by polling DBSIZE every 20 ms until the
    result keys of all tasks exist (one cheap command per poll; no per-task extra work)."""
    db = DB_NUMBER[system]
    client = server.client(db)
    client.flushdb()
    log(f"{system}: queueing {n} noop tasks for the no-op drain ...")
    run_client(system, "fill_noop", n, server.url(db), timeout=120 + n / 20)
    target = n
    log(f"{system}: no-op drain {n} tasks, worker -c 2 -P prefork ...")
    with worker(system, server.url(db)) as (proc, watcher):
        started = wait_ready(system, proc, watcher)
        last, last_change = -1, time.monotonic()
        while (size := int(client.dbsize())) < target:
            if proc.poll() is not None:
                raise BenchError(f"{system} worker died during drain:\n" + watcher.text())
            if size != last:
                last, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > STALL_TIMEOUT:
                raise BenchError(f"{system} no-op drain stalled at {size}/{target} keys")
            time.sleep(DBSIZE_POLL)  # the poll interval of a measurement, not synchronisation
        finished = time.time()  # wall clock, like the 'ready.' time it is compared with
    metrics.drain_noop_rate = n / (finished - started)
    log(f"{system}: no-op drain {n} ... {metrics.drain_noop_rate:,.0f}/s")


def measure_latency_and_rss(system: str, server: RedisServer, n: int, metrics: Metrics) -> None:
    db = DB_NUMBER[system]
    server.client(db).flushdb()
    log(f"{system}: latency {LATENCY_WARMUP} warm-up + {n} x noop.delay().get() ...")
    with worker(system, server.url(db)) as (proc, watcher):
        wait_ready(system, proc, watcher)
        try:
            result = run_client(system, "latency", n, server.url(db), timeout=120 + n * 0.5)
        except BenchError as exc:
            raise BenchError(f"{exc}\n  worker output:\n{watcher.text()}") from None
        samples = [float(s) for s in result["samples"]]
        metrics.p50_ms = 1000 * percentile(samples, 50)
        metrics.p99_ms = 1000 * percentile(samples, 99)
        log(f"{system}: latency ... p50 {metrics.p50_ms:.2f} ms, p99 {metrics.p99_ms:.2f} ms")
        wait_for_no_fork_server(proc.pid)
        time.sleep(IDLE_SECONDS)
        if proc.poll() is not None:
            raise BenchError(f"{system} worker exited while idle:\n{watcher.text()}")
        total, count = tree_rss_bytes(proc.pid)
        metrics.rss_mib = total / 2**20
        pss = tree_pss_bytes(proc.pid)
        metrics.pss_mib = None if pss is None else pss / 2**20
        log(f"{system}: idle RSS ... {metrics.rss_mib:.1f} MiB over {count} processes"
            f" (PSS {metrics.pss_mib or 0:.1f} MiB)")  # fmt: skip


def measure_chord(system: str, server: RedisServer, n: int, metrics: Metrics) -> None:
    db = DB_NUMBER[system]
    server.client(db).flushdb()
    log(f"{system}: chord of {n} header tasks + xsum, worker -c 2 -P prefork ...")
    with worker(system, server.url(db)) as (proc, watcher):
        wait_ready(system, proc, watcher)
        try:
            result = run_client(system, "chord", n, server.url(db), timeout=180 + n / 10)
        except BenchError as exc:
            raise BenchError(f"{exc}\n  worker output:\n{watcher.text()}") from None
    metrics.chord_rate = float(result["rate"])
    log(
        f"{system}: chord of {n} ... {result['seconds']:.2f}s "
        f"(sent in {result['publish_seconds']:.2f}s), {metrics.chord_rate:,.0f} tasks/s"
    )


def compile_bytecode() -> None:
    """Compile minicelery's and the bench apps' modules, as pip compiled Celery's when it
    installed it: where ``PYTHONDONTWRITEBYTECODE`` is set, a source checkout would compile
    every module from source in every worker start, which costs start-up time and about
    3.5 MiB of idle RSS over a worker's four processes."""
    for folder in ("minicelery", "bench"):
        compileall.compile_dir(REPO_ROOT / folder, quiet=1)


def preflight(system: str, server: RedisServer, metrics: Metrics) -> None:
    """Check that the app module imports and the worker CLI exists before measuring."""
    db = DB_NUMBER[system]
    metrics.version = str(run_client(system, "check", 0, server.url(db), timeout=60)["version"])


STEPS = (
    (measure_enqueue, "tasks"),
    (measure_drain, "tasks"),
    (measure_drain_noop, "tasks"),
    (measure_latency_and_rss, "latency_n"),
    (measure_chord, "chord_n"),
)
METRIC_FIELDS = ("enqueue_rate", "drain_rate", "drain_noop_rate", "p50_ms", "p99_ms", "rss_mib",
                 "pss_mib", "chord_rate")  # fmt: skip


def measure(
    systems: Sequence[str], server: RedisServer, args: argparse.Namespace
) -> list[dict[str, Metrics]]:
    """Every workload on every system, ``args.rounds`` times. Within a round each workload
    runs on one system right after the other (the order alternates between rounds), so a
    slow or fast spell of a shared machine falls on both."""
    versions: dict[str, str] = {}
    failed: dict[str, str] = {}
    for system in systems:
        probe = Metrics()
        try:
            preflight(system, server, probe)
            versions[system] = probe.version
            log(f"{system} {probe.version}")
        except BenchError as exc:
            log(f"{system}: skipped, preflight failed: {exc}")
            failed[system] = f"{system}: preflight failed: {exc}"
    rounds: list[dict[str, Metrics]] = []
    for number in range(args.rounds):
        if args.rounds > 1:
            log(f"round {number + 1} of {args.rounds}")
        results = {s: Metrics(version=versions.get(s, "?")) for s in systems}
        for system, message in failed.items():
            results[system].errors.append(message)
        order = [s for s in systems if s in versions]
        if number % 2:
            order.reverse()
        for step, size in STEPS:
            for system in order:
                sample_load()
                try:
                    step(system, server, getattr(args, size), results[system])
                except (BenchError, redis.RedisError) as exc:
                    message = f"{system}: {step.__name__} failed: {exc}"
                    log(message)
                    results[system].errors.append(message)
                server.client(DB_NUMBER[system]).flushdb()
        rounds.append(results)
    return rounds


def median_metrics(rounds: Sequence[Metrics]) -> Metrics:
    """Each metric's median over the rounds that measured it."""
    merged = Metrics(version=rounds[0].version)
    for name in METRIC_FIELDS:
        values = [getattr(m, name) for m in rounds if getattr(m, name) is not None]
        setattr(merged, name, statistics.median(values) if values else None)
    merged.errors = [e for m in rounds for e in m.errors]
    return merged


# --------------------------------------------------------------------------- report


def _rows(tasks: int, latency_n: int, chord_n: int) -> list[tuple[str, str, str]]:
    """(title, Metrics attribute, format) for each table row."""
    return [
        (
            f"Enqueue rate, {tasks:,} x `noop.delay()` (tasks/s, higher is better)",
            "enqueue_rate",
            "{:,.0f}",
        ),
        (
            f"Drain throughput, {tasks:,} queued tasks, `-c 2 -P prefork` "
            "(tasks/s, higher is better)",
            "drain_rate",
            "{:,.0f}",
        ),
        (
            f"Drain throughput, {tasks:,} queued no-op tasks, completion by key count "
            "(tasks/s, higher is better)",
            "drain_noop_rate",
            "{:,.0f}",
        ),
        (f"Round-trip latency p50, {latency_n} calls (ms, lower is better)", "p50_ms", "{:.2f}"),
        (f"Round-trip latency p99, {latency_n} calls (ms, lower is better)", "p99_ms", "{:.2f}"),
        (
            "Idle RSS, the worker's process tree: main, 2 children (minicelery's fork server "
            "gone, as at idle) (MiB, lower is better)",
            "rss_mib",
            "{:.1f}",
        ),
        ("Idle PSS, the same processes (MiB, lower is better)", "pss_mib", "{:.1f}"),
        (
            f"Canvas: chord of {chord_n:,} no-op tasks + xsum, sent to body result, "
            "`-c 2 -P prefork` (header tasks/s, higher is better)",
            "chord_rate",
            "{:,.0f}",
        ),
    ]


def _cell(metrics: Metrics | None, attr: str, fmt: str) -> str:
    if metrics is None:
        return "not run"
    value = getattr(metrics, attr)
    return "failed" if value is None else fmt.format(value)


def _ratio(results: dict[str, Metrics], attr: str) -> str:
    if "celery" not in results or "minicelery" not in results:
        return "n/a"
    base, mine = getattr(results["celery"], attr), getattr(results["minicelery"], attr)
    if base is None or mine is None or base == 0:
        return "n/a"
    return f"{mine / base:.2f}"


def markdown_table(
    rounds: Sequence[dict[str, Metrics]], tasks: int, latency_n: int, chord_n: int
) -> str:
    """Medians over the rounds, their ratio, and with several rounds each round's ratio."""
    systems = [s for s in SYSTEMS if s in rounds[0]]
    results = {s: median_metrics([r[s] for r in rounds]) for s in systems}
    header = ["Metric"]
    for system in SYSTEMS:
        label = "Celery" if system == "celery" else "minicelery"
        version = results[system].version if system in results else "?"
        header.append(label if version == "?" else f"{label} {version}")
    header.append("minicelery / Celery")
    if len(rounds) > 1:
        header.append("ratio in each round")
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for title, attr, fmt in _rows(tasks, latency_n, chord_n):
        cells = [_cell(results.get(system), attr, fmt) for system in SYSTEMS]
        cells.append(_ratio(results, attr))
        if len(rounds) > 1:
            cells.append(" / ".join(_ratio(r, attr) for r in rounds))
        lines.append("| " + " | ".join([title, *cells]) + " |")
    return "\n".join(lines)


def environment_line(server: RedisServer) -> str:
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Measured {today} on {os.cpu_count()} CPU cores ({platform.machine()}, "
        f"{platform.system()}), redis-server {server.version}, "
        f"Python {platform.python_version()}."
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tasks",
        type=int,
        default=10_000,
        help="tasks for the enqueue and drain workloads (default 10000)",
    )
    parser.add_argument(
        "--latency-n",
        type=int,
        default=500,
        help="timed round trips after 50 warm-up calls (default 500)",
    )
    parser.add_argument(
        "--chord-n",
        type=int,
        default=10_000,
        help="header tasks of the canvas chord workload (default 10000)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times every workload runs on each system; medians are reported (default 3)",
    )
    parser.add_argument("--only", choices=SYSTEMS, help="benchmark only one system")
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    if min(args.tasks, args.latency_n, args.chord_n, args.rounds) < 1:
        parser.error("--tasks, --latency-n, --chord-n and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    systems = [args.only] if args.only else list(SYSTEMS)
    compile_bytecode()
    try:
        with redis_server() as server:
            rounds = measure(systems, server, args)
            env_line = environment_line(server)
    except BenchError as exc:
        log(f"benchmark aborted: {exc}")
        return 2
    report = markdown_table(rounds, args.tasks, args.latency_n, args.chord_n)
    if len(rounds) > 1:
        report += (
            f"\n\nEach figure is the median of {len(rounds)} rounds; the ratio column divides"
            " the medians."
        )
    report += "\n\n" + env_line + "\n"
    if LOAD_SAMPLES:
        report += (
            f"\n1-minute load average at the start of each of the {len(LOAD_SAMPLES)} phases:"
            f" min {min(LOAD_SAMPLES):.2f}, median {statistics.median(LOAD_SAMPLES):.2f},"
            f" max {max(LOAD_SAMPLES):.2f}.\n"
        )
    errors = [e for r in rounds for m in r.values() for e in m.errors]
    if errors:
        report += "\nFailures:\n\n" + "".join(f"- {e.splitlines()[0]}\n" for e in errors)
    print(report, end="")
    if args.out is not None:
        args.out.write_text(
            "# minicelery vs Celery 5 benchmark\n\n"
            + report
            + "\nReproduce with `python -m bench.run --out bench/RESULTS.md`; the methodology is"
            " described in the docstring of `bench/run.py`.\n"
        )
        log(f"report written to {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
