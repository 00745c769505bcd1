"""Celery's pytest fixtures, as a user's suite uses them (the plugin is loaded into this
suite by its ``pytest11`` entry point), on the in-process ``memory://`` broker."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from minicelery import Celery, _state
from minicelery.contrib.testing.app import TestApp, setup_default_app
from minicelery.contrib.testing.worker import start_worker

pytest_plugins = ["pytester"]


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("minicelery")
    assert plugin is not None and plugin.__name__ == "minicelery.contrib.pytest"


def test_celery_app_is_a_fresh_app_that_is_not_current(celery_app: Celery) -> None:
    assert isinstance(celery_app, Celery)
    assert _state._current_app is not celery_app
    assert celery_app.conf.broker_url.startswith("memory://")
    assert "celery.ping" in celery_app.tasks


@pytest.mark.celery(task_default_queue="marked", result_expires=60)
def test_the_celery_marker_overrides_the_config(celery_app: Celery) -> None:
    assert celery_app.conf.task_default_queue == "marked"
    assert celery_app.conf.result_expires == 60


def test_depends_on_current_app_makes_it_current(
    celery_app: Celery, depends_on_current_app: None
) -> None:
    assert _state.get_current_app() is celery_app


def test_celery_worker_runs_the_apps_tasks_in_a_thread(
    celery_app: Celery, celery_worker: Any
) -> None:
    @celery_app.task
    def where() -> str:
        return threading.current_thread().name

    # Registered after the worker started: a solo worker in this process sees it anyway.
    assert where.delay().get(timeout=5) != threading.current_thread().name
    assert celery_worker.hostname.startswith("gen")


def test_a_users_conftest_shapes_the_app_and_worker(pytester: pytest.Pytester) -> None:
    """A user's conftest overrides ``celery_config`` / ``celery_worker_parameters``; the
    worker reads the queue it was given, and the ping check passes through it."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def celery_config():
            return {"task_default_queue": "mine"}

        @pytest.fixture(scope="session")
        def celery_worker_pool():
            return "threads"

        @pytest.fixture(scope="session")
        def celery_worker_parameters():
            return {"concurrency": 2, "queues": ["mine"]}
        """
    )
    pytester.makepyfile(
        """
        def test_add(celery_app, celery_worker):
            @celery_app.task
            def add(x, y):
                return x + y
            assert celery_worker.queues == ["mine"]
            assert add.delay(2, 2).get(timeout=5) == 4

        def test_unit(celery_app):
            @celery_app.task
            def mul(x, y):
                return x * y
            assert mul(3, 4) == 12
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=2)


def test_test_app_config_and_parameters() -> None:
    app = TestApp(config={"task_default_queue": "q"}, task_cls=None)
    with setup_default_app(app):
        assert app.conf.task_default_queue == "q"
        assert app.conf.result_backend == app.conf.broker_url


def test_a_trapped_current_app_raises_when_used() -> None:
    app = TestApp()
    previous = _state._current_app
    with setup_default_app(app, use_trap=True), pytest.raises(RuntimeError, match="current_app"):
        _ = _state.get_current_app().conf
    assert _state._current_app is previous


def test_start_worker_refuses_arguments_it_does_not_know() -> None:
    app = TestApp()
    with (
        setup_default_app(app),
        pytest.raises(TypeError, match="bogus"),
        start_worker(app, bogus=1),
    ):
        pass


def test_session_fixtures_have_celerys_scopes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_one(celery_session_app, celery_session_worker):
            assert celery_session_app.tasks["celery.ping"].delay().get(timeout=5) == "pong"
            global FIRST
            FIRST = celery_session_worker

        def test_two(celery_session_app, celery_session_worker):
            assert celery_session_worker is FIRST
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
