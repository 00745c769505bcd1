"""What a worker's main process has imported when it forks its fork server: every module
loaded by then is resident in the fork server and in every pool child, so code only some
paths need (other commands, the embedded Redis, opt-in codecs) must wait for its first use.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from minicelery.cli.lazy import LAZY_COMMANDS
from minicelery.cli.main import cli

# Up to the pool's start: the command line resolves the worker command, the app is made
# with a configured broker and its connection settings are resolved.
WORKER_START = """
import json, sys
import click
from minicelery import Celery
from minicelery.cli.main import cli
cli.get_command(click.Context(cli), "worker")
import minicelery.worker.controller, minicelery.worker.prefork
app = Celery("proj", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")
app.resolved_urls()
print(json.dumps(sorted(sys.modules)))
"""

NOT_BEFORE_THE_FORK = [
    "minicelery.cli.beat",
    "minicelery.cli.dashboard",
    "minicelery.cli.events",
    "minicelery.cli.inspect",
    "minicelery.cli.multi",
    "minicelery.cli.tools",
    "minicelery.cli.upgrade",
    "minicelery.redislayer.embedded",
    "hashlib",  # OpenSSL, loaded by the embedded Redis's database naming
    "decimal",  # the json/msgpack codecs' Decimal support
    "random",  # autoretry's backoff jitter
    "redis",
    "asyncio",
]


@pytest.fixture(scope="module")
def worker_modules() -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", WORKER_START], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", NOT_BEFORE_THE_FORK)
def test_a_worker_forks_before_importing(worker_modules: set[str], module: str) -> None:
    assert "minicelery.cli.worker" in worker_modules  # the probe did reach the worker
    assert module not in worker_modules


def test_every_command_is_listed_and_resolves_to_itself() -> None:
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert set(LAZY_COMMANDS) <= set(names)
    assert names == sorted(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name


def test_an_unknown_command_is_none() -> None:
    assert cli.get_command(click.Context(cli), "no-such-command") is None
