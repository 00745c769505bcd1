"""Celery's result backend methods by their names (``store_result``, ``get_state``,
``mark_as_done``...), on every backend: code written against Celery's backend API reads and
writes the same records the worker does."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import states
from ..exceptions import TaskRevokedError
from ..serialization import exception_from_dict, exception_to_dict

Meta = dict[str, Any]


def celery_meta(
    task_id: str, result: Any, state: str, traceback: str | None = None, request: Any = None
) -> Meta:
    """A record with Celery's fields; an exception is stored in its portable form."""
    if isinstance(result, BaseException):
        result = exception_to_dict(result)
    done = dt.datetime.now(dt.timezone.utc).isoformat() if state in states.READY_STATES else None
    meta: Meta = {
        "status": state,
        "result": result,
        "traceback": traceback,
        "children": [],
        "date_done": done,
        "task_id": task_id,
    }
    if getattr(request, "group", None):
        meta["group_id"] = request.group
    if getattr(request, "parent_id", None):
        meta["parent_id"] = request.parent_id
    return meta


class CeleryBackendAPI:
    """Mixed into every result backend; built on its ``store`` and ``get_meta``. Unlike
    Celery's, ``mark_as_failure`` only stores: a worker runs the failed task's errbacks and
    chord part itself."""

    def store(self, task_id: str, meta: Meta) -> bool:
        raise NotImplementedError

    def get_meta(self, task_id: str) -> Meta:
        raise NotImplementedError

    def store_result(self, task_id: str, result: Any, state: str,
                     traceback: str | None = None, request: Any = None,
                     **kwargs: Any) -> Any:  # fmt: skip
        """Store ``result`` as the task's ``state`` (a custom one too); returns ``result``.
        A stored SUCCESS is never overwritten."""
        self.store(task_id, celery_meta(task_id, result, state, traceback, request))
        return result

    def mark_as_started(self, task_id: str, **meta: Any) -> Any:
        return self.store_result(task_id, meta, states.STARTED)

    def mark_as_done(self, task_id: str, result: Any, request: Any = None,
                     store_result: bool = True, state: str = states.SUCCESS) -> None:  # fmt: skip
        if store_result:
            self.store_result(task_id, result, state, request=request)

    def mark_as_failure(self, task_id: str, exc: BaseException, traceback: str | None = None,
                        request: Any = None, store_result: bool = True,
                        call_errbacks: bool = True,
                        state: str = states.FAILURE) -> None:  # fmt: skip
        if store_result:
            self.store_result(task_id, exc, state, traceback, request)

    def mark_as_retry(self, task_id: str, exc: BaseException, traceback: str | None = None,
                      request: Any = None, store_result: bool = True,
                      state: str = states.RETRY) -> None:  # fmt: skip
        if store_result:
            self.store_result(task_id, exc, state, traceback, request)

    def mark_as_revoked(self, task_id: str, reason: str = "", request: Any = None,
                        store_result: bool = True,
                        state: str = states.REVOKED) -> None:  # fmt: skip
        if store_result:
            self.store_result(task_id, TaskRevokedError(reason), state, None, request)

    def get_task_meta(self, task_id: str, cache: bool = True) -> Meta:
        return self.get_meta(task_id)

    def get_state(self, task_id: str) -> str:
        return str(self.get_meta(task_id)["status"])

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        """The stored result; an exception state's is rebuilt as the exception."""
        meta = self.get_meta(task_id)
        if meta.get("status") in states.EXCEPTION_STATES and isinstance(meta.get("result"), dict):
            return exception_from_dict(meta["result"])
        return meta.get("result")

    def get_traceback(self, task_id: str) -> str | None:
        return self.get_meta(task_id).get("traceback")

    def get_children(self, task_id: str) -> Any:
        return self.get_meta(task_id).get("children")
