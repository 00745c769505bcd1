"""Handles on task results: ``AsyncResult``, ``EagerResult``, ``GroupResult``."""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic

from . import states
from ._state import current_request, get_current_app
from .exceptions import TaskRevokedError
from .serialization import exception_from_dict

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from .app import Celery

    #: What the task returns: ``aget()``'s type. Any when not said (a bare ``AsyncResult``).
    R = TypeVar("R", default=Any)
else:
    from typing import TypeVar

    R = TypeVar("R")

OnMessage = Callable[[dict[str, Any]], None]


def _assert_will_not_block() -> None:
    if current_request() is not None and not getattr(current_request(), "is_eager", False):
        raise RuntimeError(
            "Never call result.get() within a task! See "
            "https://docs.celeryq.dev/en/latest/userguide/tasks.html#avoid-launching-synchronous-subtasks"
        )


def _decode_result(meta: dict[str, Any]) -> Any:
    if meta.get("status") in states.EXCEPTION_STATES:
        return exception_from_dict(meta.get("result"))
    return meta.get("result")


def _failed(meta: dict[str, Any]) -> bool:
    return meta.get("status") in states.PROPAGATE_STATES


def _raise_for(meta: dict[str, Any], task_id: str) -> None:
    status = meta.get("status")
    if status == states.REVOKED:
        raise TaskRevokedError(_revoked_reason(meta, task_id))
    if status == states.FAILURE:
        exc = exception_from_dict(meta.get("result"))
        remote_tb = meta.get("traceback")
        if remote_tb:
            exc.__notes__ = [f"Remote traceback:\n{remote_tb}"]  # type: ignore[attr-defined]
        raise exc


def _revoked_reason(meta: dict[str, Any], task_id: str) -> str:
    result = meta.get("result")
    if isinstance(result, dict) and result.get("exc_message"):
        message = result["exc_message"]
        return str(message[0] if isinstance(message, list) and message else message)
    return f"Task {task_id} was revoked"


def _stored(field: str) -> Any:
    """A read-only property for one field of the stored result record."""
    return property(lambda self: self._meta().get(field), doc=f"The stored ``{field}``.")


