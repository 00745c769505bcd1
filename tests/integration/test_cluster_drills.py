"""Redis Cluster under change: a master SIGKILLed while acks_late tasks drain from six
queues on two workers, and a queue's slot moved to another master while its tasks drain
(ASK while half of its keys have moved, MOVED after). Every task ends SUCCESS, none lost;
beat and remote control carry on."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from minicelery import Celery
from minicelery.redislayer.keys import KeySchema
from tests.helpers import REPO_ROOT, ManagedProcess, WorkerFactory, minicelery_argv, wait_until
from tests.integration.apps.cluster_app import QUEUES
from tests.integration.clusters import ClusterTopology, cluster_topology
from tests.integration.failover_checks import events_and_control_carry_on

APP = "tests.integration.apps.cluster_app"
TASK = "tests.integration.apps.cluster_app.late_square"
SENT_ID = re.compile(r"sent\. id->(\S+) run->")

pytestmark = [pytest.mark.timeout(120), pytest.mark.single_server]  # clusters of their own


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[ClusterTopology]:
    with cluster_topology(tmp_path) as started:
        yield started


def _app(url: str, prefix: str, **options: Any) -> Celery:
    return Celery("cluster_client", broker=url, backend=url, key_prefix=prefix, **options)


def _states(app: Celery, ids: list[str]) -> dict[str, str]:
    try:
        return {task_id: app.AsyncResult(task_id).state for task_id in ids}
    except Exception:  # the cluster is changing: ask again on the next poll
        return {}


def _succeeded(app: Celery, ids: list[str]) -> int:
    return sum(state == "SUCCESS" for state in _states(app, ids).values())


def _all_succeed(app: Celery, ids: list[str], timeout: float) -> None:
    wait_until(
        lambda: (lambda s: len(s) == len(ids) and set(s.values()) == {"SUCCESS"})(
            _states(app, ids)
        ),
        timeout=timeout,
        interval=0.2,
        message=lambda: f"not SUCCESS: {sorted(_states(app, ids).values())[:10]}...",
    )


def _sent(beat: ManagedProcess) -> list[str]:
    return [m[1] for line in list(beat.lines) if (m := SENT_ID.search(line))]


def _pings(app: Celery, count: int) -> dict[str, Any] | None:
    replies = app.control.inspect(timeout=1.0).ping() or {}
    return replies if len(replies) == count else None


def _spread(app: Celery, count: int, seconds: float) -> list[str]:
    square = app.signature(TASK)
    return [square.apply_async((n, seconds), queue=QUEUES[n % 6]).id for n in range(count)]


def _events_and_control(app: Celery) -> None:
    """Events and a rate_limit reach both workers after the failover (the failover of the
    event stream's own master is test_failover_monitor.py's)."""
    hostnames = set(_pings(app, 2) or ())
    events_and_control_carry_on(app, hostnames, TASK, lambda: _spread(app, 12, 0))


def test_tasks_in_flight_survive_a_shard_failover(topology: ClusterTopology) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    factory = WorkerFactory(topology.url, prefix)
    # The publishes are on a replica before they count as sent (replication is
    # asynchronous: a busy machine can leave them behind when the master dies).
    app = _app(topology.url, prefix, broker_transport_options={"wait_for_replicas": 1})
    beat = ManagedProcess(minicelery_argv("-A", APP, "beat", "-l", "debug"), cwd=REPO_ROOT,
                          env=factory.env({}), label="beat")  # fmt: skip
    try:
        for _ in range(2):
            factory(APP, concurrency=2, extra_args=("-Q", ",".join(QUEUES), "-E"))
        ids = _spread(app, 240, 0.05)
        wait_until(lambda: _succeeded(app, ids) >= 30, timeout=30)
        # The master of queue q0 (and of a third of every task's results) dies.
        killed = topology.kill_master_of(KeySchema(prefix).wake("q0"))
        killed_at = time.monotonic()
        sent_before = len(_sent(beat))
        topology.wait_failover(killed)
        failover = time.monotonic() - killed_at
        done_at_kill = _succeeded(app, ids)
        _all_succeed(app, ids, timeout=60)
        assert [app.AsyncResult(i).result for i in ids[:4]] == [0, 1, 4, 9]
        wait_until(lambda: len(_sent(beat)) >= sent_before + 3, timeout=20,
                   message=lambda: beat.describe(30))  # fmt: skip
        late = _sent(beat)[sent_before:]
        wait_until(lambda: set(_states(app, late).values()) == {"SUCCESS"}, timeout=20)
        assert wait_until(lambda: _pings(app, 2), timeout=15, interval=0.2)
        _events_and_control(app)
        print(f"failover took {failover:.1f}s; {done_at_kill} of 240 done by then; all "
              f"SUCCESS {time.monotonic() - killed_at:.1f}s after the kill")  # fmt: skip
    finally:
        app.close()
        beat.close()
        factory.cleanup()
        if factory.workers:
            print(factory.report())


def test_a_queue_whose_slot_moves_while_it_drains_loses_nothing(
    topology: ClusterTopology,
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    factory = WorkerFactory(topology.url, prefix)
    app = _app(topology.url, prefix)
    wake = KeySchema(prefix).wake("q0")
    slot = key_slot(wake.encode())
    try:
        factory(APP, concurrency=2, extra_args=("-Q", ",".join(QUEUES)))
        square = app.signature(TASK)
        ids = [square.apply_async((n, 0.01), queue="q0").id for n in range(300)]
        wait_until(lambda: _succeeded(app, ids) >= 20, timeout=30)
        source = topology.node_for_key(wake)[1]
        target = next(port for _, port, _ in topology.masters() if port != source)
        finish = topology.migrate_slot(slot, target, stop_midway=True)
        # Half of the queue's keys have moved: a client asking the source for one of them
        # is sent on to the target (ASK), and reads it there.
        with topology.client(target) as node:
            moved = node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
        client = app.broker.client  # type: ignore[attr-defined]
        assert moved and all(client.exists(key) == 1 for key in moved), moved
        time.sleep(0.5)  # the drill itself: the slot stays half-moved a while as tasks run
        finish()
        assert topology.owner(slot) == target
        more = [square.apply_async((n, 0), queue="q0").id for n in range(300, 320)]
        _all_succeed(app, ids + more, timeout=60)
        assert app.AsyncResult(more[-1]).result == 319**2
    finally:
        app.close()
        factory.cleanup()
        if factory.workers:
            print(factory.report())


def test_a_cluster_url_with_another_database_is_one_line(topology: ClusterTopology) -> None:
    factory = WorkerFactory(topology.url + "/2", "db")
    try:
        worker = factory(APP, concurrency=1, wait_ready=False)
        assert worker.wait_exit(timeout=20) != 0, worker.describe()
        output = worker.output()
    finally:
        factory.cleanup()
    assert "database 0 only" in output, output
    assert "Traceback" not in output, output


def test_wait_for_replicas_waits_on_each_shard(topology: ClusterTopology) -> None:
    options = {"wait_for_replicas": 1, "wait_for_replicas_timeout": 2.0}
    app = Celery("replicas", broker=topology.url, backend=topology.url, key_prefix="wr",
                 broker_transport_options=options, set_as_current=False)  # fmt: skip

    def waits() -> dict[int, int]:
        counts = {}
        for _, port, _ in topology.masters():
            with topology.client(port) as node:
                stats = node.info("commandstats").get("cmdstat_wait", {})
                counts[port] = int(stats.get("calls", 0))
        return counts

    try:
        before = waits()
        _spread(app, 30, 0)
        after = waits()
    finally:
        app.close()
    queue_ports = {topology.node_for_key(KeySchema("wr").wake(q))[1] for q in QUEUES}
    assert all(after[port] > before[port] for port in queue_ports), (before, after)
    assert sum(after.values()) - sum(before.values()) >= 30


def _commands(topology: ClusterTopology) -> int:
    total = 0
    for _, port, _ in topology.masters():
        with topology.client(port) as node:
            total += int(node.info("stats")["total_commands_processed"])
    return total


def test_an_idle_worker_on_six_queues_over_three_shards_does_not_poll(
    topology: ClusterTopology,
) -> None:
    """Idle, a worker's children block on one pop per queue, renewed once a second, with a
    reserve after each: tens of commands a second for the whole cluster, where polling
    would be thousands. A task sent then is picked up at once."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    factory = WorkerFactory(topology.url, prefix)
    app = _app(topology.url, prefix)
    try:
        factory(APP, concurrency=2, extra_args=("-Q", ",".join(QUEUES)))
        assert app.signature(TASK).apply_async((2,), queue="q5").get(timeout=10) == 4
        before, started = _commands(topology), time.monotonic()
        time.sleep(3.0)  # the measured window: the worker is left idle
        rate = (_commands(topology) - before) / (time.monotonic() - started)
        sent = time.monotonic()
        assert app.signature(TASK).apply_async((3,), queue="q4").get(timeout=10) == 9
        picked_up = time.monotonic() - sent
    finally:
        app.close()
        factory.cleanup()
    print(f"idle: {rate:.0f} commands/s on the cluster; a task after it: {picked_up * 1000:.0f} ms")
    assert rate < 120, rate
    assert picked_up < 0.5, picked_up


