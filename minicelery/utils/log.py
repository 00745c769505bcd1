"""Logging as Celery's worker does it: ``[time: LEVEL/ProcessName] message``, and task
loggers whose lines carry the task's name and id."""

from __future__ import annotations

import logging
import sys
from typing import Any

from .._state import current_request

WORKER_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
TASK_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
TASK_LOGGER_ROOT = "minicelery.task"


class _TaskContextFilter(logging.Filter):
    """Adds ``task_name`` and ``task_id`` of the running task to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        record.task_name = getattr(request, "task", None) or "???"
        record.task_id = getattr(request, "id", None) or "???"
        return True


class WorkerFormatter(logging.Formatter):
    """The worker format, switching to the task format for records from task loggers."""

    def __init__(self, fmt: str = WORKER_FORMAT, task_fmt: str = TASK_FORMAT) -> None:
        super().__init__(fmt)
        self._task = logging.Formatter(task_fmt)

    def format(self, record: logging.LogRecord) -> str:
        if hasattr(record, "task_id"):
            return self._task.format(record)
        return super().format(record)


_filter = _TaskContextFilter()


def get_task_logger(name: str) -> logging.Logger:
    """A logger for task modules; its records carry the running task's name and id."""
    if name in (TASK_LOGGER_ROOT, "celery.task"):
        raise RuntimeError(f"logger name {name!r} is reserved for the task logger root")
    logger = logging.getLogger(f"{TASK_LOGGER_ROOT}.{name}")
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def setup_logging(
    loglevel: int | str = logging.WARNING, logfile: str | None = None, hijack_root: bool = True
) -> None:
    """Configure the root logger for a worker or beat process (only the CLI calls this)."""
    from .. import signals

    level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
    responses = signals.setup_logging.send(
        sender=None, loglevel=level, logfile=logfile, format=WORKER_FORMAT, colorize=False
    )
    if any(response for _, response in responses):
        return  # a receiver configured logging itself, as Celery allows
    root = logging.getLogger()
    if hijack_root:
        for existing in list(root.handlers):
            root.removeHandler(existing)
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(WorkerFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    signals.after_setup_logger.send(
        sender=None,
        logger=root,
        loglevel=level,
        logfile=logfile,
        format=WORKER_FORMAT,
        colorize=False,
    )
    task_logger = logging.getLogger(TASK_LOGGER_ROOT)
    signals.after_setup_task_logger.send(
        sender=None,
        logger=task_logger,
        loglevel=level,
        logfile=logfile,
        format=TASK_FORMAT,
        colorize=False,
    )


def level_name(level: Any) -> str:
    return logging.getLevelName(level) if isinstance(level, int) else str(level).upper()


class LoggingProxy:
    """A write-only stream that logs each complete line, as Celery's ``LoggingProxy``:
    with ``worker_redirect_stdouts`` a task's ``print()`` ends up in the worker's log."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger = logger
        self.level = level
        self._pending = ""
        self._busy = False

    def write(self, text: str) -> int:
        if self._busy:  # a handler writing to this stream: drop, never loop
            return len(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        self._busy = True
        try:
            for line in lines:
                if line.strip():
                    self.logger.log(self.level, line.rstrip())
        finally:
            self._busy = False
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self.write(pending + "\n")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a logging proxy has no file descriptor")

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        self.flush()


def redirect_stdouts(level: int | str = logging.WARNING) -> None:
    """Send ``sys.stdout`` and ``sys.stderr`` to the ``minicelery.redirected`` logger at
    ``level`` (``worker_redirect_stdouts_level``), as Celery's worker does."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    logger = logging.getLogger("minicelery.redirected")
    sys.stdout = LoggingProxy(logger, int(numeric))
    sys.stderr = LoggingProxy(logger, int(numeric))
