"""The ``minicelery`` command line, run as a user would (``python -m minicelery`` and the
console script) against a real redis-server and real workers: its output, its exit codes,
and one-line errors (never a traceback) for the mistakes users make."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

import minicelery
from minicelery import Celery
from tests.helpers import REPO_ROOT, WorkerFactory
from tests.integration.apps.basic import add
from tests.integration.conftest import CliRunner

BASIC = "tests.integration.apps.basic"
ADD = f"{BASIC}.add"
FAIL = f"{BASIC}.fail"
CLIPROJ = "tests.integration.apps.cliproj"


def queued(client: redis.Redis, prefix: str, queue: str = "celery") -> int:
    return sum(int(client.llen(f"{{{prefix}}}:q:{queue}:{p}")) for p in range(10))


def output_of(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def assert_one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """A failed command: non-zero exit, no traceback, one non-empty line of output."""
    text = output_of(done)
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{text}"
    assert lines[0].startswith("Error"), text
    return lines[0]


def call_id(done: subprocess.CompletedProcess[str]) -> str:
    """The task id ``call`` printed (and nothing else)."""
    assert done.returncode == 0, output_of(done)
    printed = done.stdout.strip()
    assert str(uuid.UUID(printed)) == printed, f"not a task id: {printed!r}"
    return printed


# --------------------------------------------------------------------------- basics


def test_version_from_console_script_and_module() -> None:
    script = Path(sys.executable).with_name("minicelery")
    assert script.exists(), f"console script not installed next to {sys.executable}"
    for argv in ([str(script), "--version"], [sys.executable, "-m", "minicelery", "--version"]):
        done = subprocess.run(
            argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, output_of(done)
        assert done.stdout.strip() == minicelery.__version__


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "minicelery", "--help"],
        cwd=REPO_ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, output_of(done)
    assert "Usage:" in done.stdout
    for command in ("worker", "call", "result", "purge", "dead"):
        assert command in done.stdout, done.stdout


# --------------------------------------------------------------------------- call / result


def test_call_then_result(app: Celery, worker_factory: WorkerFactory, cli: CliRunner) -> None:
    task_id = call_id(cli("-A", BASIC, "call", ADD, "--args", "[2,2]"))

    pending = cli("-A", BASIC, "result", task_id)
    assert pending.returncode == 1, output_of(pending)  # no result yet: scripts must see it
    assert pending.stdout.strip() == "PENDING"

    worker_factory(concurrency=1)
    assert app.AsyncResult(task_id).get(timeout=10) == 4
    shown = cli("-A", BASIC, "result", task_id)
    assert shown.returncode == 0, output_of(shown)
    assert shown.stdout.strip() == "4"


def test_call_with_kwargs_and_result_waits(worker_factory: WorkerFactory, cli: CliRunner) -> None:
    worker_factory(concurrency=1)
    task_id = call_id(cli("-A", BASIC, "call", ADD, "--kwargs", '{"x": 40, "y": 2}'))
    shown = cli("-A", BASIC, "result", task_id, "--timeout", "10")
    assert shown.returncode == 0, output_of(shown)
    assert shown.stdout.strip() == "42"


def test_result_traceback_of_failed_task(
    app: Celery, worker_factory: WorkerFactory, cli: CliRunner
) -> None:
    task_id = call_id(cli("-A", BASIC, "call", FAIL, "--args", '["kaput"]'))
    worker_factory(concurrency=1)
    with pytest.raises(ValueError, match="kaput"):
        app.AsyncResult(task_id).get(timeout=10)

    shown = cli("-A", BASIC, "result", task_id)
    assert shown.returncode == 1, output_of(shown)  # a failure exits non-zero
    assert shown.stdout.strip() == "ValueError: kaput"

    traced = cli("-A", BASIC, "result", task_id, "--traceback")
    assert traced.returncode == 0, output_of(traced)
    assert "Traceback (most recent call last)" in traced.stdout
    assert "ValueError: kaput" in traced.stdout


# --------------------------------------------------------------------------- purge


def test_purge_force(
    app: Celery, cli: CliRunner, redis_client: redis.Redis, key_prefix: str
) -> None:
    for n in range(3):
        add.delay(n, n)
    assert queued(redis_client, key_prefix) == 3

    purged = cli("-A", BASIC, "purge", "-f")
    assert purged.returncode == 0, output_of(purged)
    assert purged.stdout.strip() == "Purged 3 messages from 1 known task queue."
    assert queued(redis_client, key_prefix) == 0

    again = cli("-A", BASIC, "purge", "-f")
    assert again.returncode == 0, output_of(again)
    assert "Purged" not in again.stdout


def test_purge_without_force_and_no_tty_refuses(
    app: Celery, cli: CliRunner, redis_client: redis.Redis, key_prefix: str
) -> None:
    add.delay(1, 1)
    add.delay(2, 2)
    refused = cli("-A", BASIC, "purge")  # stdin is /dev/null: nobody can confirm
    text = output_of(refused)
    assert refused.returncode != 0, text
    assert "Traceback" not in text
    assert "-f" in text
    assert queued(redis_client, key_prefix) == 2


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        (f"{BASIC}_no_such_module", f"{BASIC}_no_such_module"),
        ("tests.integration.apps.no_such_package.tasks", "no_such_package"),
        ("tests.helpers", "tests.helpers"),  # exists, holds no app
        (f"{BASIC}:no_such_attr", "no_such_attr"),
        (f"{BASIC}:add", "add"),  # an attribute that is not an app
        (f"{CLIPROJ}:app", "app"),  # the package has no attribute app (its celery module has)
    ],
    ids=[
        "module-missing",
        "package-missing",
        "module-without-app",
        "attribute-missing",
        "attribute-not-an-app",
        "package-colon-app",
    ],
)
def test_bad_app_is_a_one_line_error(
    cli: CliRunner, redis_client: redis.Redis, key_prefix: str, spec: str, mentions: str
) -> None:
    line = assert_one_line_error(cli("-A", spec, "call", ADD, "--args", "[1,1]"))
    assert mentions in line
    assert queued(redis_client, key_prefix) == 0


def test_unreachable_broker_is_a_one_line_error(cli: CliRunner) -> None:
    done = cli("-A", BASIC, "-b", "redis://127.0.0.1:1/0", "call", ADD, "--args", "[1,1]")
    assert_one_line_error(done)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--args", "[2,"), ("--args", '{"x": 1}'), ("--kwargs", "[1]"), ("--kwargs", "{x: 1}")],
    ids=["args-not-json", "args-not-a-list", "kwargs-not-an-object", "kwargs-not-json"],
)
def test_bad_arguments_are_refused(
    cli: CliRunner, redis_client: redis.Redis, key_prefix: str, option: str, value: str
) -> None:
    done = cli("-A", BASIC, "call", ADD, option, value)
    text = output_of(done)
    assert done.returncode != 0, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and option in errors[0], text
    assert queued(redis_client, key_prefix) == 0, "a refused call published a message"


# --------------------------------------------------------------------------- -A forms


def test_app_resolution_like_celery(worker_factory: WorkerFactory, cli: CliRunner) -> None:
    # proj: the package's celery submodule holds the app.
    worker = worker_factory(app_module=CLIPROJ, concurrency=1)
    assert "cliproj.hello" in worker.output()  # the banner lists its task

    for spec in (
        f"{CLIPROJ}.celery:app",  # module:attr
        f"{CLIPROJ}.celery",  # module holding 'app'
        f"{CLIPROJ}.celery.app",  # module.attr
        CLIPROJ,  # package whose celery submodule holds the app
    ):
        task_id = call_id(cli("-A", spec, "call", "cliproj.hello", "--args", json.dumps([spec])))
        shown = cli("-A", spec, "result", task_id, "--timeout", "10")
        assert shown.returncode == 0, output_of(shown)
        assert shown.stdout.strip() == f"hello {spec}", f"-A {spec}: {output_of(shown)}"
