"""Small helpers with Celery's module paths."""

from __future__ import annotations


class ExceptionInfo:
    """What failure hooks receive as ``einfo``: the exception, its type and the formatted
    traceback (``str(einfo)`` is the traceback, as with Celery's)."""

    def __init__(self, exception: BaseException, traceback: str | None) -> None:
        self.exception = exception
        self.type = type(exception)
        self.traceback = traceback or ""

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"
