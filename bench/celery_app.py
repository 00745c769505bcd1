"""Celery 5 application used by the benchmark (``python -m celery -A bench.celery_app``)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery  # type: ignore[import-untyped,unused-ignore]
from celery.signals import after_setup_logger  # type: ignore[import-untyped,unused-ignore]

from bench.probe import record_done, redis_url

URL = redis_url()

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True)

# Per-task INFO records ("Task ... received/succeeded") are silenced so that a
# worker started with ``-l info`` (needed for its "ready." line) does the same
# logging work as one started with ``-l warning``.
_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.worker.request")


@after_setup_logger.connect  # type: ignore[untyped-decorator,unused-ignore]
def _quiet_per_task_logging(**_: Any) -> None:
    for name in _PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@app.task  # type: ignore[untyped-decorator,unused-ignore]
def noop() -> None:
    return None


@app.task  # type: ignore[untyped-decorator,unused-ignore]
def count(target: int) -> None:
    record_done(target)


@app.task  # type: ignore[untyped-decorator,unused-ignore]
def one() -> int:
    """A chord header task of the canvas workload: no work, a result to add up."""
    return 1


@app.task  # type: ignore[untyped-decorator,unused-ignore]
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task  # type: ignore[untyped-decorator,unused-ignore]
def sleep_async(seconds: float, target: int) -> None:
    """The async workload (bench.async_tasks): Celery runs no coroutines, so a Celery user
    wraps the awaiting code in ``asyncio.run()``, one event loop per call."""
    import asyncio

    asyncio.run(asyncio.sleep(seconds))
    record_done(target)
