"""Sentinel failover under load: the master is SIGKILLed while acks_late tasks drain on two
workers; the sentinels promote the replica, and every task still ends SUCCESS."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minicelery import Celery
from minicelery.exceptions import ImproperlyConfigured
from tests.helpers import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    WorkerFactory,
    find_redis_server_bin,
    minicelery_argv,
    wait_until,
)
from tests.integration.failover_checks import events_and_control_carry_on
from tests.integration.sentinels import MASTER_NAME, Sentinels, sentinel_set

APP = "tests.integration.apps.sentinel_app"
TASKS = 240
SENT_ID = re.compile(r"sent\. id->(\S+) run->")

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def sentinel_env(tmp_path: Path) -> Iterator[tuple[Any, Any, Sentinels]]:
    binary = find_redis_server_bin()
    assert binary, "redis-server is needed"
    with sentinel_set(binary, tmp_path) as parts:
        yield parts


def _app(url: str, prefix: str) -> Celery:
    options = {"master_name": MASTER_NAME}
    return Celery(
        "sentinel_client",
        broker=url,
        backend=url,
        key_prefix=prefix,
        broker_transport_options=options,
        result_backend_transport_options=options,
    )


def _states(app: Celery, ids: list[str]) -> dict[str, str]:
    """Each task's state, read through the app's own (sentinel) client."""
    try:
        return {task_id: app.AsyncResult(task_id).state for task_id in ids}
    except Exception:  # the failover window: ask again on the next poll
        return {}


def _succeeded(app: Celery, ids: list[str]) -> int:
    return sum(state == "SUCCESS" for state in _states(app, ids).values())


def _sent(beat: ManagedProcess) -> list[str]:
    """The ids of the runs ``beat`` logged as sent."""
    return [m[1] for line in list(beat.lines) if (m := SENT_ID.search(line))]


def _pings(app: Celery) -> dict[str, Any] | None:
    replies = app.control.inspect(timeout=1.0).ping() or {}
    return replies if len(replies) == 2 else None


def test_tasks_in_flight_survive_a_master_kill(sentinel_env: Any) -> None:
    master, replica, sentinels = sentinel_env
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    factory = WorkerFactory(sentinels.url, prefix)
    app = _app(sentinels.url, prefix)
    env = {"MC_TEST_MASTER_NAME": MASTER_NAME}
    beat = ManagedProcess(minicelery_argv("-A", APP, "beat", "-l", "debug"), cwd=REPO_ROOT,
                          env=factory.env(env), label="beat")  # fmt: skip
    # A monitor that lives through the failover: `minicelery events --dump`.
    dump = ManagedProcess(minicelery_argv("-A", APP, "events", "--dump"), cwd=REPO_ROOT,
                          env=factory.env(env), label="events")  # fmt: skip
    try:
        dump.wait_for_line("starting capture", timeout=15)
        for _ in range(2):
            factory(APP, concurrency=2, env=env, extra_args=("-E",))
        square = app.signature("tests.integration.apps.sentinel_app.late_square")
        ids = [square.delay(n, 0.06).id for n in range(TASKS)]
        with master.client() as client:  # the queue is on the replica before the kill
            assert client.wait(1, 5000) == 1
        wait_until(lambda: _succeeded(app, ids) >= 30, timeout=20)
        os.kill(master.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sent_before = len(_sent(beat))
        wait_until(
            lambda: sentinels.master_of(sentinels.ports[0]) == (LOOPBACK, replica.port),
            timeout=15,
        )
        failover = time.monotonic() - killed_at
        # The drain was under way, not over, when the master died (its replica has what
        # the master had at the kill, give or take the last writes).
        done_at_kill = _succeeded(app, ids)
        assert done_at_kill < TASKS - 20, done_at_kill
        done = wait_until(
            lambda: (lambda s: s if len(s) == TASKS and set(s.values()) == {"SUCCESS"} else None)(
                _states(app, ids)
            ),
            timeout=30,
            interval=0.2,
            message=lambda: f"states: {sorted(_states(app, ids).values())[:20]}...",
        )
        assert len(done) == TASKS
        assert [app.AsyncResult(i).result for i in ids[:5]] == [0, 1, 4, 9, 16]
        # Beat follows the new master: it sends more runs, and the workers run them.
        wait_until(lambda: len(_sent(beat)) >= sent_before + 3, timeout=15,
                   message=lambda: beat.describe(30))  # fmt: skip
        late = _sent(beat)[sent_before:]
        wait_until(lambda: set(_states(app, late).values()) == {"SUCCESS"}, timeout=15)
        # Remote control (pub/sub) follows the new master too: both workers answer.
        replies = wait_until(lambda: _pings(app), timeout=10, interval=0.2)
        assert len(replies) == 2, replies
        # Monitoring events and a command that changes the workers follow it as well.
        after, events = events_and_control_carry_on(
            app, set(replies), square.name, lambda: [square.delay(n).id for n in range(5)]
        )
        # The monitor started before the kill reads on through it, and prints them too.
        for task_id in after:
            dump.wait_for_line(f"task-succeeded: {square.name}[{task_id}]", timeout=10)
        said = dump.output()
        assert "connection lost" in said and "reconnected" in said, dump.describe(10)
        assert dump.is_alive(), dump.describe(10)
        print(f"failover took {failover:.1f}s; {done_at_kill} done by then; all {TASKS} SUCCESS "
              f"{time.monotonic() - killed_at:.1f}s after the kill; {len(events)} events read "
              "after it")  # fmt: skip
    finally:
        app.close()
        beat.close()
        dump.close()
        print(dump.describe(10))
        factory.cleanup()
        if factory.workers:
            print(factory.report())


def test_a_sentinel_url_without_master_name_is_refused() -> None:
    app = Celery("nomaster", broker="sentinel://127.0.0.1:26379", backend=None)
    with pytest.raises(ImproperlyConfigured, match=r"broker_transport_options.*master_name"):
        app.broker  # noqa: B018 - opening it is the check


def test_a_sentinel_that_refuses_the_password_is_one_line(tmp_path: Path) -> None:
    binary = find_redis_server_bin()
    assert binary, "redis-server is needed"
    with sentinel_set(binary, tmp_path, password="sentinel-pw") as (_, _, sentinels):
        factory = WorkerFactory(sentinels.url, "pw")
        try:
            env = {"MC_TEST_MASTER_NAME": MASTER_NAME, "MC_TEST_SENTINEL_PASSWORD": "wrong"}
            worker = factory(APP, concurrency=1, wait_ready=False, env=env)
            assert worker.wait_exit(timeout=20) != 0, worker.describe()
            output = worker.output()
        finally:
            factory.cleanup()
    lines = [line for line in output.splitlines() if "Cannot connect" in line]
    assert len(lines) == 1 and "sentinel_kwargs" in lines[0], output
    assert "Traceback" not in output and "Trying again" not in output, output
