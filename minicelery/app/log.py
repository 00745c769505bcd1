"""``app.log``: Celery's logging set-up on the application (``celery.app.log.Logging``), for
programs that configure logging as a worker does without starting one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..utils.log import WORKER_FORMAT, get_logger, setup_logging
from ..utils.nodenames import node_format

if TYPE_CHECKING:
    from .base import Celery


class Logging:
    """Sets up the root logger (a file or stderr, the worker's format) once per process."""

    #: Whether logging was set up in this process (by any app), as Celery keeps it.
    _setup = False

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.loglevel: int | str = logging.WARNING
        self.format = WORKER_FORMAT
        self.colorize = app.conf.worker_log_color

    @property
    def already_setup(self) -> bool:
        return type(self)._setup

    @already_setup.setter
    def already_setup(self, was_setup: bool) -> None:
        type(self)._setup = was_setup

    def setup(
        self,
        loglevel: int | str | None = None,
        logfile: str | None = None,
        redirect_stdouts: bool = False,
        redirect_level: str = "WARNING",
        colorize: bool | None = None,
        hostname: str | None = None,
    ) -> None:
        """Set logging up as a worker does (stdout redirection is the worker's own)."""
        self.setup_logging_subsystem(loglevel, logfile, colorize=colorize, hostname=hostname)

    def setup_logging_subsystem(
        self,
        loglevel: int | str | None = None,
        logfile: str | None = None,
        format: str | None = None,
        colorize: bool | None = None,
        hostname: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Log at ``loglevel`` to ``logfile`` (stderr without one), once per process. With
        ``hostname`` (a node name) the file name expands ``%n``, ``%h``, ``%i``... and
        ``%%`` as a worker's ``--logfile`` does."""
        if self.already_setup:
            return
        if logfile and hostname:
            logfile = node_format(logfile, hostname)
        self.already_setup = True
        level = loglevel or self.loglevel
        setup_logging(level, logfile, hijack_root=self.app.conf.worker_hijack_root_logger)

    def get_default_logger(self, name: str = "celery", **kwargs: Any) -> logging.Logger:
        return get_logger(name)


__all__ = ["Logging"]