class ResultBase:
    """What every result handle shares."""

    parent: ResultBase | None = None

    def as_tuple(self) -> Any:
        raise NotImplementedError

    @property
    def children(self) -> list[Any]:
        return []

    def ready(self) -> bool:
        raise NotImplementedError

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _raise_if_failed(self) -> None:
        """Raise the first failure among this result and its parents (``follow_parents``)."""

    def collect(self, intermediate: bool = False, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        """Yield ``(result, value)`` for this result and, breadth first, every result it
        led to (its children: tasks it sent, members of a group), waiting for each."""
        queue: collections.deque[ResultBase] = collections.deque([self])
        while queue:
            node = queue.popleft()
            yield node, node.get(**kwargs)
            queue.extend(node.children or ())


class AsyncResult(ResultBase, Generic[R]):
    """The state and return value of a task sent to a worker.

    ``get()`` blocks on a Redis pub/sub notification, never on a sleep loop.
    """

    #: Sent with ``ignore_result``: no result will come, so ``get()`` returns None at once.
    ignored: bool = False

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: Celery | None = None,
        parent: ResultBase | None = None,
    ) -> None:
        self.id = str(id)
        self.app = app or get_current_app()
        self._backend = backend
        self._name = task_name
        self.parent = parent
        self._cache: dict[str, Any] | None = None

    @property
    def task_id(self) -> str:
        return self.id

    @property
    def backend(self) -> Any:
        return self._backend or self.app.backend

    def _meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_meta(self.id)
        if meta.get("status") in states.READY_STATES:
            self._cache = meta
        return meta  # type: ignore[no-any-return]

    @property
    def state(self) -> str:
        return str(self._meta().get("status"))

    status = state

    @property
    def result(self) -> Any:
        return _decode_result(self._meta())

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta().get("traceback")

    @property
    def date_done(self) -> dt.datetime | None:
        value = self._meta().get("date_done")
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else value

    @property
    def children(self) -> list[Any]:
        return [result_from_tuple(child, self.app) for child in self._meta().get("children") or []]

    @property
    def name(self) -> str | None:
        """The task's name: as given, else as stored with ``result_extended``."""
        return self._name or self._meta().get("name")

    # Stored with the result when ``result_extended`` is on.
    args = _stored("args")
    kwargs = _stored("kwargs")
    worker = _stored("worker")
    queue = _stored("queue")
    retries = _stored("retries")

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        disable_sync_subtasks: bool = True,
        on_message: OnMessage | None = None,
        on_interval: Callable[[], None] | None = None,
    ) -> Any:
        """Wait for the task to finish and return its result (or raise its exception).

        ``interval`` and ``no_ack`` are accepted for Celery compatibility; waiting is
        notification-driven so they have nothing to tune.
        """
        if self.ignored:
            return None
        if disable_sync_subtasks:
            _assert_will_not_block()
        if follow_parents and propagate and self.parent is not None:
            self.parent._raise_if_failed()
        meta = self._cache or self.backend.wait_for(self.id, timeout, on_message)
        self._cache = meta
        if propagate:
            if follow_parents and self.parent is not None and _failed(meta):
                # A parent that failed while we waited is the cause: raise its error, as
                # Celery does (a chord whose header failed raises the header task's error).
                self.parent._raise_if_failed()
            _raise_for(meta, self.id)
        return _decode_result(meta)

    wait = get

    async def aget(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        follow_parents: bool = True,
        on_message: OnMessage | None = None,
    ) -> R:
        """:meth:`get` for asyncio code: the same value, states and exceptions, awaited
        without blocking the event loop (``await result`` is the same with the defaults)."""
        if self.ignored:
            return None  # type: ignore[return-value]  # as get(): no result will come
        meta = self._cache or await self.app.aio.wait_for(self.id, timeout, on_message)
        self._cache = meta
        if propagate:
            if follow_parents and self.parent is not None and _failed(meta):
                await self.app.aio.raise_if_parents_failed(self)
            _raise_for(meta, self.id)
        return _decode_result(meta)  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, R]:
        return self.aget().__await__()

    def aiter_states(self, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """:meth:`iter_states` for asyncio code: ``async for meta in result.aiter_states()``
        gets each stored record (PROGRESS and other custom states too) as it is written."""
        return self.app.aio.iter_states(self.id, timeout)

    def _raise_if_failed(self) -> None:
        if self.parent is not None:
            self.parent._raise_if_failed()
        meta = self._meta()
        if meta.get("status") in states.PROPAGATE_STATES:
            _raise_for(meta, self.id)

    def iter_states(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield each stored state record as the worker writes it, ending with a ready one
        (``timeout`` is for the whole iteration)."""
        for meta, stored in self.backend.iter_meta(self.id, timeout):
            if stored:
                yield meta

    def forget(self) -> None:
        self._cache = None
        self.backend.forget(self.id)

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)

    def revoke_by_stamped_headers(
        self,
        headers: dict[str, Any],
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Have workers skip (``terminate``: also stop) the tasks stamped with ``headers``."""
        self.app.control.revoke_by_stamped_headers(
            headers, terminate=terminate, signal=signal, reply=wait, timeout=timeout or 1.0
        )

    def as_tuple(self) -> Any:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], None]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id


class EagerResult(AsyncResult):
    """The result of a task run in this process by ``apply()`` or ``task_always_eager``."""

    def __init__(
        self,
        id: str,
        ret_value: Any,
        state: str,
        traceback: str | None = None,
        name: str | None = None,
        app: Celery | None = None,
    ) -> None:
        super().__init__(id, task_name=name, app=app)
        self._value = ret_value
        self._state = state
        self._traceback = traceback

    def _meta(self) -> dict[str, Any]:
        return {
            "status": self._state,
            "result": self._value,
            "traceback": self._traceback,
            "children": [],
            "task_id": self.id,
        }

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def state(self) -> str:
        return self._state

    status = state

    def get(
        self, timeout: float | None = None, propagate: bool = True, *args: Any, **kwargs: Any
    ) -> Any:
        if propagate:
            if self._state == states.FAILURE and isinstance(self._value, BaseException):
                raise self._value
            if self._state == states.REVOKED:
                raise TaskRevokedError(f"Task {self.id} was revoked")
        return self._value

    wait = get

    async def aget(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        follow_parents: bool = True,
        on_message: OnMessage | None = None,
    ) -> Any:
        """The value, at once: it was computed here."""
        return self.get(timeout, propagate)

    def forget(self) -> None:
        pass

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        self._state = states.REVOKED


# Result sets live in their own module; they are part of this one's public API.
from .result_set import GroupResult, ResultSet, result_from_tuple  # noqa: E402

__all__ = [
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "ResultBase",
    "ResultSet",
    "result_from_tuple",
]
