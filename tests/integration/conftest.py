"""Fixtures for integration tests: real worker processes started through the CLI.

Every test collected below this directory is marked ``integration`` automatically.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import redis

from minicelery import Celery
from minicelery.redislayer.connect import client_for_url
from minicelery.redislayer.respclient import RespClient
from tests.cluster_mode import client_for_test_url
from tests.helpers import (
    RedisServer,
    WorkerFactory,
    find_redis_server_bin,
    pointed_at,
    run_cli,
)
from tests.integration.clusters import redis_cluster  # noqa: F401  (a fixture, used by name)

INTEGRATION_DIR = Path(__file__).resolve().parent

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, not only the ones in this folder.
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def worker_factory(redis_server: RedisServer, key_prefix: str) -> Iterator[WorkerFactory]:
    """Start ``python -m minicelery -A <app> worker ...`` subprocesses.

    ``worker_factory(app_module='tests.integration.apps.basic', concurrency=2,
    pool='prefork', name=None, extra_args=(), env=None, wait_ready=True)`` returns a
    handle with ``.proc``, ``.pid``, ``.lines``, ``.output()``, ``.wait_for_line()``,
    ``.wait_ready()``, ``.children()``, ``.terminate()``, ``.kill()`` and ``.stop()``.
    The workers get ``MC_TEST_REDIS_URL`` and ``MC_TEST_PREFIX`` in their environment.
    At teardown every worker is stopped by its PID and any recorded child still alive
    is SIGKILLed; the workers' output is printed (pytest shows it for failed tests).
    """
    factory = WorkerFactory(redis_server.url, key_prefix)
    try:
        yield factory
    finally:
        try:
            factory.cleanup()
        finally:
            if factory.workers:
                print(factory.report())


@pytest.fixture
def cli(redis_server: RedisServer, key_prefix: str) -> CliRunner:
    """``cli(*args, env=None, timeout=30)``: ``run_cli`` with the test's Redis URL and prefix."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        test_env = {"MC_TEST_REDIS_URL": redis_server.url, "MC_TEST_PREFIX": key_prefix}
        return run_cli(*args, env={**test_env, **(env or {})}, timeout=timeout)

    return run


@pytest.fixture
def app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    """The ``tests.integration.apps.basic`` app, pointed at the test's Redis and prefix."""
    from tests.integration.apps import basic

    with pointed_at(basic.app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.fixture
def capp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    """The ``tests.integration.apps.control`` app (revocation, rate limits, remote control),
    pointed at the test's Redis and prefix."""
    from tests.integration.apps.control import app as control_app

    with pointed_at(control_app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.fixture
def runs(key_prefix: str) -> str:
    """A Redis list for the test's tasks to record their runs in (removed with the prefix)."""
    return f"{key_prefix}:runs"


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    """A plain Redis client on the test's server, to look at what tasks recorded."""
    return client_for_test_url(redis_server.url)  # type: ignore[no-any-return]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to restart, stop (SIGSTOP) or set a password on:
    doing that to the session's would disturb other tests."""
    binary = find_redis_server_bin()
    assert binary, "redis-server is needed"
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)  # a test that stopped it (SIGSTOP) and failed
        server.stop()


@pytest.fixture
def rc(redis_server: RedisServer) -> Iterator[RespClient]:
    """Our own Redis client (what ``redis://`` URLs get) on the test's server."""
    made = client_for_url(redis_server.url)
    assert isinstance(made, RespClient)
    try:
        yield made
    finally:
        made.close()
