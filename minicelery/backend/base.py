"""The result backend interface and the backend used when results are disabled."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from ..exceptions import EncodeError, ImproperlyConfigured
from ..serialization import Codec
from .celery_api import CeleryBackendAPI

Meta = dict[str, Any]
OnMessage = Callable[[Meta], None]


def encode_meta(meta: Meta, codec: Codec) -> bytes:
    """Serialize a result record with ``status`` first, which the store script relies on."""
    if next(iter(meta), None) != "status":
        meta = {"status": meta["status"], **meta}
    try:
        return codec.dumps(meta)
    except EncodeError:
        raise
    except Exception as exc:  # each codec has its own errors (TypeError, PicklingError...)
        raise EncodeError(f"cannot encode the result with {codec.name}: {exc!r}") from exc


class ResultBackend(CeleryBackendAPI, ABC):
    """Stores one record per task id (Celery's fields) and tells waiters when it changes;
    Celery's method names (``store_result``, ``get_state``...) come with the mixin."""

    @abstractmethod
    def store(self, task_id: str, meta: Meta) -> bool:
        """Write ``meta`` (status, result, ...); False if a SUCCESS was already stored."""

    @abstractmethod
    def get_meta(self, task_id: str) -> Meta:
        """The stored record, or a PENDING one when there is none."""

    @abstractmethod
    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        """Block until the task is in a ready state; raise TimeoutError after ``timeout``."""

    def iter_meta(self, task_id: str, timeout: float | None) -> Iterator[tuple[Meta, bool]]:
        """The current record, then each newer one as it is stored, until a ready one
        (``(meta, stored)``). Backends that cannot stream yield only the final record."""
        yield self.wait_for(task_id, timeout), True

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the stored record."""

    @abstractmethod
    def save_group(self, group_id: str, value: Any) -> None:
        """Store a group's ``as_tuple()``."""

    @abstractmethod
    def restore_group(self, group_id: str) -> Any:
        """The stored ``as_tuple()`` of a group, or None."""

    @abstractmethod
    def delete_group(self, group_id: str) -> None:
        """Forget a saved group."""

    def get_many(self, task_ids: list[str]) -> list[Meta]:
        """The stored records of many tasks (a group's), in as few round trips as can be."""
        return [self.get_meta(task_id) for task_id in task_ids]

    def chord_part_return(
        self, group_id: str, index: int, size: int, part: Any, task_id: str = ""
    ) -> Any:
        """Record ``part`` (``[state, value, ...]``) of header task ``task_id``, number
        ``index`` of the chord ``group_id`` of ``size`` tasks; return all parts in order to
        the call that completes it, None to every other. Until :meth:`chord_settle`, the
        same task asking again gets the parts again (it ran again after a crash)."""
        raise ImproperlyConfigured(f"{type(self).__name__} does not support chords")

    def add_to_chord(self, group_id: str) -> int:
        """Count one more part of the chord ``group_id`` (a header task adding a task to
        it); returns how many have been added so far, so the new part's header index is
        the header's size plus that, minus one."""
        raise ImproperlyConfigured(f"{type(self).__name__} does not support chords")

    def chord_settle(self, group_id: str) -> None:
        """The chord's body has been sent: its parts are no longer needed."""

    def chord_reset(self, group_id: str) -> None:
        """A chord whose group id was fixed beforehand is sent again: a new run, so forget
        the parts and the claim of any earlier one (Celery resets its counter too)."""

    def close(self) -> None:
        """Release connections."""

    def ensure_chords_allowed(self) -> None:
        """Raise ``NotImplementedError`` when this backend cannot run chords (Celery's check,
        which code calls before starting one)."""


class KeyValueStoreBackend(ResultBackend):
    """A backend that keeps one record per task id under a key and counts chord parts
    atomically (Celery's ``BaseKeyValueStoreBackend``). Any backend that overrides
    :meth:`ResultBackend.chord_part_return` is one, subclass or not."""

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        if cls is not KeyValueStoreBackend or not issubclass(other, ResultBackend):
            return NotImplemented
        return other.chord_part_return is not ResultBackend.chord_part_return


class DisabledBackend(ResultBackend):
    """What an app without ``result_backend`` has: sending works, results are unavailable."""

    def ensure_chords_allowed(self) -> None:
        raise NotImplementedError(
            "Chords need a result backend to synchronise on, and none is configured "
            "(a group chained with a task becomes a chord too). Set result_backend."
        )

    def _fail(self) -> Any:
        raise ImproperlyConfigured(
            "No result backend is configured. Set result_backend (or backend= on the app)."
        )

    def store(self, task_id: str, meta: Meta) -> bool:
        return True  # nothing to store: workers of a results-less app just run tasks

    def get_meta(self, task_id: str) -> Meta:
        return self._fail()  # type: ignore[no-any-return]

    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        return self._fail()  # type: ignore[no-any-return]

    def forget(self, task_id: str) -> None:
        self._fail()

    def save_group(self, group_id: str, value: Any) -> None:
        self._fail()

    def restore_group(self, group_id: str) -> Any:
        return self._fail()

    def delete_group(self, group_id: str) -> None:
        self._fail()
