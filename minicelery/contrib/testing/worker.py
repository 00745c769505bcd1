"""A real worker in a thread of the test process (Celery's
``celery.contrib.testing.worker.start_worker``): it consumes from the app's broker and runs
tasks with the pool asked for, and is stopped, warm, when the block ends.

The ``prefork`` pool forks its children from the worker's thread, as Celery's does: the
children run the tasks the test process had registered when the worker started (tasks
defined later need ``solo`` or ``threads``). Forking beside other threads is what the worker
command avoids; here it is the price of a prefork worker inside a test, and the children
only run tasks and talk to the worker over pipes, never to Redis.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ... import signals
from ...app import Celery
from ...backend import DisabledBackend
from ...exceptions import ImproperlyConfigured
from ...utils.nodenames import anon_nodename
from ...worker.controller import WorkController, WorkerOptions

WORKER_LOGLEVEL = os.environ.get("WORKER_LOGLEVEL", "error")

test_worker_starting = signals.Signal("test_worker_starting")
test_worker_started = signals.Signal("test_worker_started", frozenset({"worker", "consumer"}))
test_worker_stopped = signals.Signal("test_worker_stopped", frozenset({"worker"}))

#: Celery's worker arguments that have no meaning for an embedded worker here.
IGNORED_OPTIONS = frozenset({
    "loglevel", "logfile", "ready_callback", "without_heartbeat", "without_mingle",
    "without_gossip", "optimization", "state_db", "statedb", "task_events", "send_events",
    "purge", "include", "pool_cls", "scheduler", "beat", "WorkController",
})  # fmt: skip
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(WorkerOptions))


class TestWorkController(WorkController):
    """A worker a test can wait on: :meth:`ensure_started` returns once it consumes."""

    __test__ = False  # a worker, not a test class, for pytest

    def __init__(self, app: Celery, options: WorkerOptions) -> None:
        super().__init__(app, options)
        self._on_started = threading.Event()
        self.failure: BaseException | None = None

    def ensure_started(self, timeout: float | None = None) -> bool:
        """Wait until the worker is ready (True) or the timeout passes (False)."""
        return self._on_started.wait(timeout)

    def reload(self, modules: Iterable[str] | None = None, reload: bool = False,
               reloader: Any = None) -> None:  # fmt: skip
        """Import ``modules`` (Celery's testing guide calls this after defining a task in a
        test). A solo or threads worker runs in this process, so tasks registered after it
        started are seen without it; prefork children keep what they were forked with."""
        for name in modules or ():
            module = importlib.import_module(name)
            if reload:
                importlib.reload(module)


def worker_options(concurrency: int, pool: str, hostname: str, **kwargs: Any) -> WorkerOptions:
    """Celery's ``WorkController`` keyword arguments as :class:`WorkerOptions`; Celery's
    that mean nothing here are accepted and ignored, anything else is a ``TypeError``."""
    known = {k: v for k, v in kwargs.items() if k in _OPTION_NAMES}
    unknown = set(kwargs) - _OPTION_NAMES - IGNORED_OPTIONS
    if unknown:
        raise TypeError(f"start_worker() got unexpected arguments: {sorted(unknown)}")
    if isinstance(known.get("queues"), str):
        known["queues"] = [q for q in known["queues"].split(",") if q]
    return WorkerOptions(hostname=hostname, concurrency=concurrency, pool=pool, **known)


def setup_app_for_worker(app: Celery, loglevel: str | int = WORKER_LOGLEVEL,
                         logfile: str | None = None) -> None:  # fmt: skip
    """Get ``app`` ready to be served as the worker command would: its modules imported,
    shared tasks registered, and it the current app (as Celery's embedded worker makes it)."""
    app.import_modules()
    app.finalize()
    app.ensure_configured()
    app.set_current()
    app.set_default()


@contextmanager
def start_worker(
    app: Celery,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int = WORKER_LOGLEVEL,
    logfile: str | None = None,
    perform_ping_check: bool = True,
    ping_task_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    **kwargs: Any,
) -> Iterator[TestWorkController]:
    """Run a worker of ``app`` in a thread for the duration of the block.

    The block starts once the worker consumes and, with ``perform_ping_check``, once it has
    answered the ``celery.ping`` task through the broker and the result backend. On exit the
    worker shuts down warm (running tasks finish); if that takes longer than
    ``shutdown_timeout`` seconds, ``RuntimeError`` is raised.
    """
    test_worker_starting.send(sender=app)
    worker: TestWorkController | None = None
    try:
        thread = _start_worker_thread(
            app, concurrency, pool, loglevel, logfile, perform_ping_check, shutdown_timeout,
            **kwargs,
        )
        with thread as worker:
            if perform_ping_check and not isinstance(app.backend, DisabledBackend):
                result = app.tasks["celery.ping"].delay()
                assert result.get(timeout=ping_task_timeout) == "pong"
            yield worker
    finally:
        test_worker_stopped.send(sender=app, worker=worker)


@contextmanager
def _start_worker_thread(
    app: Celery,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int = WORKER_LOGLEVEL,
    logfile: str | None = None,
    perform_ping_check: bool = True,
    shutdown_timeout: float = 10.0,
    **kwargs: Any,
) -> Iterator[TestWorkController]:
    from . import tasks  # noqa: F401 - registers celery.ping as a shared task

    setup_app_for_worker(app, loglevel, logfile)
    if perform_ping_check and "celery.ping" not in app.tasks:
        raise ImproperlyConfigured("the celery.ping task is not registered with this app")
    app.broker.ping()  # an unreachable broker fails here, in the test's thread
    hostname = kwargs.pop("hostname", None) or anon_nodename()
    worker = TestWorkController(app, worker_options(concurrency, pool, hostname, **kwargs))
    thread = threading.Thread(target=_run, args=(worker,), name="test-worker", daemon=True)
    with _ready_signal(worker):
        thread.start()
        while not worker.ensure_started(0.05):
            if not thread.is_alive():
                raise RuntimeError("the test worker stopped while starting") from worker.failure
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(shutdown_timeout)
        if thread.is_alive():
            raise RuntimeError(
                "Worker thread failed to exit within the allocated timeout. Consider raising "
                "`shutdown_timeout` if your tasks take longer to execute."
            )


def _run(worker: TestWorkController) -> None:
    try:
        worker.start()
    except BaseException as exc:  # handed to the test's thread, which raises it
        worker.failure = exc


@contextmanager
def _ready_signal(worker: TestWorkController) -> Iterator[None]:
    """Mark ``worker`` started when it sends ``worker_ready`` (from its own thread)."""

    def on_ready(sender: Any = None, **named: Any) -> None:
        worker._on_started.set()
        test_worker_started.send(sender=worker.app, worker=worker, consumer=worker)

    uid = f"test-worker-{id(worker)}"
    signals.worker_ready.connect(on_ready, sender=worker, weak=False, dispatch_uid=uid)
    try:
        yield
    finally:
        signals.worker_ready.disconnect(sender=worker, dispatch_uid=uid)


__all__ = ["TestWorkController", "setup_app_for_worker", "start_worker"]
