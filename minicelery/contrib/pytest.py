"""The pytest plugin (Celery's ``celery.contrib.pytest``), registered through the
``pytest11`` entry point: fixtures for a test app and an embedded worker, and the
``@pytest.mark.celery(**config)`` marker.

Installed, it is loaded into every pytest session, so this module imports nothing from the
package at import time and its fixtures do nothing until a test asks for them. Override
``celery_config``, ``celery_parameters``, ``celery_includes``, ``celery_worker_pool`` or
``celery_worker_parameters`` in a ``conftest.py`` to shape the app and worker.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..app import Celery
    from .testing.worker import TestWorkController

NO_WORKER = os.environ.get("NO_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``celery`` marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers", "celery(**overrides): override celery configuration for a test case"
    )


@contextmanager
def _create_app(enable_logging: bool = False, use_trap: bool = False,
                parameters: Mapping[str, Any] | None = None,
                **config: Any) -> Iterator[Celery]:  # fmt: skip
    """A test app with ``config``, which is no longer current once the block ends."""
    from .testing.app import TestApp, setup_default_app

    app = TestApp(set_as_current=False, enable_logging=enable_logging, config=config,
                  **dict(parameters or {}))  # fmt: skip
    with setup_default_app(app, use_trap=use_trap):
        yield app


def _config_for(request: pytest.FixtureRequest, base: Mapping[str, Any]) -> dict[str, Any]:
    """``celery_config`` with the closest ``@pytest.mark.celery(...)`` applied over it."""
    mark = request.node.get_closest_marker("celery")
    return {**base, **(mark.kwargs if mark else {})}


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Override to return True: then any use of the current app (instead of the one a test
    was given) raises ``RuntimeError``."""
    return False


@pytest.fixture(scope="session")
def celery_session_app(request: pytest.FixtureRequest, celery_config: Mapping[str, Any],
                       celery_parameters: Mapping[str, Any], celery_enable_logging: bool,
                       use_celery_app_trap: bool) -> Iterator[Celery]:  # fmt: skip
    """One app for the whole session, made the current and default app."""
    with _create_app(celery_enable_logging, use_celery_app_trap, celery_parameters,
                     **_config_for(request, celery_config)) as app:  # fmt: skip
        if not use_celery_app_trap:
            app.set_default()
            app.set_current()
        yield app


@pytest.fixture(scope="session")
def celery_session_worker(
    request: pytest.FixtureRequest,
    celery_session_app: Celery,
    celery_includes: Sequence[str],
    celery_class_tasks: Sequence[Any],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[TestWorkController | None]:
    """A worker of ``celery_session_app`` in a thread, for the whole session."""
    from .testing import worker

    if NO_WORKER:
        yield None
        return
    for module in celery_includes:
        importlib.import_module(module)
    for class_task in celery_class_tasks:
        celery_session_app.register_task(class_task)
    with worker.start_worker(celery_session_app, pool=celery_worker_pool,
                             **celery_worker_parameters) as w:  # fmt: skip
        yield w


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """Override to return True to keep logging set up by the app (Celery's switch)."""
    return False


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Override to name modules (tasks, signal handlers) to import before a worker starts."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """Override to choose the embedded worker's pool: ``solo`` (default), ``threads`` or
    ``prefork``."""
    return "solo"


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Override to configure the test app (``broker_url``, ``result_backend``...). Without
    a broker the app gets its own in-process ``memory://`` broker and backend."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Override to pass keyword arguments to the test app's ``Celery(...)`` constructor."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Override to pass keyword arguments to the embedded worker (``queues``,
    ``concurrency``, ``perform_ping_check``, ``shutdown_timeout``...)."""
    return {}


@pytest.fixture(scope="session")
def celery_class_tasks() -> Sequence[Any]:
    """Override to list class-based tasks to register with the session app."""
    return []


@pytest.fixture()
def celery_app(request: pytest.FixtureRequest, celery_config: Mapping[str, Any],
               celery_parameters: Mapping[str, Any], celery_enable_logging: bool,
               use_celery_app_trap: bool) -> Iterator[Celery]:  # fmt: skip
    """A new app for this test, configured by ``celery_config`` and the ``celery``
    marker; it is not made current (``depends_on_current_app`` does that)."""
    with _create_app(celery_enable_logging, use_celery_app_trap, celery_parameters,
                     **_config_for(request, celery_config)) as app:  # fmt: skip
        yield app


@pytest.fixture()
def celery_worker(request: pytest.FixtureRequest, celery_app: Celery,
                  celery_includes: Sequence[str], celery_worker_pool: str,
                  celery_worker_parameters: Mapping[str, Any],
                  ) -> Iterator[TestWorkController | None]:  # fmt: skip
    """A worker of ``celery_app`` in a thread, stopped when the test returns."""
    from .testing import worker

    if NO_WORKER:
        yield None
        return
    for module in celery_includes:
        importlib.import_module(module)
    with worker.start_worker(celery_app, pool=celery_worker_pool,
                             **celery_worker_parameters) as w:  # fmt: skip
        yield w


@pytest.fixture()
def depends_on_current_app(celery_app: Celery) -> None:
    """Make ``celery_app`` the current app for this test."""
    celery_app.set_current()
