"""The beat for real: ``minicelery beat`` processes and a worker on a real redis-server, running
``tests.integration.apps.periodic``. Runs are counted in Redis lists by the task itself; the
runs each beat sent are read from its log (``run-><time>`` marks every run it claimed).

Several beats run together and each run is sent once; killing the leading beat with SIGKILL
loses at most one run; a restart neither repeats nor skips a run; ``worker -B`` runs a beat
in the worker. Everything waits by polling (``wait_until``), never by sleeping.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping

import pytest

from minicelery import Celery
from minicelery.redislayer.keys import KeySchema
from minicelery.result import AsyncResult
from tests.helpers import (
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    minicelery_argv,
    pointed_at,
    wait_until,
)
from tests.integration.apps.periodic import app as periodic_app
from tests.integration.conftest import CliRunner

PERIODIC = "tests.integration.apps.periodic"
EXAMPLE = REPO_ROOT / "examples" / "periodic"
EXAMPLE_DB = 7  # the example uses the default key prefix: keep it in a database of its own
TASK = f"{PERIODIC}.record"
MARK = re.compile(r"sent\. id->\S+ run->([\d.]+)")
SENT_ID = re.compile(r"sent\. id->(\S+) run->")


class Beats:
    """Starts ``minicelery beat`` processes with the test's settings; stops them all."""

    def __init__(self, factory: WorkerFactory) -> None:
        self.factory = factory
        self.started: list[ManagedProcess] = []

    def __call__(
        self, label: str, env: Mapping[str, str] | None = None, *extra: str
    ) -> ManagedProcess:
        argv = minicelery_argv("-A", PERIODIC, "beat", "-l", "debug", *extra)
        beat = ManagedProcess(argv, cwd=REPO_ROOT, env=self.factory.env(env), label=label)
        self.started.append(beat)
        beat.wait_for_line("beat: Starting", timeout=20)
        return beat

    def close(self) -> None:
        for beat in self.started:
            beat.close()

    def report(self) -> str:
        return "\n\n".join(beat.describe(60) for beat in self.started)


@pytest.fixture
def beats(worker_factory: WorkerFactory) -> Iterator[Beats]:
    started = Beats(worker_factory)
    try:
        yield started
    finally:
        started.close()
        if started.started:
            print(started.report())


