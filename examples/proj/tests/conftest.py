"""Fixtures for the proj tests, as Celery's testing guide shows them: the plugin
(``minicelery.contrib.pytest``) provides ``celery_app``, ``celery_worker`` and the rest;
these fixtures shape them, and run proj's own app on an in-process broker."""

from collections.abc import Iterator

import pytest

from minicelery.contrib.testing.worker import start_worker
from proj.celery import app as proj_app


@pytest.fixture(scope="session")
def celery_config():
    # Without a broker the test app gets its own in-process memory:// broker and backend;
    # a real Redis works the same: {"broker_url": "redis://localhost:6379/0", ...}.
    return {"task_default_queue": "proj-tests"}


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"queues": ["proj-tests"]}


@pytest.fixture(scope="session")
def proj_worker() -> Iterator[object]:
    """proj's own app, pointed at an in-process broker, with a worker in this process."""
    proj_app.conf.update(broker_url="memory://proj-tests", result_backend="memory://proj-tests")
    with start_worker(proj_app, pool="solo") as worker:
        yield worker
