"""``revoke_by_stamped_headers`` (and ``revoke`` by id) on a real worker: a task sent right
after the revocation (without waiting for the workers' replies) is revoked, every time,
although the command and the task reach the worker on different connections."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from minicelery import Celery
from minicelery.exceptions import TaskRevokedError
from tests.helpers import WorkerFactory
from tests.integration.apps.control import record
from tests.integration.conftest import CliRunner


def test_a_task_sent_right_after_its_stamp_is_revoked_never_runs(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module="tests.integration.apps.control", concurrency=1)
    for attempt in range(100):
        stamp = uuid.uuid4().hex
        capp.control.revoke_by_stamped_headers({"batch": [stamp]})
        doomed = record.si(runs, f"doomed-{attempt}")
        doomed.stamp(batch=stamp)
        with pytest.raises(TaskRevokedError):
            doomed.apply_async().get(timeout=10)
        kept = record.si(runs, f"kept-{attempt}")
        kept.stamp(batch=uuid.uuid4().hex)
        assert kept.apply_async().get(timeout=10) == f"kept-{attempt}"
    ran = {label.decode().partition("@")[0] for label in client.lrange(runs, 0, -1)}
    assert ran == {f"kept-{n}" for n in range(100)}


def test_a_task_sent_right_after_its_id_is_revoked_never_runs(
    capp: Celery, worker_factory: WorkerFactory, client: redis.Redis, runs: str
) -> None:
    worker_factory(app_module="tests.integration.apps.control", concurrency=1)
    for attempt in range(100):
        task_id = str(uuid.uuid4())
        capp.control.revoke(task_id)
        with pytest.raises(TaskRevokedError):
            record.apply_async((runs, f"doomed-{attempt}"), task_id=task_id).get(timeout=10)
    assert client.lrange(runs, 0, -1) == []


def test_the_control_command_revokes_by_stamp(
    capp: Celery, worker_factory: WorkerFactory, cli: CliRunner, runs: str
) -> None:
    worker_factory(app_module="tests.integration.apps.control", concurrency=1)
    stamp = uuid.uuid4().hex
    done = cli("-A", "tests.integration.apps.control", "control", "revoke_by_stamped_headers",
               f"batch={stamp}", "--timeout", "2", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (reply,) = json.loads(done.stdout).values()
    assert reply == {"ok": f"headers {{'batch': '{stamp}'}} flagged as revoked, but not terminated"}
    doomed = record.si(runs, "doomed")
    doomed.stamp(batch=stamp)
    with pytest.raises(TaskRevokedError):
        doomed.apply_async().get(timeout=10)
    bad = cli("-A", "tests.integration.apps.control", "control", "revoke_by_stamped_headers",
              "batch")  # fmt: skip
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
