"""The application the chaos soak's workers run (``minicelery -A bench.soak_app worker``).

Every task writes what it does to a side channel that no chaos touches: one file per process
under ``$MC_SOAK_RUNS_DIR``, opened with ``O_APPEND``. A line is written with one ``write``
before the task's work starts (``S``) and one after it ends (``E``), so a process killed at any
point leaves either nothing or whole lines. The soak counts executions from these files, not
from the result backend, which is the thing under test.

Line format (space separated): ``S <task id> <pid> <ancestor pids, comma separated> <time>``
and ``E <task id> <pid> <time>``; times are ``time.time()``.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from minicelery import Celery
from minicelery.signals import after_setup_logger

REDIS_URL = os.environ.get("MC_SOAK_REDIS_URL", "memory://soak")
RUNS_DIR = os.environ.get("MC_SOAK_RUNS_DIR", "")

app = Celery(
    "soak",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_SOAK_PREFIX", "soak"),
    worker_heartbeat_interval=float(os.environ.get("MC_SOAK_HEARTBEAT", "2")),
    worker_lost_timeout=float(os.environ.get("MC_SOAK_LOST_TIMEOUT", "10")),
)

# SIGUSR2 prints every thread's stack to stderr (the worker's log): the soak sends it to a
# worker that stopped making progress, before stopping it.
faulthandler.register(signal.SIGUSR2, all_threads=True)


class _WithPid(logging.Filter):
    """``MainProcess:1234``: which process wrote a line, when a fork may have gone wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.processName or "?"
        if not name.endswith(f":{record.process}"):
            record.processName = f"{name}:{record.process}"
        return True


@after_setup_logger.connect
def _log_pids(logger: logging.Logger | None = None, **_: Any) -> None:
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(_WithPid())


def _log_loop_exceptions() -> None:
    """Diagnosis only: if the worker's main loop ends with an exception, log it with its
    traceback before it propagates (unchanged), so a worker that exits by itself says why.
    Does nothing when the worker has no such loop."""
    try:
        from minicelery.worker.controller import WorkController
    except ImportError:
        return
    loop = getattr(WorkController, "_loop", None)
    if loop is None or getattr(loop, "_soak_wrapped", False):
        return

    def logged(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return loop(self, *args, **kwargs)
        except BaseException:
            logging.getLogger("bench.soak").exception("the worker's main loop raised")
            raise

    logged._soak_wrapped = True  # type: ignore[attr-defined]
    WorkController._loop = logged  # type: ignore[method-assign]


_log_loop_exceptions()

_files: dict[int, int] = {}  # pid -> descriptor: a forked child opens its own file
_ancestors: dict[int, str] = {}


def _parent_of(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def ancestors() -> str:
    """This process's ancestors up to (not including) init, read once per process: the
    worker's main process is among them whatever the pool puts in between."""
    pid = os.getpid()
    if pid not in _ancestors:
        chain: list[str] = []
        parent = _parent_of(pid)
        while parent > 1 and len(chain) < 8:
            chain.append(str(parent))
            parent = _parent_of(parent)
        _ancestors[pid] = ",".join(chain) or "-"
    return _ancestors[pid]


def record(kind: str, task_id: str) -> None:
    """Append one line for this process; a single ``write`` of a short line, so it lands
    whole or not at all."""
    if not RUNS_DIR:
        return
    pid = os.getpid()
    fd = _files.get(pid)
    if fd is None:
        path = os.path.join(RUNS_DIR, f"{pid}.log")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _files[pid] = fd
    if kind == "S":
        line = f"S {task_id} {pid} {ancestors()} {time.time():.6f}\n"
    else:
        line = f"E {task_id} {pid} {time.time():.6f}\n"
    os.write(fd, line.encode())


def work(task: Any, seconds: float, fail: bool) -> float:
    """What every soak task does: record the start, sleep, maybe raise, record the end (the
    end is also written before a deliberate failure, which still ran to completion)."""
    task_id = task.request.id
    record("S", task_id)
    if seconds:
        time.sleep(seconds)
    record("E", task_id)
    if fail:
        raise ValueError(f"deliberate failure of {task_id}")
    return seconds


@app.task(bind=True)
def early(self: Any, seconds: float = 0.0, fail: bool = False) -> float:
    """Acknowledged when it starts (the default): at most once."""
    return work(self, seconds, fail)


@app.task(bind=True, acks_late=True)
def late(self: Any, seconds: float = 0.0, fail: bool = False) -> float:
    """Acknowledged after it ends: rerun only if its worker dies."""
    return work(self, seconds, fail)


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True)
def late_reject(self: Any, seconds: float = 0.0, fail: bool = False) -> float:
    """Acknowledged after it ends, and requeued when its child process is killed."""
    return work(self, seconds, fail)
