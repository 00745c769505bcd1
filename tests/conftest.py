"""Fixtures shared by the whole test-suite: a real redis-server and per-test key prefixes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.helpers import RedisServer, find_redis_server_bin, prefixed_keys


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n`` and no ``--dist``, idle xdist workers steal queued tests from busy ones:
    the suite's durations are uneven (a few tests take 10 s and more), and the default
    ``load`` left one worker with a long tail while the others had finished. Set here, not in
    ``addopts``, so that ``-p no:xdist`` (and ``--dist`` given explicitly) still work."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
        config.option.dist = "worksteal"


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port, for the whole session.

    Has ``.url``, ``.port``, ``.pid``, ``.client()``, ``.stop()`` and ``.start()`` (which
    restarts it on the same port). Skipped when no binary is found, unless ``$CI`` is set.
    """
    binary = find_redis_server_bin()
    if binary is None or not os.access(binary, os.X_OK):
        reason = (
            f"redis-server binary not usable: {binary!r}"
            if binary
            else "redis-server not found (set REDIS_SERVER_BIN or install redis-server)"
        )
        if _running_in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = RedisServer(binary, tmp_path_factory.mktemp("redis-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _restart_stopped_redis_server(request: pytest.FixtureRequest) -> None:
    """A test that stopped the shared server and failed must not break the next ones."""
    if "redis_server" in request.fixturenames:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.ensure_running()


@pytest.fixture
def key_prefix(redis_server: RedisServer) -> Iterator[str]:
    """A unique ``t-<8 hex>`` prefix; keys matching ``*<prefix>*`` are deleted afterwards."""
    with prefixed_keys(redis_server) as prefix:
        yield prefix


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client for db 0 of ``redis_server``, closed after the test."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()
