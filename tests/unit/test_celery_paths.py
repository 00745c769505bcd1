"""The names Celery's own integration suite imports, at Celery's module paths."""

from __future__ import annotations

import pickle

import pytest

from minicelery import Celery


def test_uuid_and_task_context_at_celery_paths() -> None:
    from minicelery import uuid
    from minicelery.app import Celery as AppCelery
    from minicelery.app.task import Context, Task

    assert AppCelery is Celery
    assert len(uuid()) == 36 and uuid() != uuid()
    request = Context(id="abc", group="g")
    assert (request.id, request.group) == ("abc", "g")
    assert Task.__name__ == "Task"


def test_key_value_store_backend_matches_redis_not_disabled() -> None:
    from minicelery.backend import RedisBackend
    from minicelery.backend.base import DisabledBackend
    from minicelery.backends.base import BaseKeyValueStoreBackend, states
    from minicelery.backends.redis import RedisBackend as AtCeleryPath

    assert AtCeleryPath is RedisBackend and states.SUCCESS == "SUCCESS"
    assert issubclass(RedisBackend, BaseKeyValueStoreBackend)
    assert not isinstance(DisabledBackend(), BaseKeyValueStoreBackend)


def test_ensure_chords_allowed(app: Celery) -> None:
    app.backend.ensure_chords_allowed()  # a real backend allows chords
    no_results = Celery("nores", broker="memory://", set_as_current=False)
    with pytest.raises(NotImplementedError, match="result_backend"):
        no_results.backend.ensure_chords_allowed()


def test_backend_store_error_and_unpickleable_wrapper() -> None:
    from minicelery.exceptions import BackendError, BackendStoreError, MiniceleryError
    from minicelery.utils.serialization import UnpickleableExceptionWrapper

    err = BackendStoreError("too big", state="SUCCESS", task_id="t1")
    assert isinstance(err, BackendError) and isinstance(err, MiniceleryError)
    assert "state:SUCCESS task_id:t1" in repr(err)
    wrapper = UnpickleableExceptionWrapper.from_exception(KeyError("foo"))
    assert (wrapper.exc_module, wrapper.exc_cls_name, wrapper.exc_args) == (
        "builtins",
        "KeyError",
        ("foo",),
    )
    again = pickle.loads(pickle.dumps(wrapper))
    assert again.exc_cls_name == "KeyError" and again.exc_args == ("foo",)


def test_amqp_queues_lists_default_and_routed_queues(app: Celery) -> None:
    assert set(app.amqp.queues) == {"celery"}

    @app.task
    def noop() -> None: ...

    noop.apply_async(queue="other")
    assert set(app.amqp.queues) == {"celery", "other"}
    assert app.amqp.queues["other"].routing_key == "other"


def test_an_exception_that_cannot_be_rebuilt_is_an_unpickleable_wrapper() -> None:
    from minicelery.exceptions import RemoteTaskError
    from minicelery.serialization import exception_from_dict
    from minicelery.utils.serialization import UnpickleableExceptionWrapper

    class NeedsTwo(Exception):
        def __init__(self, foo: str, bar: str | None = None) -> None:
            if bar is None:
                raise TypeError("bar must be provided")
            super().__init__(foo)

    data = {"exc_type": "NeedsTwo", "exc_module": __name__, "exc_message": ["foo"]}
    globals()["NeedsTwo"] = NeedsTwo
    try:
        exc = exception_from_dict(data)
    finally:
        del globals()["NeedsTwo"]
    assert isinstance(exc, UnpickleableExceptionWrapper) and isinstance(exc, RemoteTaskError)
    assert (exc.exc_cls_name, exc.exc_args, str(exc)) == ("NeedsTwo", ("foo",), "foo")
    assert type(exc).__name__ == "NeedsTwo"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:p,ass@word@localhost:6379/0", "redis://:********@localhost:6379/0"),
        ("redis://user:p,a@ss@localhost:6379/0", "redis://user:********@localhost:6379/0"),
        (
            "sentinel://:secret1@h1:26379;sentinel://:secret2@h2:26379/0",
            "sentinel://:********@h1:26379;sentinel://:********@h2:26379/0",
        ),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user@localhost/0", "redis://user@localhost/0"),
    ],
)
def test_bugreport_masks_url_passwords(app: Celery, url: str, shown: str) -> None:
    from minicelery.app.report import mask_url

    assert mask_url(url) == shown
    app.conf.broker_url = "redis://:p,ass@word@localhost:6379/0"
    app.conf["MY_API_KEY"] = "abc123"
    report = app.bugreport()
    assert "software -> celery:minicelery-" in report
    assert "p,ass@word" not in report and "abc123" not in report
    assert "redis://:********@localhost:6379/0" in report
