"""Every pool process is forked by a fork server, a process with one thread: the first
ones, a crashed child's replacement, ``pool_grow``, ``pool_restart``, autoscaling and
recycling after ``--max-tasks-per-child``. Each stays a child of the worker's main process.
The server is started by exec and leaves when idle (see test_fork_server_exec.py); a worker
started from code keeps one forked from its main process for its whole life."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from minicelery import Celery
from minicelery.worker import forkserver
from tests.helpers import (
    ManagedProcess,
    WorkerFactory,
    child_pids,
    is_fork_server,
    process_name,
    wait_until,
)
from tests.integration.apps.control import pid
from tests.integration.test_remote_control import W1, listening

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux only")


def fork_server_of(worker: ManagedProcess) -> int:
    servers = fork_servers_of(worker)
    assert len(servers) == 1, f"children {child_pids(worker.pid)}"
    return servers[0]


def fork_servers_of(worker: ManagedProcess) -> list[int]:
    return [p for p in child_pids(worker.pid) if is_fork_server(p)]


def threads_of(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/task").iterdir()))
    except FileNotFoundError:  # it left meanwhile (an exec'd server lingers, then goes)
        return 1


def assert_all_forked_by_a_server(worker: ManagedProcess) -> list[int]:
    """Each pool process carries the name only a fork server gives, is the main process's
    child, and any server there is has exactly one thread."""
    children = worker.children()
    assert children
    for child in children:
        assert (process_name(child) or "").startswith("mc-child-"), (child, process_name(child))
    for server in fork_servers_of(worker):
        assert threads_of(server) == 1
    assert threads_of(worker.pid) > 1  # the main process runs threads: it must not fork
    return children


def test_every_fork_comes_from_a_single_threaded_server(
    capp: Celery, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(
        "tests.integration.apps.control",
        name="w1@%h",
        concurrency=2,
        env={"MC_TEST_POOL_RESTARTS": "1"},
        extra_args=["--max-tasks-per-child", "3"],
    )
    listening(capp, W1)
    first = assert_all_forked_by_a_server(worker)

    os.kill(first[0], signal.SIGKILL)  # a crashed child is replaced
    wait_until(lambda: len(worker.children()) == 2 and first[0] not in worker.children(), 10)
    assert_all_forked_by_a_server(worker)

    assert capp.control.pool_grow(1, reply=True) == [{W1: {"ok": "pool will grow to 3 processes"}}]
    wait_until(lambda: len(worker.children()) == 3, 10)
    assert_all_forked_by_a_server(worker)

    before = set(worker.children())
    assert capp.control.pool_restart(reply=True) == [{W1: {"ok": "reload started"}}]
    wait_until(lambda: len(worker.children()) == 3 and not set(worker.children()) & before, 10)
    assert_all_forked_by_a_server(worker)

    before = set(worker.children())
    ran_in = {pid.delay().get(timeout=10) for _ in range(12)}  # recycled every 3 tasks
    assert ran_in - before, "no child was recycled"
    wait_until(lambda: len(worker.children()) == 3, 10)
    assert_all_forked_by_a_server(worker)
    assert len(fork_servers_of(worker)) <= 1


def test_the_first_children_all_survive_their_start(worker_factory: WorkerFactory) -> None:
    """A child that looked for its new parent a moment too early (its middle process had
    closed its files but was not yet gone) took itself for an orphan and exited, and was
    replaced: the first children are numbered 1..N, each one forked once."""
    worker = worker_factory("tests.integration.apps.control", concurrency=8)
    names = sorted(process_name(child) or "" for child in worker.children())
    assert names == sorted(f"mc-child-{index}" for index in range(1, 9)), names


def test_the_fork_server_leaves_with_its_worker(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(concurrency=1)
    server = fork_server_of(worker)
    worker.kill()  # SIGKILL: no chance to stop it
    worker.wait_exit(10)
    wait_until(lambda: process_name(server) is None, 10, message="the fork server outlived it")


def test_a_worker_outlives_its_fork_server(app: Celery, worker_factory: WorkerFactory) -> None:
    """Killed by hand or by the OOM killer, the fork server takes nothing with it: the next
    child comes from a new one, and tasks go on."""
    worker = worker_factory(concurrency=2)
    server = fork_server_of(worker)
    os.kill(server, signal.SIGKILL)
    victim = worker.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(worker.children()) == 2 and victim not in worker.children(), 10)
    assert_all_forked_by_a_server(worker)
    from tests.integration.apps.basic import add

    assert [add.delay(i, i).get(timeout=10) for i in range(4)] == [0, 2, 4, 6]
    assert worker.is_alive()
    wait_until(lambda: process_name(server) is None, 5)  # reaped, not left a zombie


def test_children_do_not_outlive_their_main_process(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    """SIGKILL the worker's main process while a child runs a long task: nothing would
    enforce that task's time limits any more, so the child dies with it (its acks_late
    message is recovered by another worker, as for any lost worker)."""
    from tests.integration.apps.basic import sleep_late

    worker = worker_factory(concurrency=1)
    result = sleep_late.delay(30)
    worker.wait_for_line(f"sleep_late[{result.id}] received", timeout=10)
    children = worker.children()
    assert children
    worker.kill()
    worker.wait_exit(10)
    wait_until(lambda: all(process_name(c) is None for c in children), 5,
               message="a child outlived its main process")  # fmt: skip


def test_a_fork_server_gives_its_process_back_as_it_was() -> None:
    """A worker embedded in another program (a test's) makes that program the subreaper
    of the children while it runs, and no longer once it stops: else the program adopts,
    and never reaps, the orphans of every process it starts later (a daemon's double
    fork ends up its child)."""
    before = forkserver._is_subreaper()
    server = forkserver.ForkServer(lambda channel, index: 0)
    server.start()
    try:
        assert forkserver._is_subreaper()
        assert process_name(server.pid) is not None
    finally:
        server.stop()
    assert forkserver._is_subreaper() is before
    assert process_name(server.pid) is None  # reaped