ACL_LINE = (
    "on >pw resetkeys ~{p}:* ~{{{p}}}:* ~{{{p}:* resetchannels &{p}:* -@all +@read +@write "
    "+@transaction +@pubsub +@connection +eval +evalsha +script|load +time -@dangerous"
)


def test_the_documented_acl_user_runs_tasks_on_a_cluster(topology: ClusterTopology) -> None:
    """The README's ACL line with the two rights a cluster adds; without them, one line."""
    prefix = "aclp"
    for extra in ((), ("+cluster|slots", "+command")):
        for port in topology.live_ports():
            with topology.client(port) as node:
                node.execute_command(
                    "ACL", "SETUSER", "mc", "reset", *ACL_LINE.format(p=prefix).split(), *extra
                )
    url = topology.url.replace("rediscluster://", "rediscluster://mc:pw@")
    factory = WorkerFactory(url, prefix)
    app = _app(url, prefix)
    try:
        factory(APP, concurrency=1, extra_args=("-Q", "q1"))
        assert app.signature(TASK).apply_async((4,), queue="q1").get(timeout=10) == 16
    finally:
        app.close()
        factory.cleanup()
    for port in topology.live_ports():
        with topology.client(port) as node:
            node.execute_command("ACL", "SETUSER", "mc", "-cluster|slots")
    refused = WorkerFactory(url, prefix)
    try:
        worker = refused(APP, concurrency=1, wait_ready=False)
        assert worker.wait_exit(timeout=20) != 0, worker.describe()
        output = worker.output()
    finally:
        refused.cleanup()
    assert "lacks a permission" in output and "cluster|slots" in output, output
    assert "Traceback" not in output, output


def test_a_worker_waits_for_a_cluster_that_is_down_and_stops_in_one_line() -> None:
    """No node answers: the worker says so once per try, with backoff, its children wait
    too, and SIGTERM ends it cleanly: no traceback from any process."""
    from tests.helpers import free_port

    url = f"rediscluster://127.0.0.1:{free_port()}"
    factory = WorkerFactory(url, "down")
    try:
        worker = factory(APP, concurrency=2, wait_ready=False)
        worker.wait_for_line("Trying again in 2.00 seconds", timeout=30)
        worker.terminate()
        assert worker.wait_exit(timeout=20) is not None
        output = worker.output()
    finally:
        factory.cleanup()
    assert "stopped while waiting for Redis" in output, output
    assert "Traceback" not in output, output
