"""A pytest plugin for conformance runs (on either implementation): it caps every test's
timeout, so one hung test cannot stall the run, and leaves out the test files that need a
backend or transport other than Redis (reported as n/a). With ``CONFORMANCE_CHILDREN_CONSUME=0``
the suite's session worker runs minicelery's classic prefork pool (no children-consume)."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

CHILDREN_CONSUME = "CONFORMANCE_CHILDREN_CONSUME"

#: Files of Celery's integration suite that need another result backend or transport.
NOT_APPLICABLE = {
    "test_backend.py": "Azure Block Blob result backend",
    "test_cache_backend.py": "memcached result backend",
    "test_database_backend.py": "SQL database result backend",
}


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Generator[None, Any, None]:
    """Set ``worker_children_consume`` in the suite's ``celery_config`` (a dict its app and
    session worker are built from): off when the run asks for the classic pool."""
    outcome = yield
    if fixturedef.argname != "celery_config":
        return
    config = outcome.get_result()
    if isinstance(config, dict):
        config["worker_children_consume"] = os.environ.get(CHILDREN_CONSUME, "1") == "1"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in NOT_APPLICABLE:
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # shards are cut from the whole collection, before ``-k``
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep this run's shard of the tests (``CONFORMANCE_SHARD=i/n``: every n-th test from
    the i-th, so each shard gets a share of every file), and give the tests that ask for a
    longer timeout than ``CONFORMANCE_TIMEOUT`` the cap."""
    shard = os.environ.get("CONFORMANCE_SHARD")
    if shard:
        index, count = (int(x) for x in shard.split("/"))
        kept = [item for n, item in enumerate(items) if n % count == index - 1]
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
    cap = float(os.environ.get("CONFORMANCE_TIMEOUT", "0") or 0)
    if cap <= 0:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        asked = None
        if marker is not None:
            asked = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
        if asked is None or float(asked) > cap:
            item.add_marker(pytest.mark.timeout(cap), append=False)
