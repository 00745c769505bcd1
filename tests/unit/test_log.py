"""Task loggers: records carry the running task's name and id, formatted as Celery's
worker does (``[time: LEVEL/Process] proj.add[<id>]: message``)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import Celery, Task
from minicelery.message import decode_message
from minicelery.utils.log import TASK_FORMAT, WORKER_FORMAT, WorkerFormatter, get_task_logger
from minicelery.worker.executor import execute_message
from tests.unit.conftest import ACCEPT_JSON, unique


@pytest.fixture
def task_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A task logger writing through WorkerFormatter into a buffer."""
    logger = get_task_logger(unique("proj.tasks"))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(WorkerFormatter())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_in_worker(app: Celery, task: Task[Any, Any], *args: Any) -> str:
    message, queue, _ = app.prepare_message(task.name, list(args), {}, task)
    wire = decode_message(message.encode())
    outcome = execute_message(app, wire, "w1@host", queue, ACCEPT_JSON)
    assert outcome.exc is None, outcome.traceback
    return wire.id


def test_task_log_line_carries_task_name_and_id(
    app: Celery, task_logger: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = task_logger

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        logger.warning("Adding %s + %s", x, y)
        return x + y

    task_id = run_in_worker(app, add, 2, 3)
    line = stream.getvalue().strip()
    pattern = rf"\[[^\]]+: WARNING/MainProcess\] proj\.add\[{re.escape(task_id)}\]: Adding 2 \+ 3"
    assert re.fullmatch(pattern, line), line


def test_task_log_records_have_task_fields(
    app: Celery,
    task_logger: tuple[logging.Logger, io.StringIO],
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger, _ = task_logger

    @app.task(name="proj.mul")
    def mul(x: int, y: int) -> int:
        logger.info("multiplying")
        return x * y

    with caplog.at_level(logging.INFO):
        task_id = run_in_worker(app, mul, 2, 3)
    (record,) = [r for r in caplog.records if r.getMessage() == "multiplying"]
    assert getattr(record, "task_name", None) == "proj.mul"
    assert getattr(record, "task_id", None) == task_id


def test_eager_task_log_carries_the_eager_id(
    app: Celery, task_logger: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = task_logger

    @app.task(name="proj.eager")
    def eager() -> None:
        logger.error("inside")

    eager.apply(task_id="eager-id")
    assert "proj.eager[eager-id]: inside" in stream.getvalue()


def test_outside_a_task_fields_are_placeholders(
    task_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = task_logger
    logger.warning("no task here")
    assert stream.getvalue().strip().endswith("???[???]: no task here")


def test_task_fields_do_not_leak_after_the_task(
    app: Celery, task_logger: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = task_logger

    @app.task(name="proj.short")
    def short() -> None:
        logger.warning("during")

    run_in_worker(app, short)
    logger.warning("after")
    lines = stream.getvalue().strip().splitlines()
    assert "proj.short[" in lines[0]
    assert lines[1].endswith("???[???]: after")


def test_worker_formatter_plain_records_use_the_worker_format() -> None:
    record = logging.LogRecord("some.module", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    text = WorkerFormatter().format(record)
    assert re.fullmatch(r"\[[^\]]+: INFO/MainProcess\] hello you", text), text
    assert "%(task_name)s[%(task_id)s]" in TASK_FORMAT
    assert WORKER_FORMAT.startswith("[%(asctime)s: %(levelname)s/%(processName)s]")


@pytest.mark.parametrize("name", ["minicelery.task", "celery.task"])
def test_reserved_logger_names(name: str) -> None:
    with pytest.raises(RuntimeError):
        get_task_logger(name)


def test_get_task_logger_is_idempotent() -> None:
    name = unique("proj.same")
    first, second = get_task_logger(name), get_task_logger(name)
    assert first is second
    assert len(first.filters) == 1
