"""Production Redis users: a worker and a client run as an ACL user with only the rights
minicelery needs; a wrong password, a missing permission or a refused certificate ends a
worker's start, or a CLI command, in one line naming the setting (no traceback, no retry)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from minicelery import Celery
from tests.helpers import RedisServer, WorkerFactory, find_redis_server_bin, run_cli
from tests.integration.tlsredis import tls_redis

STARTUP = "tests.integration.apps.startup"
ADD = f"{STARTUP}.add"
PASSWORD = "s3cret-Pw"


def acl_rules(prefix: str) -> list[str]:
    """The rules of the documented ``ACL SETUSER`` line, for ``key_prefix=prefix``."""
    return [
        "on", f">{PASSWORD}", "resetkeys", f"~{prefix}:*", f"~{{{prefix}}}:*", f"~{{{prefix}:*",
        "resetchannels", f"&{prefix}:*", "-@all", "+@read", "+@write", "+@transaction",
        "+@pubsub", "+@connection", "+eval", "+evalsha", "+script|load", "+time",
        "-@dangerous",
    ]  # fmt: skip


@pytest.fixture
def acl_redis(private_redis: RedisServer) -> Iterator[tuple[RedisServer, str]]:
    """The test's own Redis with a user ``mc`` that may do what minicelery needs."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    with private_redis.client() as admin:
        admin.acl_setuser("mc", reset=True)
        admin.execute_command("ACL", "SETUSER", "mc", *acl_rules(prefix))
    yield private_redis, prefix


def _url(server: RedisServer, user: str = "mc", password: str = PASSWORD) -> str:
    return f"redis://{user}:{password}@{server.host}:{server.port}/0"


def _one_line_exit(output: str, setting: str) -> None:
    lines = [line for line in output.splitlines() if "Cannot connect" in line]
    assert len(lines) == 1, output
    assert setting in lines[0], output
    assert "Traceback" not in output, output
    assert "Trying again" not in output, output


def test_a_worker_and_a_client_as_the_acl_user(acl_redis: tuple[RedisServer, str]) -> None:
    server, prefix = acl_redis
    url = _url(server)
    factory = WorkerFactory(url, prefix)
    app = Celery("acl", broker=url, backend=url, key_prefix=prefix, set_as_current=False)
    try:
        worker = factory(STARTUP, concurrency=2)
        results = [app.send_task(ADD, args=(n, n)) for n in range(20)]
        assert [r.get(timeout=15) for r in results] == [2 * n for n in range(20)]
        replies = app.control.inspect(timeout=2.0).ping()  # remote control: pub/sub
        assert replies and all(r == {"ok": "pong"} for r in replies.values()), replies
        assert "NOPERM" not in worker.output(), worker.output()
    finally:
        app.close()
        factory.cleanup()
    with server.client() as admin:  # and nothing outside the prefix was touched
        assert all(key.decode().lstrip("{").startswith(prefix) for key in admin.keys("*"))


def _start_failing_worker(url: str, prefix: str, env: dict[str, str] | None = None) -> str:
    factory = WorkerFactory(url, prefix)
    try:
        started = time.monotonic()
        worker = factory(STARTUP, concurrency=1, wait_ready=False, env=env)
        assert worker.wait_exit(timeout=20) != 0, worker.describe()
        assert time.monotonic() - started < 15
        return worker.output()
    finally:
        factory.cleanup()


def _cli(url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {"MC_TEST_REDIS_URL": url, "MC_TEST_PREFIX": prefix}
    return run_cli("-A", STARTUP, "call", ADD, "--args", "[1, 1]", env=env, timeout=30)


def test_a_wrong_password_is_one_line(acl_redis: tuple[RedisServer, str]) -> None:
    server, prefix = acl_redis
    url = _url(server, password="wrong")
    _one_line_exit(_start_failing_worker(url, prefix), "broker_url")
    done = _cli(url, prefix)
    assert done.returncode != 0
    _one_line_exit(done.stdout + done.stderr, "broker_url")
    assert "refused the user or password" in done.stderr


def test_a_missing_permission_is_one_line(acl_redis: tuple[RedisServer, str]) -> None:
    server, prefix = acl_redis
    with server.client() as admin:  # no scripts for this user
        admin.execute_command("ACL", "SETUSER", "mc", "-eval", "-evalsha")
    url = _url(server)
    output = _start_failing_worker(url, prefix)
    _one_line_exit(output, "broker_url")
    assert "lacks a permission" in output and "'eval'" in output
    done = _cli(url, prefix)
    assert done.returncode != 0
    _one_line_exit(done.stdout + done.stderr, "broker_url")


def test_a_refused_certificate_is_one_line(tmp_path: Path) -> None:
    binary = find_redis_server_bin()
    assert binary, "redis-server is needed"
    with tls_redis(binary, tmp_path) as url:
        env = {"MC_TEST_CERTS": str(tmp_path), "MC_TEST_CA": "other-ca.crt"}
        factory = WorkerFactory(url, "tls")
        try:
            worker = factory("tests.integration.apps.tls_app", concurrency=1,
                             wait_ready=False, env=env)  # fmt: skip
            assert worker.wait_exit(timeout=20) != 0, worker.describe()
            output = worker.output()
        finally:
            factory.cleanup()
    _one_line_exit(output, "broker_use_ssl")
    assert "CERTIFICATE_VERIFY_FAILED" in output


def test_the_acl_user_cannot_flush(acl_redis: tuple[RedisServer, str]) -> None:
    """The line is tight: the user cannot wipe the server or read other keys."""
    server, _ = acl_redis
    client = redis.Redis.from_url(_url(server))
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("someone-else:key")
    finally:
        client.close()
