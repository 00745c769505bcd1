"""Settings: Celery's names and defaults, update/attribute access, config_from_object,
validation (ImproperlyConfigured naming the setting) and warnings for unknown names."""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from minicelery import Celery
from minicelery.config import Settings
from minicelery.exceptions import ImproperlyConfigured

CELERY_DEFAULTS: dict[str, Any] = {
    "broker_url": None,
    "result_backend": None,
    "task_default_queue": "celery",
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": None,
    "result_expires": 86400,
    "result_extended": False,
    "task_default_priority": None,
    "task_routes": None,
    "task_create_missing_queues": True,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_ignore_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_track_started": False,
    "task_acks_late": False,
    "task_acks_on_failure_or_timeout": True,
    "task_reject_on_worker_lost": None,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_rate_limit": None,
    "task_publish_retry": True,
    "task_send_sent_event": False,
    "timezone": None,
    "enable_utc": True,
    "broker_connection_timeout": 4.0,
    "broker_connection_max_retries": 100,
    "broker_connection_retry_on_startup": True,
    "worker_concurrency": None,
    "worker_prefetch_multiplier": 4,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "worker_hijack_root_logger": True,
    "worker_redirect_stdouts": True,
    "worker_send_task_events": False,
    "worker_disable_rate_limits": False,
}


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(("name", "expected"), sorted(CELERY_DEFAULTS.items()))
def test_celery_default(name: str, expected: Any) -> None:
    conf = Settings()
    assert conf[name] == expected
    assert getattr(conf, name) == expected


def test_app_defaults_match_celery(app: Celery) -> None:
    assert app.conf.task_default_queue == "celery"
    assert app.conf.result_expires == 86400
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"


def test_mutable_defaults_are_not_shared_between_settings() -> None:
    first, second = Settings(), Settings()
    first.accept_content.append("msgpack")
    first.broker_transport_options["visibility_timeout"] = 10
    assert second.accept_content == ["json"]
    assert second.broker_transport_options == {}
    assert Settings().accept_content == ["json"]


def test_two_apps_have_independent_settings(make_app: Callable[..., Celery]) -> None:
    one, two = make_app(), make_app()
    one.conf.task_default_queue = "one"
    assert two.conf.task_default_queue == "celery"


# --------------------------------------------------------------------------- update / access


def test_conf_update_with_mapping_and_keywords(app: Celery) -> None:
    app.conf.update({"task_default_queue": "jobs"}, result_expires=60, task_acks_late=True)
    assert app.conf.task_default_queue == "jobs"
    assert app.conf["result_expires"] == 60
    assert app.conf.task_acks_late is True


def test_attribute_and_item_access_are_the_same_setting(app: Celery) -> None:
    app.conf.task_default_queue = "attr"
    assert app.conf["task_default_queue"] == "attr"
    app.conf["task_default_queue"] = "item"
    assert app.conf.task_default_queue == "item"
    assert app.conf.get("task_default_queue") == "item"
    assert "task_default_queue" in app.conf


def test_unknown_attribute_raises_attribute_error(app: Celery) -> None:
    with pytest.raises(AttributeError):
        _ = app.conf.no_such_setting_anywhere


def test_deleting_a_setting_restores_its_default(app: Celery) -> None:
    app.conf.result_expires = 5
    del app.conf["result_expires"]
    assert app.conf.result_expires == 86400


def test_settings_given_to_the_constructor(make_app: Callable[..., Celery]) -> None:
    app = make_app(task_default_queue="kw", task_always_eager=True)
    assert app.conf.task_default_queue == "kw"
    assert app.conf.task_always_eager is True
    assert str(app.conf.broker_url).startswith("memory://")
    assert app.conf.result_backend == app.conf.broker_url


def test_values_are_normalised(app: Celery) -> None:
    app.conf.update(
        result_expires=dt.timedelta(hours=1),
        task_acks_late="true",
        task_track_started="off",
        accept_content="msgpack",
        imports="proj.tasks",
    )
    assert app.conf.result_expires == 3600
    assert app.conf.task_acks_late is True
    assert app.conf.task_track_started is False
    assert app.conf.accept_content == ["msgpack"]
    assert app.conf.imports == ("proj.tasks",)


# --------------------------------------------------------------------------- config_from_object


