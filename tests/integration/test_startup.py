"""``broker_connection_retry_on_startup`` and ``broker_connection_max_retries``: a worker or a
client whose Redis is not up yet waits for it with backoff, logging each try (as Celery's
worker does), and fails in one line once the tries are spent or when the setting is off."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from tests.helpers import (
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    find_redis_server_bin,
    free_port,
    minicelery_argv,
    mode_args,
    run_cli,
)

STARTUP = "tests.integration.apps.startup"
ADD = f"{STARTUP}.add"


@pytest.fixture
def late_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with a port of its own, not started yet (the test starts it)."""
    binary = find_redis_server_bin()
    if binary is None:
        pytest.skip("redis-server not found")
    server = RedisServer(binary, tmp_path)
    server.port = free_port()
    try:
        yield server
    finally:
        server.stop()


def test_a_worker_waits_for_a_redis_that_starts_later(late_redis: RedisServer) -> None:
    factory = WorkerFactory(late_redis.url, "late")
    try:
        worker = factory(STARTUP, concurrency=1, wait_ready=False)
        # Two logged retries (about 1.5 s), then Redis comes up.
        worker.wait_for_line("Trying again in 1.00 seconds... (1/100)", timeout=15)
        worker.wait_for_line("Trying again in 2.00 seconds... (2/100)", timeout=15)
        assert worker.is_alive(), worker.describe()
        late_redis.start()
        worker.wait_ready(timeout=20)
        app = Celery("startup-client", broker=late_redis.url, backend=late_redis.url,
                     key_prefix="late", set_as_current=False)  # fmt: skip
        try:
            assert app.send_task(ADD, args=(2, 3)).get(timeout=15) == 5
        finally:
            app.close()
        assert "Cannot connect to redis://127.0.0.1:" in worker.output()
    finally:
        factory.cleanup()


def test_without_retry_on_startup_a_worker_fails_at_once_in_one_line(
    late_redis: RedisServer,
) -> None:
    factory = WorkerFactory(late_redis.url, "late")
    try:
        started = time.monotonic()
        worker = factory(STARTUP, concurrency=1, wait_ready=False,
                         env={"MC_TEST_RETRY_ON_STARTUP": "0"})  # fmt: skip
        code = worker.wait_exit(timeout=15)
        assert code != 0, worker.describe()
        assert time.monotonic() - started < 10
        output = worker.output()
        assert "Trying again" not in output
        assert f"Cannot connect to {late_redis.url}: Redis is unreachable" in output
        assert "Traceback" not in output, output
    finally:
        factory.cleanup()


def test_a_client_gives_up_after_max_retries(late_redis: RedisServer) -> None:
    env = {"MC_TEST_REDIS_URL": late_redis.url, "MC_TEST_MAX_RETRIES": "2"}
    done: subprocess.CompletedProcess[str] = run_cli(
        "-A", STARTUP, "call", ADD, "--args", "[1, 1]", env=env, timeout=30
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0
    assert [line.rsplit("(", 1)[-1] for line in lines[:2]] == ["1/2)", "2/2)"], lines
    assert lines[-1].startswith("Error: Cannot connect to redis://"), lines
    assert len(lines) == 3, lines


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_sigterm_stops_a_program_waiting_for_redis(late_redis: RedisServer, command: str) -> None:
    factory = WorkerFactory(late_redis.url, "late")
    mode = mode_args() if command == "worker" else ()
    argv = minicelery_argv("-A", STARTUP, command, "-l", "info", *mode)
    process = ManagedProcess(argv, cwd=REPO_ROOT, env=factory.env(), label=command)
    try:
        process.wait_for_line("Trying again in 1.00 seconds", timeout=15)
        process.terminate()
        process.wait_exit(timeout=10)
        assert "stopped while waiting for Redis" in process.output()
    finally:
        process.close()
