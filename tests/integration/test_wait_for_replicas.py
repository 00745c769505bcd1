"""Opt-in replica acknowledgement (``wait_for_replicas`` in the transport options): the hot
path's writes WAIT for the replicas; when they do not answer in time, the write stands and a
warning says so."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from tests.helpers import LOOPBACK, RedisServer, WorkerFactory, find_redis_server_bin, wait_until

APP = "tests.integration.apps.startup"


@pytest.fixture
def master_and_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    binary = find_redis_server_bin()
    assert binary, "redis-server is needed"
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master, replica = RedisServer(binary, tmp_path / "m"), RedisServer(binary, tmp_path / "r")
    try:
        master.start()
        replica.start()
        with replica.client() as client:
            client.replicaof(LOOPBACK, master.port)
            wait_until(lambda: client.info("replication")["master_link_status"] == "up", 10)
        yield master, replica
    finally:
        with contextlib.suppress(ProcessLookupError, RuntimeError):
            os.kill(replica.pid, signal.SIGCONT)
        replica.stop()
        master.stop()


def _waits(master: RedisServer) -> int:
    with master.client() as client:
        return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def _app(url: str, prefix: str, timeout: float = 0.5) -> Celery:
    options = {"wait_for_replicas": 1, "wait_for_replicas_timeout": timeout}
    return Celery("replicas", broker=url, backend=url, key_prefix=prefix, set_as_current=False,
                  broker_transport_options=options)  # fmt: skip


def test_publishes_acks_and_results_wait_for_the_replica(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = master_and_replica
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    app = _app(master.url, prefix)
    factory = WorkerFactory(master.url, prefix)
    env = {"MC_TEST_WAIT_FOR_REPLICAS": "1"}
    try:
        factory(APP, concurrency=2, env=env)
        before = _waits(master)
        results = [app.send_task(f"{APP}.add", args=(n, 1)) for n in range(10)]
        assert [r.get(timeout=15) for r in results] == [n + 1 for n in range(10)]
        # At least one WAIT per publish, and more for the workers' reserves, acks, results.
        assert _waits(master) - before > 10
    finally:
        app.close()
        factory.cleanup()


def test_a_replica_that_does_not_answer_costs_the_timeout_and_a_warning(
    master_and_replica: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    master, replica = master_and_replica
    app = _app(master.url, f"t-{uuid.uuid4().hex[:8]}", timeout=0.3)
    try:
        app.send_task(f"{APP}.add", args=(1, 1))  # connected, replica answering
        os.kill(replica.pid, signal.SIGSTOP)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            result = app.send_task(f"{APP}.add", args=(2, 2))
        assert time.monotonic() - started >= 0.25
        assert "only 0 of 1 replica(s) acknowledged" in caplog.text
        with master.client() as client:  # the write stands: both messages are queued
            queues = client.keys(f"{app.conf.key_prefix}:q:*")
            assert sum(client.llen(key) for key in queues) == 2, result.id
    finally:
        os.kill(replica.pid, signal.SIGCONT)
        app.close()
