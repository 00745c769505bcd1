"""``ResultSet`` and ``GroupResult``: many results waited on together (a group's), and
``result_from_tuple``. Public through :mod:`minicelery.result`; import them from there."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import states
from ._state import get_current_app
from .exceptions import TimeoutError
from .result import AsyncResult, OnMessage, ResultBase, _assert_will_not_block

if TYPE_CHECKING:
    from .app import Celery


BULK = 1000  # members read per round trip while joining


class ResultSet(ResultBase):
    """A set of results, waited on together; ``get()`` gives their values in order."""

    def __init__(self, results: Sequence[ResultBase], app: Celery | None = None) -> None:
        self.results: list[Any] = list(results)
        self.app = app or get_current_app()

    @property
    def backend(self) -> Any:
        """The result backend the members are read from (the app's)."""
        return self.app.backend

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def add(self, result: ResultBase) -> None:
        if result not in self.results:
            self.results.append(result)

    def discard(self, result: ResultBase) -> None:
        if result in self.results:
            self.results.remove(result)

    def _fetch(self, start: int = 0, stop: int | None = None) -> None:
        """Read the records of members (``start:stop``) not known to be ready, in bulk (a
        few MGETs for ten thousand tasks instead of one round trip each)."""
        members = self.results[start:stop]
        stale = [r for r in members if type(r) is AsyncResult and r._cache is None]
        if not stale:
            return
        metas = self.app.backend.get_many([r.id for r in stale])
        for result, meta in zip(stale, metas, strict=True):
            if meta.get("status") in states.READY_STATES:
                result._cache = meta
        for r in members:
            if isinstance(r, ResultSet):
                r._fetch()

    def ready(self) -> bool:
        self._fetch()
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        self._fetch()
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        self._fetch()
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        self._fetch()
        return any(not r.ready() for r in self.results)

    def completed_count(self) -> int:
        """How many members succeeded."""
        self._fetch()
        return sum(1 for r in self.results if r.successful())

    def _raise_if_failed(self) -> None:
        if self.parent is not None:
            self.parent._raise_if_failed()
        self._fetch()
        for r in self.results:
            r._raise_if_failed()

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke every member (one control command for all of them)."""
        self.app.control.revoke(
            [r.id for r in self.results], terminate=terminate, signal=signal
        )

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], None] | None = None,
        no_ack: bool = True,
        on_message: OnMessage | None = None,
        disable_sync_subtasks: bool = True,
        on_interval: Callable[[], None] | None = None,
    ) -> list[Any]:
        """The results in call order (the first failure in that order is raised);
        ``timeout`` is for the whole set."""
        if disable_sync_subtasks:
            _assert_will_not_block()
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        # Members are read ahead in bulk; one still running is waited on alone, after
        # which the read-ahead starts small again (the next ones are likely running too).
        window, read_to = BULK, 0
        for index, r in enumerate(self.results):
            if index >= read_to:
                self._fetch(index, index + window)
                read_to, window = index + window, min(window * 2, BULK)
            if type(r) is AsyncResult and r._cache is None:
                read_to, window = index + 1, 16
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            # Out of time, a member that is ready still counts (``timeout=0`` collects what
            # is done): only one still to wait for times the join out.
            if remaining == 0 and not r.ready():
                raise TimeoutError("The operation timed out waiting for the result set")
            value = r.get(
                timeout=remaining,
                propagate=propagate,
                on_message=on_message,
                disable_sync_subtasks=False,
            )
            if callback is not None:
                callback(r.id, value)
            values.append(value)
        return values

    def get(self, timeout: float | None = None, propagate: bool = True, **kwargs: Any) -> Any:
        return self.join(timeout, propagate, **kwargs)

    join_native = join

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """:meth:`get` for asyncio code: every member awaited at once, over the one
        connection the app's asyncio client reads results with."""
        return await self.app.aio.join(self.results, timeout, propagate)

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.aget().__await__()

    def forget(self) -> None:
        for r in self.results:
            r.forget()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(str(r.id) for r in self.results)}]>"


class GroupResult(ResultSet):
    """The results of a group, with the group's id so it can be saved and restored."""

    def __init__(
        self,
        id: str | None = None,
        results: Sequence[ResultBase] = (),
        parent: ResultBase | None = None,
        app: Celery | None = None,
    ) -> None:
        super().__init__(results, app)
        self.id = id
        self.parent = parent

    @property
    def children(self) -> list[Any]:
        return self.results

    def save(self, backend: Any = None) -> GroupResult:
        """Store the group's ``as_tuple()`` so ``GroupResult.restore(id)`` finds it."""
        assert self.id is not None, "a group result needs an id to be saved"
        (backend or self.app.backend).save_group(self.id, self.as_tuple())
        return self

    def delete(self, backend: Any = None) -> None:
        assert self.id is not None, "a group result needs an id to be deleted"
        (backend or self.app.backend).delete_group(self.id)

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: Celery | None = None) -> GroupResult | None:
        app = app or get_current_app()
        value = (backend or app.backend).restore_group(id)
        if value is None:
            return None
        restored = result_from_tuple(value, app)
        return restored if isinstance(restored, GroupResult) else None

    def as_tuple(self) -> Any:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], [r.as_tuple() for r in self.results]]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(str(r.id) for r in self.results)}]>"


def result_from_tuple(value: Any, app: Celery | None = None) -> ResultBase:
    """Rebuild a result handle from ``as_tuple()`` output: ``[[id, parent], None]`` is an
    ``AsyncResult``, ``[[id, parent], [children...]]`` a ``GroupResult``."""
    app = app or get_current_app()
    (task_id, parent_tuple), nodes = value
    parent = result_from_tuple(parent_tuple, app) if parent_tuple else None
    if nodes is not None:
        children = [result_from_tuple(node, app) for node in nodes]
        return GroupResult(task_id, children, parent, app)
    return AsyncResult(task_id, app=app, parent=parent)
