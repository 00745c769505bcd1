"""Shared helpers for the test-suite (no dependency on minicelery itself).

Everything here synchronises by *polling* (``wait_until``), never by fixed sleeps,
and every process it starts is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from minicelery import Celery

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
DEFAULT_REDIS_SERVER_BIN = "/usr/bin/redis-server"
DEFAULT_APP_MODULE = "tests.integration.apps.basic"

T = TypeVar("T")
Message = str | Callable[[], str]


# --------------------------------------------------------------------------- polling


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: Message = "",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises ``AssertionError`` (with ``message``; a callable is evaluated lazily, so it
    can include state captured at failure time) if it is still falsy after ``timeout``
    seconds. Exceptions raised by the predicate propagate immediately.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    text = message() if callable(message) else message
    detail = f"condition not met within {timeout:.2f}s"
    raise AssertionError(f"{text} ({detail})" if text else detail)


# --------------------------------------------------------------------------- /proc


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``comm`` field (index 0 is the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (guards against PID reuse), None if gone."""
    fields = _read_stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """True if ``pid`` exists and is not a zombie (and, if given, has this start time)."""
    fields = _read_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def child_pids(pid: int) -> list[int]:
    """PIDs of the live direct children of ``pid``."""
    found: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    have_children_files = False
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for children_file in task_dir.glob("*/children"):
            have_children_files = True
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found.update(int(p) for p in children_file.read_text().split())
    if not have_children_files:  # kernel without CONFIG_PROC_CHILDREN: scan PPid
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = _read_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.add(int(entry.name))
    return sorted(p for p in found if pid_alive(p))


FORK_SERVER_NAME = "mc-forkserver"


def process_name(pid: int) -> str | None:
    """The kernel's name of ``pid`` (/proc/PID/comm), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def is_fork_server(pid: int) -> bool:
    """Whether ``pid`` is a fork server: named so, or one started by exec that has not
    named itself yet (its interpreter is still starting; the children it forks, which
    share its command line, are named before they exist)."""
    name = process_name(pid)
    if name is None or name.startswith("mc-child-"):
        return False
    if name == FORK_SERVER_NAME:
        return True
    try:
        return b"minicelery.worker.forkboot" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def pool_pids(pid: int) -> list[int]:
    """The pool's processes among the children of worker ``pid``: not its fork server."""
    return [child for child in child_pids(pid) if not is_fork_server(child)]


