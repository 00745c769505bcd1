"""What consuming children report to the worker's main process through shared memory:
the ids of the tasks they stored SUCCESS for, and the byte that says receivers of
``task_received`` wait in the main process."""

from __future__ import annotations

import gc
import os
from typing import Any

from minicelery.signals import Signal
from minicelery.worker.childreports import RING, Listening, SuccessRings
from minicelery.worker.state import RecentIds


def test_a_ring_gives_each_id_once_across_a_fork() -> None:
    rings = SuccessRings(2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        rings.push(1, ["a", "b"])
        os._exit(0)
    os.waitpid(pid, 0)
    assert rings.take([0, 1]) == ["a", "b"]
    assert rings.take([0, 1]) == []
    rings.push(1, ["c"])
    assert rings.take([1]) == ["c"]


def test_a_full_ring_keeps_its_newest_ids() -> None:
    rings = SuccessRings(1)
    ids = [f"id-{n}" for n in range(RING + 5)]
    rings.push(0, ids)
    assert rings.take([0]) == ids[-RING:]
    rings.push(0, ["x" * 200, "last"])  # too long to report: left out
    assert rings.take([0]) == ["last"]


def test_reset_hands_over_the_last_ids_and_empties_the_ring() -> None:
    rings = SuccessRings(1)
    rings.push(0, ["a", "b"])
    assert rings.take([0]) == ["a", "b"]
    rings.push(0, ["c"])
    assert rings.reset(0) == ["c"]
    rings.push(0, ["d"])  # the next child at this position starts from zero
    assert rings.take([0]) == ["d"]


def test_recent_ids_merge_their_feeds_when_read() -> None:
    recent = RecentIds(3)
    waiting = ["a", "b", "c", "d"]
    recent.feeds.append(lambda: [waiting.pop(0)] if waiting else [])
    assert "a" in recent
    assert len(recent) == 2
    assert "c" in recent and "d" in recent
    assert "a" not in recent  # the oldest forgotten first


def test_listening_is_set_the_moment_a_receiver_connects() -> None:
    signal = Signal("probe")
    listening = Listening(signal)
    listening.start()
    assert not listening.on()

    def receiver(**kwargs: Any) -> None:
        pass

    signal.connect(receiver)
    assert listening.on()  # before the worker's loop has looked
    signal.disconnect(receiver)
    assert listening.on()
    listening.refresh()
    assert not listening.on()

    def collected(**kwargs: Any) -> None:
        pass

    signal.connect(collected)
    assert listening.on()
    del collected
    gc.collect()
    listening.refresh()
    assert not listening.on()  # held weakly: gone with its function
    listening.stop()
    signal.connect(receiver, weak=False)
    assert not listening.on()  # no longer watched
