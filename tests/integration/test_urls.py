"""Broker URLs beyond ``redis://``: a real worker and client over a Unix socket."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import REPO_ROOT, find_redis_server_bin, wait_until
from tests.integration.test_examples import run_python, start_worker


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server listening only on a Unix socket (no TCP port), stopped by its PID."""
    binary = find_redis_server_bin()
    if binary is None:
        pytest.skip("no redis-server")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(
            lambda: sock.exists() and redis.Redis(unix_socket_path=str(sock)).ping(),
            timeout=10,
            message="redis-server did not open its unix socket",
        )
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_first_steps_over_a_unix_socket(unix_redis: Path) -> None:
    url = f"unix://{unix_redis}"
    env = {
        **os.environ,
        "MINICELERY_BROKER_URL": url,
        "MINICELERY_RESULT_BACKEND": url,
        "PYTHONUNBUFFERED": "1",
    }
    folder = REPO_ROOT / "examples" / "first_steps"
    worker = start_worker("tasks", folder, env)
    try:
        assert f"transport:   {url}" in worker.output()
        out = run_python(
            "from tasks import add\nprint(add.delay(20, 22).get(timeout=10))", folder, env
        )
        assert out.strip() == "42"
    finally:
        assert worker.stop() == 0, worker.describe()