@pytest.fixture
def config_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The dotted name of a fresh importable configuration module."""
    name = f"unit_celeryconfig_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import os  # an imported module is not a setting

            task_default_queue = "from-module"
            result_expires = 120
            task_acks_late = True
            accept_content = ["json", "msgpack"]
            UPPER_CASE = "ignored"
            _private = "ignored"


            def helper():
                return 1


            class Alt:
                task_default_queue = "alt-object"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_config_from_object_module_path(app: Celery, config_module: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.config_from_object(config_module)
    assert app.conf.task_default_queue == "from-module"
    assert app.conf.result_expires == 120
    assert app.conf.task_acks_late is True
    assert app.conf.accept_content == ["json", "msgpack"]
    assert "UPPER_CASE" not in app.conf
    assert "_private" not in app.conf
    assert "os" not in app.conf
    assert "helper" not in app.conf


def test_config_from_object_module_object_and_attribute_path(
    app: Celery, config_module: str
) -> None:
    module = __import__(config_module)
    app.config_from_object(module)
    assert app.conf.result_expires == 120
    app.config_from_object(f"{config_module}:Alt")
    assert app.conf.task_default_queue == "alt-object"


def test_config_from_object_plain_object(app: Celery) -> None:
    class Config:
        task_default_queue = "from-object"
        task_serializer = "msgpack"
        result_expires = dt.timedelta(minutes=2)

    app.config_from_object(Config)
    assert app.conf.task_default_queue == "from-object"
    assert app.conf.task_serializer == "msgpack"
    assert app.conf.result_expires == 120


def test_config_from_object_with_celery_namespace(app: Celery, memory_url: str) -> None:
    class DjangoSettings:
        CELERY_BROKER_URL = memory_url + "-ns"
        CELERY_TASK_ALWAYS_EAGER = True
        CELERY_RESULT_EXPIRES = 30
        CELERY_TASK_DEFAULT_QUEUE = "django"
        DEBUG = True
        task_default_queue = "not-namespaced"

    app.config_from_object(DjangoSettings, namespace="CELERY")
    assert app.conf.broker_url == memory_url + "-ns"
    assert app.conf.task_always_eager is True
    assert app.conf.result_expires == 30
    assert app.conf.task_default_queue == "django"
    assert "debug" not in app.conf
    assert "DEBUG" not in app.conf


def test_config_from_object_validates_values(app: Celery) -> None:
    class Bad:
        task_serializer = "yaml"

    with pytest.raises(ImproperlyConfigured, match="task_serializer"):
        app.config_from_object(Bad)


def test_config_from_missing_module(app: Celery) -> None:
    missing = f"no_such_config_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ImproperlyConfigured, match=missing):
        app.config_from_object(missing)
    app.config_from_object(missing, silent=True)  # silent: no error
    assert app.conf.task_default_queue == "celery"


# --------------------------------------------------------------------------- validation

INVALID: list[tuple[str, Any]] = [
    ("result_expires", "one day"),
    ("result_expires", -1),
    ("broker_connection_timeout", True),
    ("task_acks_late", "maybe"),
    ("task_track_started", [True]),
    ("worker_concurrency", -2),
    ("worker_concurrency", 2.5),
    ("worker_prefetch_multiplier", "4"),
    ("task_default_priority", 10),
    ("task_default_queue", 42),
    ("key_prefix", b"bytes"),
    ("task_serializer", "yaml"),
    ("result_serializer", "xml"),
    ("task_serializer", ["json"]),
    ("accept_content", ["json", "yaml"]),
    ("accept_content", 5),
    ("broker_url", "amqp://guest@localhost//"),
    ("broker_url", "localhost:6379"),
    ("result_backend", "db+sqlite:///results.db"),
    ("broker_url", 6379),
]


@pytest.mark.parametrize(("name", "value"), INVALID, ids=[f"{n}={v!r}" for n, v in INVALID])
def test_invalid_value_raises_improperly_configured_naming_the_setting(
    app: Celery, name: str, value: Any
) -> None:
    before = app.conf[name]
    with pytest.raises(ImproperlyConfigured, match=name):
        app.conf.update({name: value})
    assert app.conf[name] == before  # the bad value was not kept


@pytest.mark.parametrize(
    ("name", "value"),
    [("task_serializer", "yaml"), ("broker_url", "amqp://localhost"), ("result_expires", "x")],
)
def test_invalid_value_is_refused_by_attribute_set_and_constructor(
    make_app: Callable[..., Celery], name: str, value: Any
) -> None:
    app = make_app()
    with pytest.raises(ImproperlyConfigured, match=name):
        setattr(app.conf, name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        Celery("bad", set_as_current=False, **{name: value})


def test_constructor_rejects_a_bad_broker_scheme() -> None:
    with pytest.raises(ImproperlyConfigured, match="broker_url"):
        Celery("bad", broker="amqp://guest@localhost//", set_as_current=False)
    with pytest.raises(ImproperlyConfigured, match="result_backend"):
        Celery("bad", backend="rpc://", set_as_current=False)


def test_improperly_configured_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Settings(task_serializer="yaml")


# --------------------------------------------------------------------------- unknown names


def test_unknown_setting_warns_and_is_kept(app: Celery) -> None:
    with pytest.warns(UserWarning, match="task_defualt_queue"):
        app.conf.update(task_defualt_queue="typo")
    assert app.conf["task_defualt_queue"] == "typo"
    assert app.conf.task_default_queue == "celery"


def test_unknown_setting_warns_from_constructor_and_attribute(
    make_app: Callable[..., Celery],
) -> None:
    with pytest.warns(UserWarning, match="reslt_backend"):
        make_app(reslt_backend="memory://typo")
    app = make_app()
    with pytest.warns(UserWarning, match="my_own_setting"):
        app.conf.my_own_setting = 1
    assert app.conf.my_own_setting == 1


def test_unknown_setting_in_config_module_warns(app: Celery) -> None:
    class Config:
        task_default_queue = "fine"
        worker_concurency = 4

    with pytest.warns(UserWarning, match="worker_concurency"):
        app.config_from_object(Config)
    assert app.conf.task_default_queue == "fine"


def test_known_settings_do_not_warn(app: Celery) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.conf.update(task_default_queue="q", result_expires=1, task_routes={"a": "b"})


def test_attribute_reads_follow_every_change() -> None:
    conf = Settings()
    conf.update(task_default_queue="fast")
    assert conf.task_default_queue == "fast"
    conf.task_default_queue = "slow"
    assert conf.task_default_queue == conf["task_default_queue"] == "slow"
    del conf["task_default_queue"]
    assert conf.task_default_queue == "celery"
    with pytest.warns(UserWarning):
        conf["my_own_setting"] = 1
    assert conf.my_own_setting == 1
    del conf["my_own_setting"]
    with pytest.raises(AttributeError):
        conf.my_own_setting  # noqa: B018


def test_a_setting_named_like_a_method_leaves_the_method_alone() -> None:
    conf = Settings()
    with pytest.warns(UserWarning):
        conf["update"] = "mine"
    assert conf["update"] == "mine"
    conf.update(task_default_queue="q")  # still the mapping's method
    assert conf.task_default_queue == "q"


def test_timezone_may_be_a_tzinfo_object_as_in_celery(make_app: Any) -> None:
    """Celery takes ``timezone = ZoneInfo('...')`` as well as a zone's name."""
    from zoneinfo import ZoneInfo

    from minicelery.schedules import crontab

    zone = ZoneInfo("America/Havana")
    app = make_app(timezone=zone)
    assert app.timezone is zone
    assert app.now().tzinfo is zone
    schedule = crontab(minute=0, hour=0, app=app)
    assert schedule.tz is zone


