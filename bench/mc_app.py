"""minicelery application used by the benchmark (``python -m minicelery -A bench.mc_app``)."""

from __future__ import annotations

import logging
import os
from typing import Any

from bench.probe import record_done, redis_url
from minicelery import Celery
from minicelery.signals import after_setup_logger, task_received

URL = redis_url()

app = Celery("bench", broker=URL, backend=URL)
# The A/B drain's switch for the children that consume by themselves (one worker setting).
app.conf.worker_children_consume = os.environ.get("MC_CHILDREN_CONSUME", "1") == "1"


def _heard(**_: Any) -> None:
    """A no-op ``task_received`` receiver (``MC_TASK_RECEIVED=1``): what one costs, e.g. the
    main process's turn for each task in the children-consume mode."""


if os.environ.get("MC_TASK_RECEIVED") == "1":
    task_received.connect(_heard)

# Per-task INFO records ("Task ... received/succeeded") are silenced so that a
# worker started with ``-l info`` (needed for its "ready." line) does the same
# logging work as one started with ``-l warning``; same as ``bench.celery_app``.
_PER_TASK_LOGGERS = ("minicelery.worker.job",)


@after_setup_logger.connect
def _quiet_per_task_logging(**_: Any) -> None:
    for name in _PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@app.task
def noop() -> None:
    return None


@app.task
def count(target: int) -> None:
    record_done(target)


@app.task
def one() -> int:
    """A chord header task of the canvas workload: no work, a result to add up."""
    return 1


@app.task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
async def sleep_async(seconds: float, target: int) -> None:
    """The async workload (bench.async_tasks): awaited on the child's event loop."""
    import asyncio  # not at module level: a worker that runs no async task never loads it

    await asyncio.sleep(seconds)
    record_done(target)
