"""Celery's in-process result backend URL, ``cache+memory://``, as test suites configure it:
here it is the ``memory://`` backend, in this process."""

from __future__ import annotations

import pytest

from minicelery import Celery
from minicelery.exceptions import ImproperlyConfigured


def test_cache_memory_backend_keeps_eager_results_in_process() -> None:
    app = Celery("cache-memory", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        result_backend="cache+memory://",
        task_always_eager=True,
        task_store_eager_result=True,
    )

    @app.task
    def double(x: int) -> int:
        return 2 * x

    result = double.delay(21)
    assert app.AsyncResult(result.id).get(timeout=5) == 42
    assert app.conf.result_backend == "cache+memory://"


def test_other_cache_backends_are_still_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="result_backend"):
        Celery("bad", backend="cache+memcached://127.0.0.1:11211/", set_as_current=False)


def test_connection_for_write_and_read_are_the_apps_connection() -> None:
    app = Celery("conns", broker="memory://", set_as_current=False)
    with app.connection_for_write() as writer, app.connection_for_read() as reader:
        assert writer is reader is app.broker
