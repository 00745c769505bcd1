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
    ├── Ignore (a task that ended without a state of its own: it was replaced)
    ├── OperationalError (broker / backend unreachable)
    ├── BackendError
    │   ├── BackendGetMetaError
    │   └── BackendStoreError
    ├── UnpickleableExceptionWrapper (a task's exception that cannot be rebuilt as itself)
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


class Ignore(MiniceleryError):
    """Raised by a task to end without a state of its own: the worker stores nothing for it
    and calls none of its callbacks (``Task.replace()`` raises it: the replacement carries
    the task's id, links and place in its workflow)."""


class OperationalError(MiniceleryError):
    """The broker or result backend could not be reached after retries."""


class MessageError(MiniceleryError):
    """A broker message could not be decoded, validated or routed to a task."""


class BackendError(MiniceleryError):
    """The result backend refused or failed an operation."""

    def __init__(self, *args: Any, state: str = "", task_id: str = "") -> None:
        super().__init__(*args)
        self.state = state
        self.task_id = task_id


class BackendGetMetaError(BackendError):
    """Reading a task's result record failed."""


class BackendStoreError(BackendError):
    """Writing a task's result record failed (e.g. the value is too large for the store)."""

    def __repr__(self) -> str:
        return f"{super().__repr__()} state:{self.state} task_id:{self.task_id}"


class UnpickleableExceptionWrapper(MiniceleryError):
    """Stands for an exception that cannot travel as itself: its module, class name and
    arguments, as in ``celery.utils.serialization``."""

    def __init__(
        self, exc_module: str, exc_cls_name: str, exc_args: Any, text: str | None = None
    ) -> None:
        self.exc_module = exc_module
        self.exc_cls_name = exc_cls_name
        self.exc_args = tuple(exc_args)
        self.text = text
        super().__init__(exc_module, exc_cls_name, self.exc_args, text)

    def __str__(self) -> str:
        return self.text or f"{self.exc_cls_name}{self.exc_args!r}"

    @classmethod
    def from_exception(cls, exc: BaseException) -> UnpickleableExceptionWrapper:
        """Wrap ``exc`` by name and arguments."""
        exc_type = type(exc)
        return cls(exc_type.__module__, exc_type.__qualname__, exc.args, str(exc))


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task when its soft time limit is reached; the task may clean up."""


__all__ = [
    "BackendError",
    "BackendGetMetaError",
    "BackendStoreError",
    "ChordError",
    "ContentDisallowed",
    "EncodeError",
    "Ignore",
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
    "UnpickleableExceptionWrapper",
    "WorkerLostError",
]
