"""Tests of the test infrastructure itself (they do not need minicelery)."""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from tests.helpers import (
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    pid_alive,
    prefixed_keys,
    wait_until,
)
from tests.integration import conftest as integration_conftest

# --------------------------------------------------------------------------- wait_until


def test_wait_until_returns_the_truthy_value() -> None:
    calls = iter([0, None, "", "done"])
    assert wait_until(lambda: next(calls), timeout=5) == "done"


def test_wait_until_raises_assertion_error_with_message_on_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="never happens"):
        wait_until(lambda: False, timeout=0.1, message="never happens")
    assert 0.1 <= time.monotonic() - started < 5


def test_wait_until_evaluates_a_callable_message_lazily() -> None:
    state = {"n": 0}

    def predicate() -> bool:
        state["n"] += 1
        return False

    with pytest.raises(AssertionError, match=r"polled \d+ times"):
        wait_until(predicate, timeout=0.05, message=lambda: f"polled {state['n']} times")
    assert state["n"] > 1


def test_wait_until_propagates_errors_of_the_predicate() -> None:
    def predicate() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_until(predicate, timeout=5)


# --------------------------------------------------------------------------- redis_server


def test_redis_server_answers_ping_on_loopback(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert pid_alive(redis_server.pid)
    with redis_server.client() as client:
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    with redis_server.client() as client:
        assert client.ping() is True


def test_redis_server_restart_keeps_the_url(redis_server: RedisServer, key_prefix: str) -> None:
    url, port, old_pid = redis_server.url, redis_server.port, redis_server.pid
    with redis_server.client() as client:
        client.set(f"{key_prefix}:volatile", b"1")

    redis_server.stop()
    wait_until(lambda: not pid_alive(old_pid), timeout=5, message="old redis-server still alive")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    redis_server.start()
    assert (redis_server.url, redis_server.port) == (url, port)
    assert redis_server.pid != old_pid
    with redis.Redis.from_url(url) as client:
        assert client.ping() is True
        assert client.exists(f"{key_prefix}:volatile") == 0  # no persistence


# --------------------------------------------------------------------------- key_prefix


def test_prefixed_keys_deletes_only_matching_keys(redis_server: RedisServer) -> None:
    unrelated = "infra-unrelated-key"
    with redis_server.client() as client, redis_server.client(db=1) as client_db1:
        client.set(unrelated, b"keep")
        try:
            with prefixed_keys(redis_server) as prefix:
                assert re.fullmatch(r"t-[0-9a-f]{8}", prefix)
                pipe = client.pipeline(transaction=False)
                for i in range(2500):  # several SCAN pages and DEL batches
                    pipe.set(f"{prefix}:{i}", b"x")
                pipe.rpush(f"mc:queue:{prefix}", b"msg")  # prefix in the middle of the key
                pipe.execute()
                client_db1.set(f"other-db:{prefix}", b"x")
            assert list(client.scan_iter(match=f"*{prefix}*")) == []
            assert list(client_db1.scan_iter(match=f"*{prefix}*")) == []
            assert client.get(unrelated) == b"keep"
        finally:
            client.delete(unrelated)


_seen_prefixes: list[str] = []


def test_key_prefix_fixture_gives_a_unique_prefix(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    assert re.fullmatch(r"t-[0-9a-f]{8}", key_prefix)
    assert key_prefix not in _seen_prefixes
    redis_client.set(f"{key_prefix}:left-behind", b"x")
    redis_client.hset(f"celery-task-meta-{key_prefix}", "k", "v")
    _seen_prefixes.append(key_prefix)


def test_key_prefix_fixture_cleaned_up_after_previous_test(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    if not _seen_prefixes:
        pytest.skip("runs after test_key_prefix_fixture_gives_a_unique_prefix")
    assert key_prefix not in _seen_prefixes
    previous = _seen_prefixes[-1]
    assert list(redis_client.scan_iter(match=f"*{previous}*")) == []


# --------------------------------------------------------------------------- processes

# Stands in for `python -m minicelery ... worker`: prints its arguments and test env,
# starts two children (which inherit stdout), says "ready." and stops them on SIGTERM.
FAKE_WORKER = """
import os, signal, subprocess, sys
print("argv", sys.argv[1:])
print("env", os.environ["MC_TEST_REDIS_URL"], os.environ["MC_TEST_PREFIX"],
      os.environ.get("PYTHONUNBUFFERED"), os.environ.get("EXTRA", "-"))
children = [
    subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    for _ in range(2)
]
def on_term(signum, frame):
    for child in children:
        child.terminate()
    for child in children:
        child.wait()
    print("warm shutdown")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("fake@host ready.")
while True:
    signal.pause()
"""


def _fake_worker_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", FAKE_WORKER, *args]


@pytest.fixture
def fake_workers(redis_server: RedisServer, key_prefix: str) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(redis_server.url, key_prefix, argv_builder=_fake_worker_argv)
    try:
        yield factory
    finally:
        factory.cleanup()


def _two_children(worker: ManagedProcess) -> list[int]:
    children = worker.children()
    return children if len(children) == 2 else []


def test_worker_factory_command_line_and_environment(
    fake_workers: WorkerFactory, redis_server: RedisServer, key_prefix: str
) -> None:
    worker = fake_workers(extra_args=("-Q", "q1"), env={"EXTRA": "yes"})
    argv_line = worker.wait_for_line("argv")
    assert re.search(
        r"\['-A', 'tests\.integration\.apps\.basic', 'worker', '-l', 'info', '-c', '2', "
        r"'-P', 'prefork', '-n', 'w1-[0-9a-f]{6}@%h', '-Q', 'q1'\]",
        argv_line,
    ), argv_line
    assert worker.wait_for_line("env ") == f"env {redis_server.url} {key_prefix} 1 yes"
    assert "ready." in worker.output()
    second = fake_workers(concurrency=4, pool="solo", name="custom@%h")
    assert "'-c', '4', '-P', 'solo', '-n', 'custom@%h'" in second.wait_for_line("argv")


def test_worker_handle_children_and_graceful_stop(fake_workers: WorkerFactory) -> None:
    worker = fake_workers()
    children = wait_until(lambda: _two_children(worker))
    assert all(pid_alive(pid) for pid in children)
    assert worker.stop(timeout=10) == 0
    worker.wait_for_line("warm shutdown")
    assert not any(pid_alive(pid) for pid in children)


def test_worker_handle_kill_orphans_children_and_cleanup_kills_them(
    fake_workers: WorkerFactory,
) -> None:
    worker = fake_workers()
    children = wait_until(lambda: _two_children(worker))
    worker.kill()
    assert worker.proc.wait(timeout=10) == -9
    assert all(pid_alive(pid) for pid in children)  # orphaned, not stopped
    assert worker.children() == []
    fake_workers.cleanup()
    assert not any(pid_alive(pid) for pid in children)


def test_wait_for_line_fails_fast_when_the_output_ends(tmp_path: Path) -> None:
    proc = ManagedProcess([sys.executable, "-c", "print('only line')"], cwd=tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(AssertionError, match="output ended"):
            proc.wait_for_line("never printed", timeout=30)
        assert time.monotonic() - started < 10
        assert proc.wait_exit() == 0
        assert proc.lines == ["only line"]
    finally:
        proc.close()


def test_wait_for_line_times_out_with_the_output_in_the_message(tmp_path: Path) -> None:
    proc = ManagedProcess(
        [sys.executable, "-c", "import signal; print('hello', flush=True); signal.pause()"],
        cwd=tmp_path,
        label="pauser",
    )
    try:
        proc.wait_for_line("hello")
        with pytest.raises(AssertionError, match=r"(?s)no line containing 'bye'.*pauser.*hello"):
            proc.wait_for_line("bye", timeout=0.2)
    finally:
        proc.close()
    assert proc.returncode == -15


# --------------------------------------------------------------------------- markers


def test_integration_items_are_marked_automatically() -> None:
    def fake_item(path: Path) -> Any:
        item = SimpleNamespace(path=path, markers=[])
        item.add_marker = item.markers.append
        return item

    inside = fake_item(integration_conftest.INTEGRATION_DIR / "sub" / "test_x.py")
    outside = fake_item(Path(__file__))
    integration_conftest.pytest_collection_modifyitems(
        config=None,  # type: ignore[arg-type]
        items=[inside, outside],
    )
    assert [m.name for m in inside.markers] == ["integration"]
    assert outside.markers == []
