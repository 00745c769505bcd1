"""Fixtures shared by the whole test-suite: a real redis-server and per-test key prefixes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.cluster_mode import cluster_for_session, cluster_wanted
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
    if cluster_wanted():
        yield from cluster_for_session(tmp_path_factory)  # type: ignore[misc]
        return
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the test cluster (``MC_TEST_CLUSTER``), skip what needs one plain server."""
    if not cluster_wanted():
        return
    skip = pytest.mark.skip(reason="needs one plain redis-server, not a cluster")
    for item in items:
        if item.get_closest_marker("single_server") is not None:
            item.add_marker(skip)


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