@pytest.fixture
def periodic(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(periodic_app, redis_server, key_prefix) as pointed:
        yield pointed


def marks(beat: ManagedProcess) -> list[float]:
    """The runs ``beat`` sent, by the time each stands for."""
    return [float(m[1]) for line in list(beat.lines) if (m := MARK.search(line))]


def sent_ids(beat: ManagedProcess) -> list[str]:
    """The task ids of the runs ``beat`` logged as sent."""
    return [m[1] for line in list(beat.lines) if (m := SENT_ID.search(line))]


def runs(app: Celery, label: str = "tick") -> list[tuple[float, str]]:
    """``(time, task id)`` of every execution of ``label``'s task so far."""
    client = app.broker.client  # type: ignore[attr-defined]
    raw = client.lrange(f"{app.conf.key_prefix}:runs:{label}", 0, -1)
    return [(float(when), task_id) for when, task_id in (item.decode().split() for item in raw)]


def slots(first: float, later: float, interval: float) -> int:
    """How many intervals lie between two runs' times (1 for consecutive runs)."""
    return round((later - first) / interval)


def lease_key(app: Celery) -> str:
    return KeySchema(app.conf.key_prefix).lease("beat")


# --------------------------------------------------------------------------- the command


def test_beat_answers_ping_when_remote_control_is_enabled(
    periodic: Celery, beats: Beats
) -> None:
    """``--enable-remote-control``: the beat joins the workers' command channel as the node
    ``-n`` names and answers ``ping`` (a liveness probe); without it, it stays off."""
    host = socket.gethostname()
    quiet = beats("quiet")
    beats("probed", None, "--enable-remote-control", "-n", "probed-beat@%h")
    node = f"probed-beat@{host}"
    wait_until(lambda: periodic.control.ping(destination=[node], timeout=1), timeout=20)
    assert periodic.control.ping(destination=[node], timeout=2) == [{node: {"ok": "pong"}}]
    assert periodic.control.ping(destination=[f"celerybeat@{host}"], timeout=0.5) == []
    assert quiet.proc.poll() is None


def test_beat_sends_to_a_worker_and_results_come_back(
    periodic: Celery, worker_factory: WorkerFactory, beats: Beats
) -> None:
    env = {"MC_TEST_BEAT_INTERVAL": "0.5", "MC_TEST_BEAT_HOOK": "1"}
    worker_factory(PERIODIC, extra_args=["-Q", "celery,periodic"], env=env)
    beat = beats("beat", env)
    wait_until(lambda: len(runs(periodic)) >= 3 and len(runs(periodic, "hooked")) >= 2, 20)
    for position, (_, task_id) in enumerate(runs(periodic)[:3], start=1):
        assert AsyncResult(task_id, app=periodic).get(timeout=10) == position
    beat.wait_for_line(f"Scheduler: Sending due task tick ({TASK})")
    beat.wait_for_line(f"Scheduler: Sending due task hooked every interval ({TASK})")
    beat.terminate()
    assert beat.wait_exit(10) == 0
    assert "Traceback" not in beat.output()
    client = periodic.broker.client  # type: ignore[attr-defined]
    assert client.get(lease_key(periodic)) is None  # released on a clean exit


def test_a_broken_schedule_is_a_one_line_error(cli: CliRunner) -> None:
    for command in (["beat"], ["worker", "-B", "-P", "solo"]):
        done = cli("-A", PERIODIC, *command, env={"MC_TEST_BEAT_BAD": "1"}, timeout=30)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Error: beat_schedule['broken']: 'schedule' is missing" in done.stderr
        assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- high availability


@pytest.mark.timeout(90)
def test_two_beats_send_each_run_once_and_survive_the_leader_being_killed(
    periodic: Celery, worker_factory: WorkerFactory, beats: Beats
) -> None:
    interval = 0.5
    env = {"MC_TEST_BEAT_INTERVAL": str(interval), "MC_TEST_BEAT_LEASE": "0.5"}
    worker_factory(PERIODIC, env=env)
    pair = [beats("beat-a", env), beats("beat-b", env)]
    wait_until(lambda: len(runs(periodic)) >= 20, 40, message="fewer than 20 runs")

    sent = sorted(marks(pair[0]) + marks(pair[1]))
    assert len(sent) == len(set(sent)), f"a run was sent twice: {sent}"
    span = slots(sent[0], sent[-1], interval) + 1
    assert len(sent) >= 0.8 * span, f"{len(sent)} runs sent over {span} intervals"

    # Kill whichever beat sent the latest run; the other takes over within the lease.
    leader = max(pair, key=lambda beat: max(marks(beat), default=0.0))
    survivor = pair[1 - pair.index(leader)]
    leader.kill()
    leader.wait_exit(10)
    killed_at = time.time()
    last_before = max(marks(leader) + marks(survivor))
    wait_until(lambda: len([m for m in marks(survivor) if m > last_before]) >= 3, 20)
    after = sorted(m for m in marks(survivor) if m > last_before)[:3]
    lost = slots(last_before, after[0], interval) - 1
    assert lost <= 1, f"lost {lost} runs: last before {last_before}, after {after}"
    assert after[0] - killed_at < 0.5 + 3.0  # the lease, plus generous latency
    assert [slots(a, b, interval) for a, b in itertools.pairwise(after)] == [1, 1]

    # Every run sent was executed once by the worker. The killed leader may have sent one
    # more run than it logged (killed between the two): at most one executed unlogged.
    logged = set(sent_ids(leader) + sent_ids(survivor))
    wait_until(lambda: logged <= {task_id for _, task_id in runs(periodic)}, 15)
    survivor.terminate()
    assert survivor.wait_exit(10) == 0
    executed = [task_id for _, task_id in runs(periodic)]
    assert len(executed) == len(set(executed)), "a run was executed twice"
    assert len(set(executed) - logged) <= 1, (sorted(set(executed) - logged), sorted(logged))


def test_a_restarted_beat_neither_repeats_nor_skips_a_run(
    periodic: Celery, worker_factory: WorkerFactory, beats: Beats
) -> None:
    interval = 1.5
    env = {"MC_TEST_BEAT_INTERVAL": str(interval)}
    first = beats("beat-first", env)
    wait_until(lambda: len(marks(first)) >= 2, 15)
    first.terminate()  # just after a run was sent
    assert first.wait_exit(10) == 0
    before = marks(first)
    second = beats("beat-second", env)
    wait_until(lambda: marks(second), 15)
    first_after = marks(second)[0]
    # The run after the restart is the next one on the same schedule: not the last run
    # again, not one interval after the restart.
    assert slots(before[-1], first_after, interval) == 1, (before, first_after)
    assert abs(first_after - (before[-1] + interval)) < 0.01
    line = second.wait_for_line("Scheduler: Sending due task tick")
    sent_at = time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S"))
    assert sent_at - first_after < 2.0  # sent on time (log stamps have 1 s resolution)


def test_worker_with_dash_b_runs_the_beat(
    periodic: Celery, worker_factory: WorkerFactory
) -> None:
    env = {"MC_TEST_BEAT_INTERVAL": "0.3"}
    worker = worker_factory(PERIODIC, concurrency=1, extra_args=["-B"], env=env)
    wait_until(lambda: len(runs(periodic)) >= 3, 20)
    worker.wait_for_line(f"Scheduler: Sending due task tick ({TASK})")
    worker.terminate()
    assert worker.wait_exit(15) == 0
    client = periodic.broker.client  # type: ignore[attr-defined]
    assert client.get(lease_key(periodic)) is None
    assert "Traceback" not in worker.output()


@pytest.mark.single_server  # its own database number
def test_the_periodic_tasks_example_starts_as_documented(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{EXAMPLE_DB}"
    env = {
        **os.environ,
        "MINICELERY_BROKER_URL": url,
        "MINICELERY_RESULT_BACKEND": url,
        "PYTHONUNBUFFERED": "1",
    }
    argv = minicelery_argv("-A", "tasks", "beat", "--loglevel=INFO")
    beat = ManagedProcess(argv, cwd=EXAMPLE, env=env, label="example beat")
    try:
        beat.wait_for_line(". entries -> 6", timeout=20)  # four from the hook, two configured
        beat.wait_for_line("is now the beat that sends", timeout=20)
        beat.terminate()
        assert beat.wait_exit(10) == 0
    finally:
        beat.close()
        with redis_server.client(db=EXAMPLE_DB) as client:
            client.flushdb()