def test_broker_pool_acquire_timeout_is_celerys_setting() -> None:
    """Celery's ``broker_pool_acquire_timeout`` (None: wait as long as it takes) is known and
    validated; connections are opened as needed here, so no client ever waits on it."""
    settings = Settings()
    assert settings.broker_pool_acquire_timeout is None
    settings.broker_pool_acquire_timeout = 30
    assert settings["broker_pool_acquire_timeout"] == 30
    with pytest.raises(ImproperlyConfigured, match="broker_pool_acquire_timeout"):
        settings.broker_pool_acquire_timeout = -1


def test_table_lists_the_settings_given_with_secrets_hidden() -> None:
    settings = Settings(result_backend="redis://:s3cret@localhost:6379/0")
    settings.update({"MY_TOKEN": "abc", "accept_content": ["json"]})
    table = settings.table()
    assert table == {
        "result_backend": "redis://:********@localhost:6379/0",
        "MY_TOKEN": "********",
        "accept_content": ["json"],  # given, though equal to the default
    }
    assert settings.table(censored=False)["MY_TOKEN"] == "abc"
    assert settings.table(with_defaults=True)["result_expires"] == 86400
    assert "MY_TOKEN: '********'" in settings.humanize()
    del settings["accept_content"]
    assert "accept_content" not in settings.table()


def test_deprecated_settings_are_the_old_names_given() -> None:
    settings = Settings()
    settings.update({"CELERY_ALWAYS_EAGER": True, "BROKER_URL": "memory://"})
    assert settings.deprecated_settings == {"CELERY_ALWAYS_EAGER", "BROKER_URL"}


def test_worker_concurrency_takes_auto_or_a_number() -> None:
    settings = Settings(worker_concurrency="AUTO")
    assert settings.worker_concurrency == "auto"
    settings.worker_concurrency = "4"
    assert settings.worker_concurrency == 4
    with pytest.raises(ImproperlyConfigured, match="worker_concurrency"):
        settings.worker_concurrency = "many"
