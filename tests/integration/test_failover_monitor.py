"""A monitor (``minicelery events --dump``) lives through a Redis Cluster failover of the
master that holds the event stream: it says the connection was lost, and prints the events
of tasks sent after the failover, instead of exiting or reading the dead master forever."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from minicelery.redislayer.keys import KeySchema
from tests.helpers import REPO_ROOT, ManagedProcess, WorkerFactory, minicelery_argv, wait_until
from tests.integration.apps.cluster_app import QUEUES
from tests.integration.clusters import ClusterTopology, cluster_topology

APP = "tests.integration.apps.cluster_app"
TASK = "tests.integration.apps.cluster_app.late_square"

pytestmark = [pytest.mark.timeout(90), pytest.mark.single_server]  # a cluster of its own


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[ClusterTopology]:
    with cluster_topology(tmp_path) as started:
        yield started


def _spread(app: Celery, count: int, seconds: float) -> list[str]:
    square = app.signature(TASK)
    return [square.apply_async((n, seconds), queue=QUEUES[n % 6]).id for n in range(count)]


def _done(app: Celery, ids: list[str]) -> int:
    try:
        return sum(app.AsyncResult(task_id).state == "SUCCESS" for task_id in ids)
    except Exception:  # the cluster is changing: ask again on the next poll
        return 0


def test_a_monitor_reads_on_through_the_failover_of_the_event_streams_master(
    topology: ClusterTopology,
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    factory = WorkerFactory(topology.url, prefix)
    app = Celery("monitor_client", broker=topology.url, backend=topology.url, key_prefix=prefix)
    dump = ManagedProcess(minicelery_argv("-A", APP, "events", "--dump"), cwd=REPO_ROOT,
                          env=factory.env(), label="events")  # fmt: skip
    try:
        dump.wait_for_line("starting capture", timeout=15)
        factory(APP, concurrency=2, extra_args=("-Q", ",".join(QUEUES), "-E"))
        ids = _spread(app, 150, 0.03)  # events flow, and are being read, at the kill
        wait_until(lambda: _done(app, ids) >= 20, timeout=30)
        killed = topology.kill_master_of(KeySchema(prefix).events)
        killed_at = time.monotonic()
        topology.wait_failover(killed)
        probe = _spread(app, 1, 0)[0]
        dump.wait_for_line(f"task-succeeded: {TASK}[{probe}]", timeout=20)
        said = dump.output()
        assert "connection lost" in said and "reconnected" in said, dump.describe(10)
        print(f"the monitor printed a task sent after the failover "
              f"{time.monotonic() - killed_at:.1f}s after the kill")  # fmt: skip
    finally:
        app.close()
        dump.close()
        factory.cleanup()
        if factory.workers:
            print(dump.describe(10), factory.report(40))
