"""The result backend of a prefork child: records are handed to the main process, which
stores them in batches, so children never need a Redis connection (or redis-py in memory)
for ordinary tasks. Reads go to a real backend, opened on first use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .. import states
from ..serialization import codec_for
from .base import Meta, OnMessage, ResultBackend, encode_meta

Record = tuple[str, bytes]


class RelayBackend(ResultBackend):
    """Collects encoded records; ``send_now`` ships intermediate states (STARTED, PROGRESS)
    at once so they are visible while the task runs, final ones travel with the outcome."""

    def __init__(
        self,
        serializer: str,
        send_now: Callable[[list[Record]], None],
        open_real: Callable[[], ResultBackend],
    ) -> None:
        self.codec = codec_for(serializer)
        self.send_now = send_now
        self.open_real = open_real
        self.pending: list[Record] = []
        self._real: ResultBackend | None = None

    @property
    def real(self) -> ResultBackend:
        if self._real is None:
            self._real = self.open_real()
        return self._real

    def store(self, task_id: str, meta: Meta) -> bool:
        record = (task_id, encode_meta(meta, self.codec))
        if meta.get("status") in states.READY_STATES:
            self.pending.append(record)
        else:
            self.send_now([record])
        return True

    def take(self) -> list[Record]:
        records, self.pending = self.pending, []
        return records

    def get_meta(self, task_id: str) -> Meta:
        return self.real.get_meta(task_id)

    def wait_for(
        self, task_id: str, timeout: float | None, on_message: OnMessage | None = None
    ) -> Meta:
        return self.real.wait_for(task_id, timeout, on_message)

    def iter_meta(self, task_id: str, timeout: float | None) -> Iterator[tuple[Meta, bool]]:
        return self.real.iter_meta(task_id, timeout)

    def forget(self, task_id: str) -> None:
        self.real.forget(task_id)

    def save_group(self, group_id: str, value: Any) -> None:
        self.real.save_group(group_id, value)

    def restore_group(self, group_id: str) -> Any:
        return self.real.restore_group(group_id)

    def delete_group(self, group_id: str) -> None:
        self.real.delete_group(group_id)

    def get_many(self, task_ids: list[str]) -> list[Meta]:
        return self.real.get_many(task_ids)

    def chord_part_return(
        self, group_id: str, index: int, size: int, part: Any, task_id: str = ""
    ) -> Any:
        # Counted in Redis at once by this child (not relayed): the part travels in the
        # script, so the header task's own record need not be stored yet.
        return self.real.chord_part_return(group_id, index, size, part, task_id)

    def chord_settle(self, group_id: str) -> None:
        self.real.chord_settle(group_id)

    def chord_reset(self, group_id: str) -> None:
        self.real.chord_reset(group_id)

    def add_to_chord(self, group_id: str) -> int:
        return self.real.add_to_chord(group_id)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
