"""The shortest end-to-end path: a prefork worker runs tasks and results come back."""

from __future__ import annotations

import pytest

from minicelery import Celery, states
from tests.helpers import WorkerFactory
from tests.integration.apps.basic import add, fail


def test_delay_get_roundtrip(app: Celery, worker_factory: WorkerFactory) -> None:
    worker = worker_factory(concurrency=2)
    result = add.delay(2, 3)
    assert result.get(timeout=10) == 5
    assert result.state == states.SUCCESS
    assert result.date_done is not None
    worker.wait_for_line(f"Task tests.integration.apps.basic.add[{result.id}] succeeded in")


def test_failure_reraised_with_original_type(app: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(concurrency=1)
    result = fail.delay("nope")
    with pytest.raises(ValueError, match="nope"):
        result.get(timeout=10)
    assert result.state == states.FAILURE
    assert "ValueError: nope" in (result.traceback or "")
