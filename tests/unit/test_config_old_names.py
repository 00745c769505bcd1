"""Celery's pre-4.0 upper-case setting names are mapped, and a mix of styles is refused."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from minicelery import Celery
from minicelery.exceptions import ImproperlyConfigured


@pytest.fixture
def config_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("oldstyle_celeryconfig")
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_old_names_in_a_config_module_are_mapped(config_module: types.ModuleType) -> None:
    config_module.BROKER_URL = "redis://127.0.0.1:6390/1"
    config_module.CELERY_RESULT_BACKEND = "redis://127.0.0.1:6390/2"
    config_module.CELERY_TASK_SERIALIZER = "msgpack"
    config_module.CELERYD_CONCURRENCY = 3
    config_module.CELERY_ROUTES = {"a.*": {"queue": "a"}}
    config_module.MY_OWN_CONSTANT = 1  # a user's name: not a setting, ignored as before
    app = Celery("old", set_as_current=False)
    app.config_from_object("oldstyle_celeryconfig")
    assert app.conf.broker_url == "redis://127.0.0.1:6390/1"
    assert app.conf.result_backend == "redis://127.0.0.1:6390/2"
    assert app.conf.task_serializer == "msgpack"
    assert app.conf.worker_concurrency == 3
    assert app.conf.task_routes == {"a.*": {"queue": "a"}}
    assert app.resolved_urls() == ("redis://127.0.0.1:6390/1", "redis://127.0.0.1:6390/2")
    assert app.conf["BROKER_URL"] == app.conf.BROKER_URL == "redis://127.0.0.1:6390/1"


def test_old_names_in_conf_update_and_constructor() -> None:
    app = Celery("old", set_as_current=False, CELERY_ALWAYS_EAGER=True)
    app.conf.update(BROKER_URL="memory://x", CELERY_TASK_RESULT_EXPIRES=60)
    assert app.conf.task_always_eager is True
    assert app.conf.broker_url == "memory://x"
    assert app.conf.result_expires == 60
    app.conf.CELERY_DEFAULT_QUEUE = "jobs"
    assert app.conf.task_default_queue == "jobs"


def test_a_mix_of_old_and_new_names_is_refused(config_module: types.ModuleType) -> None:
    config_module.broker_url = "redis://127.0.0.1:6390/1"
    config_module.result_backend = "redis://127.0.0.1:6390/2"
    config_module.CELERY_TASK_SERIALIZER = "msgpack"
    app = Celery("mixed", set_as_current=False)
    with pytest.raises(ImproperlyConfigured, match="Cannot mix new and old") as raised:
        app.config_from_object("oldstyle_celeryconfig")
    assert "CELERY_TASK_SERIALIZER" in str(raised.value)
    assert "-> task_serializer" in str(raised.value)
    with pytest.raises(ImproperlyConfigured, match="rename these to the old format"):
        app.conf.update(
            BROKER_URL="memory://a", CELERY_RESULT_BACKEND="memory://a", task_serializer="json"
        )


def test_a_name_given_in_both_styles_is_not_a_mix() -> None:
    app = Celery("both", set_as_current=False)
    app.conf.update(broker_url="memory://new", BROKER_URL="memory://old", result_expires=5)
    assert app.conf.broker_url == "memory://new"
