"""Fixtures for the unit tests: in-process apps on ``memory://`` (fakeredis), one per test.

No processes and no redis-server: every test gets its own ``memory://<unique name>`` server
and its own key prefix, so tests never see each other's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from minicelery import Celery, _state
from minicelery.broker.redis import RedisBroker
from minicelery.redislayer import memory
from minicelery.redislayer.memory import memory_client
from minicelery.serialization import accepted_content_types

ACCEPT_JSON = accepted_content_types(["json"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A ``memory://`` URL whose fakeredis server no other test uses (freed afterwards)."""
    name = unique("unit")
    yield f"memory://{name}"
    memory._servers.pop(name, None)


@pytest.fixture
def key_prefix() -> str:
    """A unique key prefix (shadows the integration one, which needs a real redis-server)."""
    return unique("t")


@pytest.fixture
def make_app(memory_url: str, key_prefix: str) -> Iterator[Callable[..., Celery]]:
    """``make_app(**settings)``: a current app on the test's memory:// server and prefix.

    The previously current app is restored and every app made is closed and forgotten at
    teardown, so ``shared_task`` does not keep registering into dead apps.
    """
    previous = _state._current_app
    made: list[Celery] = []

    def factory(**settings: Any) -> Celery:
        settings.setdefault("key_prefix", key_prefix)
        broker = str(settings.pop("broker", memory_url))
        backend = str(settings.pop("backend", memory_url))
        set_as_current = bool(settings.pop("set_as_current", True))
        app = Celery("t", broker=broker, backend=backend, set_as_current=set_as_current, **settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.close()
        if app in _state._apps:
            _state._apps.remove(app)
    _state._current_app = previous


@pytest.fixture
def app(make_app: Callable[..., Celery]) -> Celery:
    """The test's app: ``Celery('t', broker='memory://<unique>', backend=<same>)``."""
    return make_app()


@pytest.fixture
def broker(memory_url: str, key_prefix: str) -> Iterator[RedisBroker]:
    """A bare RedisBroker on the test's memory:// server."""
    instance = RedisBroker(memory_client(memory_url), key_prefix)
    yield instance
    instance.close()
