"""The fork server's life cycle when the worker's app is imported by name (``-A``): a fresh
interpreter started by exec forks the children, lingers after its last fork, then leaves,
and a later fork (a crash's replacement, recycling, pool_grow, autoscaling) starts another
one. A worker whose app cannot be imported by name (``app.worker_main()`` in a script)
keeps the server forked from its main process. No process outlives a shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from minicelery import Celery
from tests.helpers import (
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    child_pids,
    descendant_pids,
    is_fork_server,
    mode_args,
    pid_alive,
    pointed_at,
    process_name,
    wait_until,
)
from tests.integration.apps.lean import app as lean_app
from tests.integration.apps.lean import loaded, pid

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux only")

LEAN = "tests.integration.apps.lean"
QUICK = {"MINICELERY_FORK_SERVER_LINGER": "0.5"}  # seconds a server stays after its last fork
TIMEOUT = 20.0


@pytest.fixture
def lean(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(lean_app, redis_server, key_prefix) as pointed:
        yield pointed


def servers(worker: ManagedProcess) -> list[int]:
    return [p for p in child_pids(worker.pid) if is_fork_server(p)]


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return [part.decode() for part in handle.read().split(b"\0") if part]


def no_server(worker: ManagedProcess) -> bool:
    return not servers(worker)


def pool(worker: ManagedProcess) -> list[int]:
    """The worker's pool processes, named as children (not a server being spawned, which
    is a copy of the main process for a moment before its exec)."""
    return [p for p in worker.children() if (process_name(p) or "").startswith("mc-child-")]


def test_children_come_from_an_exec_server_that_leaves_when_idle(
    lean: Celery, worker_factory: WorkerFactory
) -> None:
    """The first server is a fresh interpreter: its children never imported the command
    line (click), which the main process did. After its linger only main + children are
    left, and the children still run tasks."""
    worker = worker_factory(LEAN, concurrency=2, env=QUICK)
    children = set(pool(worker))
    assert len(children) == 2
    wait_until(lambda: no_server(worker), TIMEOUT, message="the fork server stayed")
    assert set(child_pids(worker.pid)) == children
    assert loaded.delay(["click"]).get(timeout=TIMEOUT) == {"click": False}
    assert {pid.delay().get(timeout=TIMEOUT) for _ in range(6)} <= children


def test_the_first_server_is_started_by_exec(lean: Celery, worker_factory: WorkerFactory) -> None:
    worker = worker_factory(LEAN, concurrency=1)
    (server,) = servers(worker)
    assert any("forkboot" in part for part in cmdline(server)), cmdline(server)


def test_a_killed_child_is_replaced_by_a_new_server(
    lean: Celery, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(LEAN, concurrency=2, env=QUICK)
    wait_until(lambda: no_server(worker), TIMEOUT, message="the fork server stayed")
    first = pool(worker)
    victim = first[0]
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:  # one look at the pool (a dead child may linger unreaped)
        now = pool(worker)
        return len(now) == 2 and victim not in now and len(set(now) - set(first)) == 1

    wait_until(replaced, TIMEOUT)
    (replacement,) = set(pool(worker)) - set(first)
    assert process_name(replacement) == "mc-child-3"
    ran_in = {pid.delay().get(timeout=TIMEOUT) for _ in range(8)}
    assert victim not in ran_in and ran_in <= set(pool(worker))
    wait_until(lambda: no_server(worker), TIMEOUT, message="the new server stayed")


def test_one_task_per_child_recycles_through_one_lingering_server(
    lean: Celery, worker_factory: WorkerFactory
) -> None:
    """``--max-tasks-per-child 1``: a new child per task, all from the server started for
    the first one (it lingers), not one interpreter per task."""
    worker = worker_factory(LEAN, concurrency=1, extra_args=["--max-tasks-per-child", "1"])
    seen = set()
    started: set[int] = set()
    for _ in range(5):
        seen.add(pid.delay().get(timeout=TIMEOUT))
        started.update(servers(worker))
    assert len(seen) == 5
    assert len(started) == 1, started


def test_pool_grow_starts_a_server_when_none_runs(
    lean: Celery, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(LEAN, concurrency=1, env=QUICK)
    wait_until(lambda: no_server(worker), TIMEOUT, message="the fork server stayed")
    lean.control.pool_grow(2, reply=True)
    wait_until(lambda: len(pool(worker)) == 3, TIMEOUT)
    assert {pid.delay().get(timeout=TIMEOUT) for _ in range(9)} <= set(pool(worker))


def _worker_main_argv(*args: str) -> list[str]:
    """``app.worker_main([...])`` in a script: the app is the script's, not a name."""
    rest = list(args[3:])  # drop "-A <module> worker"
    code = f"from {args[1]} import app; app.worker_main({rest!r})"
    return [sys.executable, "-c", code]


