"""The one exception tree of minicelery; names mirror ``celery.exceptions``.

::

    MiniceleryError
    ├── ImproperlyConfigured (also ValueError)
    ├── NotRegistered (also KeyError)
    ├── SerializationError
    │   ├── ContentDisallowed
    │   └── EncodeError (a value, such as a task's return value, that cannot be encoded)
    ├── TimeoutError (also builtin TimeoutError)
    ├── TaskError
    │   ├── TaskRevokedError
    │   ├── ChordError
    │   ├── WorkerLostError
    │   ├── TimeLimitExceeded
    │   ├── MaxRetriesExceededError
    │   └── RemoteTaskError (a failure whose exception type is not importable here)
    ├── Retry
    ├── Reject
    ├── OperationalError (broker / backend unreachable)
    └── MessageError (a message that cannot be decoded or run)
    SoftTimeLimitExceeded (subclasses only Exception, so ``except MiniceleryError`` in
    task code does not swallow it by accident)
"""

from __future__ import annotations

import builtins
from typing import Any


class MiniceleryError(Exception):
    """Base class of every error minicelery raises."""


class ImproperlyConfigured(MiniceleryError, ValueError):
    """A setting has an invalid value or the app cannot be built from it."""


class NotRegistered(MiniceleryError, KeyError):
    """No task of that name is registered."""

    def __str__(self) -> str:
        return f"Task of name {self.args[0]!r} is not registered" if self.args else "NotRegistered"


class SerializationError(MiniceleryError):
    """A value could not be encoded or decoded."""


class ContentDisallowed(SerializationError):
    """A message uses a content type that is not in ``accept_content``."""


class EncodeError(SerializationError):
    """A value could not be encoded with the serializer in use (Celery's, from kombu): a
    task whose return value cannot be encoded ends FAILURE with this error."""


class TimeoutError(MiniceleryError, builtins.TimeoutError):
    """An operation such as ``AsyncResult.get()`` did not finish in time."""


class TaskError(MiniceleryError):
    """Base of errors about a task's execution."""


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) and will not run."""


class ChordError(TaskError):
    """A chord's header task failed, so its body cannot run."""


class WorkerLostError(TaskError):
    """The process running the task exited before the task finished."""


class TimeLimitExceeded(TaskError):
    """The task's hard time limit was reached and its process was killed."""


class MaxRetriesExceededError(TaskError):
    """The task asked to be retried more than ``max_retries`` times."""

    def __init__(self, *args: Any, task_args: Any = None, task_kwargs: Any = None) -> None:
        super().__init__(*args)
        self.task_args = task_args
        self.task_kwargs = task_kwargs


class RemoteTaskError(TaskError):
    """Stand-in for a task exception whose type cannot be imported by the caller."""


class Retry(MiniceleryError):
    """Raised by ``Task.retry()`` to tell the worker the task is being retried."""

    def __init__(
        self, message: str | None = None, exc: BaseException | None = None, when: Any = None
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.eager_result: Any = None  # the retried run's result, in eager mode
        super().__init__(message or (f"Retry in {when}s" if when is not None else "Retry"))


class Reject(MiniceleryError):
    """Raised by a task to reject its message, optionally requeueing it."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class OperationalError(MiniceleryError):
    """The broker or result backend could not be reached after retries."""


class MessageError(MiniceleryError):
    """A broker message could not be decoded, validated or routed to a task."""


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task when its soft time limit is reached; the task may clean up."""


__all__ = [
    "ChordError",
    "ContentDisallowed",
    "EncodeError",
    "ImproperlyConfigured",
    "MaxRetriesExceededError",
    "MessageError",
    "MiniceleryError",
    "NotRegistered",
    "OperationalError",
    "Reject",
    "RemoteTaskError",
    "Retry",
    "SerializationError",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
