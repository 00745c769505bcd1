"""Remote control and inspect against two real workers (prefork) on a real redis-server:
``app.control`` / ``app.control.inspect()`` from Python and the ``inspect``, ``control`` and
``status`` commands, plus the pool commands (grow, shrink, restart, autoscale) and queues
added or cancelled at runtime."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
import redis

from minicelery import Celery
from minicelery.exceptions import TimeLimitExceeded
from minicelery.worker.controller import expand_hostname
from tests.cluster_mode import cluster_wanted
from tests.helpers import ManagedProcess, WorkerFactory, children_consume, wait_until
from tests.integration.apps.control import nap, pid, record, sleeper
from tests.integration.test_worker_lifecycle import queued

APP = "tests.integration.apps.control"
W1, W2 = expand_hostname("w1@%h"), expand_hostname("w2@%h")


def worker(
    factory: WorkerFactory,
    name: str,
    *args: str,
    concurrency: int = 1,
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    return factory(app_module=APP, name=f"{name}@%h", concurrency=concurrency,
                   extra_args=args, env=env)  # fmt: skip


def listening(capp: Celery, *names: str) -> None:
    def answered() -> bool:
        replies = capp.control.inspect(timeout=0.5, limit=len(names)).ping() or {}
        return set(names) <= set(replies)

    wait_until(answered, 20, message=f"{names} did not all answer ping")


@pytest.fixture
def two_workers(capp: Celery, worker_factory: WorkerFactory) -> tuple[ManagedProcess, ...]:
    first = worker(worker_factory, "w1", "-Q", "q1")
    second = worker(worker_factory, "w2", "-Q", "q2")
    listening(capp, W1, W2)
    return first, second


def test_ping_reaches_every_worker_or_the_ones_named(capp: Celery, two_workers: object) -> None:
    replies = capp.control.ping(timeout=1.0)
    assert sorted(replies or [], key=str) == sorted(
        [{W1: {"ok": "pong"}}, {W2: {"ok": "pong"}}], key=str
    )
    assert capp.control.inspect(destination=[W2]).ping() == {W2: {"ok": "pong"}}


def test_inspect_answers_from_both_workers(
    capp: Celery, two_workers: tuple[ManagedProcess, ...], client: redis.Redis, runs: str
) -> None:
    first, second = two_workers
    busy = sleeper.apply_async((runs, "busy", 30.0), queue="q1")
    behind = record.apply_async((runs, "behind"), queue="q1")
    wait_until(lambda: client.llen(runs) == 1, 15)
    inspect = capp.control.inspect(timeout=1.0, limit=2)  # the two workers' replies

    active = wait_until(lambda: (inspect.active() or {}).get(W1) and inspect.active(), 10)
    assert [task["id"] for task in active[W1]] == [busy.id]
    assert active[W1][0]["name"] == sleeper.name and active[W2] == []
    reserved = inspect.reserved() or {}
    if cluster_wanted():
        # On a cluster a woken child reserves a round trip later (nothing is chained to
        # its wait), by when the second message may be queued: it may hold it (prefetch).
        assert reserved[W2] == [] and [t["id"] for t in reserved[W1]] in ([], [behind.id])
    elif children_consume():
        # Children reserve only what they can start soon: a message sent while the one
        # child runs a long task stays in its queue, free for any other worker to take.
        assert reserved == {W1: [], W2: []}
        assert queued(client, capp.conf.key_prefix, "q1") == 1
    else:  # the classic pool's main process prefetches it, as Celery's does
        assert [task["id"] for task in reserved[W1]] == [behind.id] and reserved[W2] == []

    registered = inspect.registered() or {}
    assert sleeper.name in registered[W1] and sleeper.name in registered[W2]
    queues = inspect.active_queues() or {}
    assert [q["name"] for q in queues[W1]] == ["q1"] and [q["name"] for q in queues[W2]] == ["q2"]
    stats = inspect.stats() or {}
    assert stats[W1]["pid"] == first.pid and stats[W2]["pid"] == second.pid
    assert stats[W1]["broker"]["transport"] == capp.conf.broker_url.split("://")[0]
    assert stats[W1]["pool"]["max-concurrency"] == 1 and len(stats[W1]["pool"]["processes"]) == 1
    assert inspect.scheduled() == {W1: [], W2: []}
    assert (inspect.conf() or {})[W1]["key_prefix"] == capp.conf.key_prefix

    capp.control.revoke(behind.id)
    revoked = wait_until(lambda: inspect.revoked(), 10)
    assert revoked == {W1: [behind.id], W2: [behind.id]}
    busy.revoke(terminate=True)
    assert record.apply_async((runs, "after"), queue="q1").get(timeout=15) == "after"
    totals = (inspect.stats() or {})[W1]["total"]
    assert totals == {sleeper.name: 1, record.name: 1}  # the revoked one never ran


def test_control_commands_change_and_stop_workers(
    capp: Celery, two_workers: tuple[ManagedProcess, ...]
) -> None:
    second = two_workers[1]
    replies = capp.control.time_limit(nap.name, hard=0.5, reply=True, timeout=1.0, limit=2)
    assert len(replies or []) == 2
    with pytest.raises(TimeLimitExceeded):
        nap.apply_async((5.0,), queue="q2").get(timeout=15)

    assert capp.control.shutdown(destination=[W2], reply=True, timeout=2.0) == [
        {W2: {"ok": "shutting down"}}
    ]
    assert second.wait_exit(15) == 0
    assert capp.control.inspect(timeout=0.5).ping() == {W1: {"ok": "pong"}}


def test_pool_grow_shrink_and_restart(capp: Celery, worker_factory: WorkerFactory) -> None:
    worker(worker_factory, "w1", env={"MC_TEST_POOL_RESTARTS": "1"})
    listening(capp, W1)
    inspect = capp.control.inspect(destination=[W1])

    def processes() -> list[int]:
        return list((inspect.stats() or {})[W1]["pool"]["processes"])

    before = processes()
    assert capp.control.pool_grow(2, reply=True) == [{W1: {"ok": "pool will grow to 3 processes"}}]
    grown = wait_until(lambda: len(processes()) == 3 and processes(), 10)
    assert set(before) <= set(grown)
    capp.control.pool_shrink(2, reply=True)
    wait_until(lambda: len(processes()) == 1, 10)
    kept = processes()
    assert {pid.delay().get(timeout=10) for _ in range(3)} == set(kept)

    assert capp.control.pool_restart(reply=True) == [{W1: {"ok": "reload started"}}]
    wait_until(lambda: processes() != kept and len(processes()) == 1, 10)
    assert pid.delay().get(timeout=10) not in kept


def test_autoscale_grows_under_backlog_and_shrinks_back(
    capp: Celery, worker_factory: WorkerFactory
) -> None:
    worker(worker_factory, "w1", "--autoscale=4,1", env={"MC_TEST_AUTOSCALE_KEEPALIVE": "1"})
    listening(capp, W1)
    inspect = capp.control.inspect(destination=[W1])

    def size() -> int:
        return len((inspect.stats() or {})[W1]["pool"]["processes"])

    assert size() == 1
    results = [nap.delay(0.05) for _ in range(200)]
    wait_until(lambda: size() == 4, 20, message="the pool did not grow to 4")
    for result in results:
        result.get(timeout=60)
    wait_until(lambda: size() == 1, 20, message="the pool did not shrink back to 1")
    assert capp.control.autoscale(2, 1, reply=True) == [{W1: {"ok": "autoscale now max=2 min=1"}}]


def test_add_and_cancel_consumer(
    capp: Celery, worker_factory: WorkerFactory, cli: object
) -> None:
    worker(worker_factory, "w1", "-Q", "q1")
    listening(capp, W1)
    assert capp.control.add_consumer("q3", reply=True, limit=1) == [{W1: {"ok": "add consumer q3"}}]
    assert record.apply_async(("x", "on-q3"), queue="q3").get(timeout=15) == "on-q3"
    queues = (capp.control.inspect(limit=1).active_queues() or {})[W1]
    assert [q["name"] for q in queues] == ["q1", "q3"]
    assert capp.control.cancel_consumer("q3", reply=True) == [
        {W1: {"ok": "no longer consuming from q3"}}
    ]
    waiting = record.apply_async(("x", "stuck"), queue="q3")
    status = cli("-A", APP, "status", "--json")  # type: ignore[operator]
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"nodes": [W1], "backlog": {"q3": 1}}
    assert capp.AsyncResult(waiting.id).state == "PENDING"


def test_the_command_line(capp: Celery, two_workers: object, cli: object) -> None:
    run = cli  # type: ignore[assignment]
    done: subprocess.CompletedProcess[str] = run("-A", APP, "inspect", "ping", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {W1: {"ok": "pong"}, W2: {"ok": "pong"}}

    done = run("-A", APP, "inspect", "active_queues", "-d", W1)
    assert done.returncode == 0 and f"->  {W1}: OK" in done.stdout and "'q1'" in done.stdout
    assert "1 node online." in done.stdout

    done = run("-A", APP, "control", "rate_limit", record.name, "10/m", "--json")
    assert json.loads(done.stdout) == {
        W1: {"ok": "new rate limit set successfully"},
        W2: {"ok": "new rate limit set successfully"},
    }
    done = run("-A", APP, "control", "pool_grow", "many")
    assert done.returncode == 2 and "not a valid int" in done.stderr
    done = run("-A", APP, "status")
    assert done.returncode == 0 and "2 nodes online." in done.stdout
    assert f"{W1}: OK" in done.stdout


def test_the_command_line_without_workers(cli: object) -> None:
    run = cli  # type: ignore[assignment]
    done: subprocess.CompletedProcess[str] = run("-A", APP, "inspect", "ping", "-t", "0.3")
    assert done.returncode == 1
    assert "No nodes replied within time constraint" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("-A", APP, "status", "-t", "0.3")
    assert done.returncode == 69 and "No nodes replied" in done.stderr


RELOAD_APP = """
import os
from minicelery import Celery

