"""A task whose return value cannot be encoded ends FAILURE with ``EncodeError`` and its
traceback, as in Celery, and the worker goes on running tasks, in every pool."""

from __future__ import annotations

import pytest

from minicelery import Celery, states
from minicelery.exceptions import EncodeError
from tests.helpers import WorkerFactory
from tests.integration.apps.basic import add, unencodable


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_unencodable_result_fails_with_encode_error_and_the_worker_lives(
    app: Celery, worker_factory: WorkerFactory, pool: str
) -> None:
    worker = worker_factory(concurrency=1, pool=pool)
    for _ in range(3):  # a thread or process lost per bad task would show by the third
        bad = unencodable.delay()
        with pytest.raises(EncodeError):
            bad.get(timeout=10)
        assert bad.state == states.FAILURE
        assert "EncodeError" in (bad.traceback or "")
        assert add.delay(1, 2).get(timeout=10) == 3
    assert worker.is_alive()
    assert "exited with" not in worker.output()  # no child died on the way
