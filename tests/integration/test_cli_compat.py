"""The command line as Celery users script it: exit codes of ``result``, ``call`` and
``control``, one-line errors, and the ``shell``, ``report`` and ``inspect`` commands."""

from __future__ import annotations

import subprocess

import redis

from minicelery import Celery
from tests.helpers import REPO_ROOT, WorkerFactory, minicelery_argv, wait_until
from tests.integration.apps.basic import sleep
from tests.integration.conftest import CliRunner
from tests.integration.test_cli import ADD, BASIC, FAIL, assert_one_line_error, call_id, queued

COMPAT = "tests.integration.apps.compat"


def test_result_of_an_unknown_id_exits_non_zero(cli: CliRunner) -> None:
    done = cli("-A", BASIC, "result", "00000000-0000-4000-8000-000000000000")
    assert done.returncode == 1
    assert done.stdout.strip() == "PENDING"
    assert done.stderr.strip().startswith("Error: no result is known for task")


def test_result_of_a_revoked_task_prints_its_error(
    app: Celery, worker_factory: WorkerFactory, cli: CliRunner
) -> None:
    task_id = "11111111-1111-4111-8111-111111111111"
    app.control.revoke(task_id)
    sleep.apply_async((0,), task_id=task_id)
    worker_factory(concurrency=1)
    wait_until(lambda: app.AsyncResult(task_id).state == "REVOKED", timeout=15)
    done = cli("-A", BASIC, "result", task_id)
    assert done.returncode == 1
    line = done.stdout.strip()
    assert line.startswith("TaskRevokedError: ") and not line.startswith('"'), line


def test_call_of_an_unknown_name_sends_nothing(
    cli: CliRunner, redis_client: redis.Redis, key_prefix: str
) -> None:
    done = cli("-A", BASIC, "call", "no.such.task")
    line = assert_one_line_error(done)
    assert "'no.such.task' is not registered" in line
    assert queued(redis_client, key_prefix) == 0


def test_call_of_a_name_only_a_running_worker_knows(
    app: Celery, worker_factory: WorkerFactory, cli: CliRunner
) -> None:
    worker_factory(COMPAT, concurrency=1, extra_args=["-I", "tests.integration.apps.compat_extra"])
    task_id = call_id(cli("-A", BASIC, "call", "compat_extra.loaded"))
    assert app.AsyncResult(task_id).get(timeout=15) == "loaded by -I"


def test_call_checks_the_arguments_as_delay_does(
    cli: CliRunner, redis_client: redis.Redis, key_prefix: str
) -> None:
    line = assert_one_line_error(cli("-A", BASIC, "call", ADD, "--args", "[1]"))
    assert line == f"Error: {ADD}() missing 1 required positional argument: 'y'"
    line = assert_one_line_error(cli("-A", BASIC, "call", FAIL, "--kwargs", '{"nope": 1}'))
    assert "unexpected keyword argument 'nope'" in line
    assert queued(redis_client, key_prefix) == 0


def test_control_exits_non_zero_when_a_worker_refuses(
    worker_factory: WorkerFactory, cli: CliRunner
) -> None:
    worker_factory(concurrency=1)  # worker_pool_restarts is off
    done = cli("-A", BASIC, "control", "pool_restart")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ERROR" in done.stdout and "Pool restarts not enabled" in done.stdout
    assert cli("-A", BASIC, "control", "pool_grow", "1").returncode == 0


def test_a_bad_port_is_one_line(cli: CliRunner) -> None:
    for url in ("redis://127.0.0.1:99999/0", "redis://127.0.0.1:port/0"):
        line = assert_one_line_error(cli("-A", BASIC, "-b", url, "call", ADD, "--args", "[1,1]"))
        assert "bad port" in line
        line = assert_one_line_error(cli("-A", BASIC, "-b", url, "worker"))
        assert "bad port" in line


def test_inspect_list_clock_report_and_query_task(
    app: Celery, worker_factory: WorkerFactory, cli: CliRunner
) -> None:
    listed = cli("inspect", "--list")
    assert listed.returncode == 0
    assert all(f"|- {name}" in listed.stdout for name in ("query_task", "clock", "report"))
    worker = worker_factory(concurrency=1)
    running = sleep.delay(20)
    wait_until(lambda: app.control.inspect().active(), timeout=15)
    found = cli("-A", BASIC, "inspect", "query_task", running.id, "--json")
    assert found.returncode == 0, found.stderr
    assert f'"{running.id}": ["active"' in found.stdout
    clock = cli("-A", BASIC, "inspect", "clock")
    assert clock.returncode == 0 and "'clock':" in clock.stdout
    report = cli("-A", BASIC, "inspect", "report")
    assert report.returncode == 0 and f"pid:{worker.pid}" in report.stdout
    app.control.revoke(running.id, terminate=True, signal="SIGKILL")


def test_report_masks_secrets(cli: CliRunner) -> None:
    done = cli("-A", BASIC, "-b", "redis://user:hunter2@127.0.0.1:6399/0", "report")
    assert done.returncode == 0, done.stderr
    assert "software -> celery:minicelery-" in done.stdout
    assert "hunter2" not in done.stdout and "broker_url" in done.stdout


def test_shell_has_the_app_and_its_tasks(redis_server: object, key_prefix: str) -> None:
    script = "print(app.main, add.name, celery is app, chain.__name__)\n"
    done = subprocess.run(
        minicelery_argv("-A", BASIC, "shell", "--python"),
        cwd=REPO_ROOT,
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"basic {ADD} True _chain" in done.stdout