app = Celery(
    "reloadable",
    broker=os.environ["MC_TEST_REDIS_URL"],
    backend=os.environ["MC_TEST_REDIS_URL"],
    key_prefix=os.environ["MC_TEST_PREFIX"],
    include=["{tasks}"],
    worker_pool_restarts=True,
)
"""
RELOAD_TASKS = """
from {app} import app


@app.task(name="reloadable.version")
def version():
    return {version!r}
"""


def test_pool_restart_with_reload_runs_the_changed_code(
    capp: Celery, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    """The task module is edited on disk; ``pool_restart(reload=True)`` re-imports it in the
    main process and replaces the pool, whose new processes run the new code."""
    app_name, tasks_name = f"reload_app_{key_of(tmp_path)}", f"reload_tasks_{key_of(tmp_path)}"
    (tmp_path / f"{app_name}.py").write_text(RELOAD_APP.format(tasks=tasks_name))
    tasks_file = tmp_path / f"{tasks_name}.py"
    tasks_file.write_text(RELOAD_TASKS.format(app=app_name, version="first"))
    env = {"PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    worker_factory(app_module=app_name, name="w1@%h", concurrency=1, env=env)
    listening(capp, W1)
    assert capp.send_task("reloadable.version").get(timeout=10) == "first"

    tasks_file.write_text(RELOAD_TASKS.format(app=app_name, version="second, edited"))
    replies = capp.control.pool_restart(modules=[tasks_name], reload=True, reply=True)
    assert replies == [{W1: {"ok": "reload started"}}]
    assert capp.send_task("reloadable.version").get(timeout=10) == "second, edited"


def key_of(path: object) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, str(path)).hex[:8]