def test_a_worker_started_from_code_keeps_its_forked_server(
    lean: Celery, redis_server: RedisServer, key_prefix: str
) -> None:
    factory = WorkerFactory(redis_server.url, key_prefix, argv_builder=_worker_main_argv)
    try:
        worker = factory(LEAN, concurrency=2, extra_args=mode_args(), env=QUICK)
        (server,) = servers(worker)
        assert not any("forkboot" in part for part in cmdline(server))
        victim = worker.children()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(pool(worker)) == 2 and victim not in pool(worker), TIMEOUT)
        assert servers(worker) == [server]  # resident: the same one, past any linger
        assert {pid.delay().get(timeout=TIMEOUT) for _ in range(4)} <= set(pool(worker))
    finally:
        factory.cleanup()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT], ids=["warm", "cold"])
def test_no_process_is_left_when_stopped_while_a_server_starts(
    lean: Celery, worker_factory: WorkerFactory, sig: int
) -> None:
    worker = worker_factory(LEAN, concurrency=2, env=QUICK)
    wait_until(lambda: no_server(worker), TIMEOUT, message="the fork server stayed")
    victim = worker.children()[0]
    os.kill(victim, signal.SIGKILL)
    booting = wait_until(lambda: servers(worker), TIMEOUT)  # the replacement's server
    family = [*descendant_pids(worker.pid)]
    worker.send_signal(sig)
    assert worker.wait_exit(TIMEOUT) == 0
    wait_until(lambda: not any(pid_alive(p) for p in [*family, *booting]), TIMEOUT,
               message="a process outlived its worker")  # fmt: skip


def test_importing_the_worker_command_leaves_ctrl_c_alone() -> None:
    """Only the server ignores SIGINT: a process that imports the worker's modules (the
    ``events`` command does) still ends on Ctrl-C."""
    code = ("import signal, minicelery.cli.worker, minicelery.worker.forkboot\n"
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


OTHER = """
import sys
from minicelery.worker import sharing
fds, sizes, sems = eval(sys.argv[1])
slots, buckets = sharing.load(sys.stdin.buffer.read(), sharing.Shared(fds, sizes, sems))
held = not slots.locks[1].acquire(True, 0.05)
free = slots.locks[0].acquire(True, 0.05)
seen = buckets._find("t") is not None and slots.clock.forward() == 2
sys.exit(0 if held and free and seen else 1)
"""


def test_shared_memory_and_locks_reach_a_process_started_by_exec() -> None:
    """The consuming children's shared state, described: a process started by exec that
    maps the memory files sees what this one writes, and shares its locks."""
    from minicelery.worker import sharing
    from minicelery.worker.buckets import SharedBuckets
    from minicelery.worker.slots import Slots

    description, shared = sharing.describe((Slots(4), SharedBuckets()))
    slots, buckets = sharing.load(description, shared)
    buckets.set_rate("t", 5.0)
    slots.clock.forward()
    assert slots.locks[1].acquire(True, 0.1)
    spec = repr((shared.fds, shared.sizes, shared.sems))
    subprocess.run([sys.executable, "-c", OTHER, spec], input=description, check=True,
                   pass_fds=shared.fds, timeout=30)  # fmt: skip
    assert slots.clock.value == 2
    shared.close_fds()