def descendant_pids(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (children, grandchildren, ...)."""
    result: list[int] = []
    stack = [pid]
    while stack:
        for child in child_pids(stack.pop()):
            if child not in result:
                result.append(child)
                stack.append(child)
    return result


def kill_pid(pid: int, sig: int = signal.SIGKILL, start_time: int | None = None) -> bool:
    """Send ``sig`` to ``pid`` if it is still the same live process. True if sent."""
    if not pid_alive(pid, start_time):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- redis


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is currently free on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server_bin() -> str | None:
    """``$REDIS_SERVER_BIN``, else /usr/bin/redis-server, else redis-server on PATH."""
    configured = os.environ.get("REDIS_SERVER_BIN")
    if configured:
        return configured
    if os.access(DEFAULT_REDIS_SERVER_BIN, os.X_OK):
        return DEFAULT_REDIS_SERVER_BIN
    return shutil.which("redis-server")


class RedisServer:
    """A throw-away ``redis-server`` on a loopback port (no persistence)."""

    def __init__(self, binary: str, workdir: Path, host: str = LOOPBACK) -> None:
        self.binary = binary
        self.host = host
        self.workdir = workdir
        self.logfile = workdir / "redis-server.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        """A new client (close it when done, or use it as a context manager)."""
        kwargs.setdefault("socket_connect_timeout", 2.0)
        kwargs.setdefault("socket_timeout", 5.0)
        return redis.Redis(host=self.host, port=self.port, db=db, **kwargs)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 10.0) -> None:
        """Start the server; after ``stop()`` it restarts on the same port (same URL)."""
        if self.is_running():
            return
        if self.port:
            self._spawn_and_wait(timeout)
            return
        # First start: the free port may be grabbed by someone else in the meantime.
        for attempt in itertools.count(1):
            self.port = free_port(self.host)
            log_size = len(self.log())
            try:
                self._spawn_and_wait(timeout)
                return
            except RuntimeError:
                if attempt >= 5 or "already in use" not in self.log()[log_size:]:
                    raise

    def ensure_running(self) -> None:
        if not self.is_running():
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _spawn_and_wait(self, timeout: float) -> None:
        argv = [
            self.binary,
            "--save", "",
            "--appendonly", "no",
            "--port", str(self.port),
            "--bind", self.host,
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        proc = self._proc
        probe = self.client(
            socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )

        def answers_ping() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {proc.returncode} on port {self.port}:\n"
                    + self.log()[-4000:]
                )
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(
                answers_ping,
                timeout=timeout,
                interval=0.02,
                message=lambda: f"redis-server did not answer PING:\n{self.log()[-4000:]}",
            )
        except BaseException:
            self.stop()
            raise
        finally:
            probe.close()


def delete_keys_matching(server: RedisServer, pattern: str, batch: int = 500) -> int:
    """Delete keys matching ``pattern`` in every non-empty database (SCAN, not KEYS)."""
    if hasattr(server, "delete_matching"):  # a test cluster (tests.cluster_mode)
        return int(server.delete_matching(pattern))
    deleted = 0
    with server.client() as client:
        keyspace: dict[str, Any] = client.info("keyspace")
    databases = sorted(int(name[2:]) for name in keyspace if name.startswith("db"))
    for db in databases:
        with server.client(db=db) as client:
            pending: list[Any] = []
            for key in client.scan_iter(match=pattern, count=1000):
                pending.append(key)
                if len(pending) >= batch:
                    deleted += client.delete(*pending)
                    pending.clear()
            if pending:
                deleted += client.delete(*pending)
    return deleted


@contextlib.contextmanager
def prefixed_keys(server: RedisServer, prefix: str | None = None) -> Iterator[str]:
    """Yield a unique key prefix ``t-<8 hex>``; delete ``*<prefix>*`` keys afterwards."""
    prefix = prefix or f"t-{uuid.uuid4().hex[:8]}"
    server.ensure_running()
    try:
        yield prefix
    finally:
        server.ensure_running()  # the test may have stopped it (Redis-restart tests)
        delete_keys_matching(server, f"*{prefix}*")


# --------------------------------------------------------------------------- processes


class ManagedProcess:
    """A subprocess whose merged stdout/stderr is drained into ``lines`` by a thread."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | str = REPO_ROOT,
        env: Mapping[str, str] | None = None,
        label: str = "process",
    ) -> None:
        self.argv = list(argv)
        self.label = label
        self.lines: list[str] = []
        # pid -> start time of every descendant ever seen (see record_children()).
        self.recorded_children: dict[int, int] = {}
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._eof = threading.Event()
        self._reader = threading.Thread(
            target=self._drain, name=f"output-{label}-{self.proc.pid}", daemon=True
        )
        self._reader.start()

    def _drain(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            for line in stream:
                self.lines.append(line.rstrip("\n"))
        except ValueError:  # stream closed under us
            pass
        finally:
            self._eof.set()

    # -- inspection ------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(self.lines)

    def describe(self, tail: int = 80) -> str:
        shown = self.lines[-tail:]
        return (
            f"{self.label} pid={self.pid} returncode={self.proc.poll()} "
            f"argv={self.argv!r}\n--- last {len(shown)} output lines ---\n" + "\n".join(shown)
        )

    def children(self) -> list[int]:
        """PIDs of the live pool processes, the direct children but the fork server (all
        descendants are recorded for the final cleanup)."""
        self.record_children()
        return pool_pids(self.pid) if self.is_alive() else []

    def record_children(self) -> list[int]:
        """Remember all live descendants, so they can be killed even once orphaned."""
        if not self.is_alive():
            return []
        found = descendant_pids(self.pid)
        for pid in found:
            start_time = proc_start_time(pid)
            if pid not in self.recorded_children and start_time is not None:
                self.recorded_children[pid] = start_time
        return found

    def leftover_children(self) -> list[int]:
        """Recorded descendants that are still alive (same PID *and* start time)."""
        return [pid for pid, st in self.recorded_children.items() if pid_alive(pid, st)]

    # -- waiting ---------------------------------------------------------------------

    def wait_for_line(self, substring: str, timeout: float = 10.0, start: int = 0) -> str:
        """Return the first output line (from index ``start``) containing ``substring``."""
        checked = start

        def find() -> str | None:
            nonlocal checked
            eof = self._eof.is_set()  # read before scanning: no line can be missed
            lines = self.lines
            while checked < len(lines):
                if substring in lines[checked]:
                    return lines[checked]
                checked += 1
            if eof:
                raise AssertionError(
                    f"output ended without a line containing {substring!r}\n" + self.describe()
                )
            return None

        found = wait_until(
            find,
            timeout=timeout,
            message=lambda: f"no line containing {substring!r}\n{self.describe()}",
        )
        assert found is not None
        return found

    def wait_ready(self, timeout: float = 15.0) -> str:
        """Wait for the ``ready.`` banner line (printed by a worker once it consumes)."""
        return self.wait_for_line("ready.", timeout=timeout)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait (polling) for the process to exit by itself; returns its exit code."""
        wait_until(
            lambda: self.proc.poll() is not None,
            timeout=timeout,
            message=lambda: f"process did not exit\n{self.describe()}",
        )
        return self.proc.wait()

    # -- stopping --------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        if self.is_alive():
            self.record_children()
            self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the main process only (its children are orphaned, but recorded)."""
        self.send_signal(signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def kill_leftover_children(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL recorded descendants that are still alive; returns their PIDs."""
        killed = [
            pid
            for pid, start_time in self.recorded_children.items()
            if kill_pid(pid, signal.SIGKILL, start_time)
        ]
        if killed:
            wait_until(
                lambda: not self.leftover_children(),
                timeout=timeout,
                message=f"{self.label}: children {killed} survived SIGKILL",
            )
        return killed

    def join_reader(self, timeout: float = 2.0) -> None:
        """Let the output thread finish (it ends once every writer of the pipe is gone)."""
        self._reader.join(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Final cleanup: stop the process, kill leftover children, reap the reader."""
        self.record_children()
        self.stop(timeout)
        self.kill_leftover_children()
        self.join_reader()


# --------------------------------------------------------------------------- minicelery


def minicelery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "minicelery", *args]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m minicelery *args`` from the repo root and capture its output.

    ``env`` is added on top of the current environment.
    """
    return subprocess.run(
        minicelery_argv(*args),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


# Set to 0 to run every prefork worker of the integration tests with --no-children-consume
# (the classic pool: the main process reserves and hands each task to a child).
CHILDREN_CONSUME_ENV = "MC_TEST_CHILDREN_CONSUME"


def children_consume() -> bool:
    """True when this run's prefork workers consume in their children (the default; the
    env switch set to 0 runs the classic pool)."""
    return os.environ.get(CHILDREN_CONSUME_ENV, "1") != "0"


def mode_args(pool: str = "prefork") -> tuple[str, ...]:
    """The worker options of this run's mode, for a prefork worker: ``--children-consume``
    or ``--no-children-consume``. Every test that starts a worker by its own argv adds them."""
    if pool != "prefork":
        return ()
    return ("--children-consume",) if children_consume() else ("--no-children-consume",)


class WorkerFactory:
    """Starts ``python -m minicelery worker`` subprocesses and cleans them all up."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        argv_builder: Callable[..., list[str]] = minicelery_argv,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.argv_builder = argv_builder
        self.workers: list[ManagedProcess] = []
        self._counter = itertools.count(1)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "MC_TEST_REDIS_URL": self.redis_url,
            "MC_TEST_PREFIX": self.prefix,
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }

    def __call__(
        self,
        app_module: str = DEFAULT_APP_MODULE,
        concurrency: int = 2,
        pool: str = "prefork",
        name: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> ManagedProcess:
        number = next(self._counter)
        name = name or f"w{number}-{uuid.uuid4().hex[:6]}@%h"
        if self.argv_builder is minicelery_argv:
            extra_args = (*mode_args(pool), *extra_args)
        argv = self.argv_builder(
            "-A", app_module, "worker", "-l", "info",
            "-c", str(concurrency), "-P", pool, "-n", name, *extra_args,
        )  # fmt: skip
        worker = ManagedProcess(argv, cwd=REPO_ROOT, env=self.env(env), label=f"worker {name}")
        self.workers.append(worker)
        if wait_ready:
            worker.wait_ready()
        return worker

    def cleanup(self, timeout: float = 10.0) -> None:
        """Stop every worker by its PID, then SIGKILL any recorded leftover children."""
        for worker in self.workers:
            worker.record_children()
        for worker in self.workers:  # SIGTERM all first so they shut down in parallel
            worker.terminate()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.proc.wait()
        for worker in self.workers:
            worker.kill_leftover_children()
            worker.join_reader()

    def report(self, tail: int = 200) -> str:
        return "\n\n".join(worker.describe(tail) for worker in self.workers)


@contextlib.contextmanager
def pointed_at(app: Celery, redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    """A test app module's app, in this process, pointed at the test's Redis and key prefix
    (the same settings its workers get from the environment), made current."""
    app.close()
    app.conf.update(
        broker_url=redis_server.url, result_backend=redis_server.url, key_prefix=key_prefix
    )
    app.set_current()
    try:
        yield app
    finally:
        app.close()
