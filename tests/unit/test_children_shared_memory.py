"""The shared memory of children that consume by themselves: slots (what a child runs, the
batch it may have taken back) and the worker-wide token buckets of rate limits."""

from __future__ import annotations

import os
import time

import pytest

from minicelery.worker.buckets import Deferred, SharedBuckets
from minicelery.worker.sharedclock import SharedClock
from minicelery.worker.slots import ROOM, SETTLE_ROOM, Slots


def test_a_slot_says_what_its_child_runs_until_cleared() -> None:
    slots = Slots(4)
    position = slots.allocate()
    assert slots.read(position) is None
    slots.write(position, "17", "celery", b"message", flags=2)
    running = slots.read(position)
    assert running is not None
    assert (running.tag, running.queue, running.data, running.acks_late) == (
        "17", "celery", b"message", True
    )  # fmt: skip
    assert abs(running.started - time.monotonic()) < 1
    slots.clear(position)
    assert slots.read(position) is None


def test_a_message_too_big_for_its_slot_is_marked_truncated() -> None:
    slots = Slots(1)
    position = slots.allocate()
    slots.write(position, "1", "q", b"x" * (ROOM + 1), flags=0)
    running = slots.read(position)
    assert running is not None and running.truncated and running.data == b""


def test_what_a_child_ran_and_did_not_settle_is_read_back_in_order() -> None:
    slots = Slots(2)
    position = slots.allocate()
    assert slots.keep(position, [("t1", b"r1")], ["1"])
    assert slots.keep(position, [("t2", b"r2"), ("t2", b"r2b")], [])
    assert slots.unsettled(position) == ([("t1", b"r1"), ("t2", b"r2"), ("t2", b"r2b")], ["1"])
    assert slots.unsettled(1 - position) == ([], [])  # another child's slot
    slots.settled(position)
    assert slots.unsettled(position) == ([], [])
    assert slots.keep(position, [], ["2"])
    assert slots.unsettled(position) == ([], ["2"])


def test_results_too_big_for_the_slot_are_refused_and_left_to_the_child() -> None:
    slots = Slots(1)
    position = slots.allocate()
    assert slots.keep(position, [("t1", b"small")], ["1"])
    assert not slots.keep(position, [("t2", b"x" * SETTLE_ROOM)], ["2"])
    assert slots.unsettled(position) == ([("t1", b"small")], ["1"])  # kept as it was


def test_task_totals_add_up_the_live_children_and_those_gone() -> None:
    slots = Slots(2)
    first, second = slots.allocate(), slots.allocate()
    slots.write_totals(first, {"add": 2, "mul": 1})
    slots.write_totals(second, {"add": 1})
    assert slots.task_totals() == {"add": 3, "mul": 1}
    slots.retire_count(first)  # that child left: its counts stay
    slots.write_totals(second, {"add": 5})
    assert slots.task_totals() == {"add": 7, "mul": 1}
    many = {f"task{i}": i for i in range(1000)}  # more names than fit: the largest stay
    slots.write_totals(second, many)
    kept = slots.read_totals(second)
    assert kept and all(many[name] == count for name, count in kept.items())
    assert min(kept.values()) > 500


def test_a_released_slot_is_handed_out_again_cleared() -> None:
    slots = Slots(1)
    position = slots.allocate()
    slots.write(position, "1", "q", b"m", flags=0)
    with pytest.raises(IndexError):
        slots.allocate()
    slots.release(position)
    assert slots.allocate() == position
    assert slots.read(position) is None and slots.batch_size(position) == 0


def test_the_main_process_takes_back_what_a_child_has_not_started() -> None:
    slots = Slots(2)
    position = slots.allocate()
    assert slots.offer(position, ["1", "2", "3"]) == []
    assert slots.claim(position, "1")
    assert slots.batch_size(position) == 2
    assert slots.take_batch(position) == ["2", "3"]
    assert not slots.claim(position, "2"), "taken back: the child must not start it"
    assert slots.take_batch(position) == []


def test_tags_beyond_the_batch_room_are_left_to_the_child() -> None:
    slots = Slots(1)
    position = slots.allocate()
    tags = [str(n).zfill(20) for n in range(400)]
    rest = slots.offer(position, tags)
    assert rest and rest == tags[len(tags) - len(rest) :]
    assert slots.batch_size(position) == len(tags) - len(rest)


def test_a_slot_whose_lock_was_left_held_is_not_waited_on() -> None:
    slots = Slots(1)
    position = slots.allocate()
    slots.offer(position, ["1"])
    slots.locks[position].acquire()  # as a child killed inside claim() would leave it
    assert slots.take_batch(position) == []
    assert not slots.usable(position)


def test_a_shared_bucket_spaces_out_one_task_name_only() -> None:
    buckets = SharedBuckets()
    assert buckets.delay("any") == 0.0  # no limit anywhere: one read of a counter
    buckets.set_rate("limited", 10.0)
    assert buckets.delay("limited") == 0.0
    wait = buckets.delay("limited")
    assert 0.05 < wait <= 0.1
    assert buckets.delay("free") == 0.0
    buckets.set_rate("limited", None)
    assert buckets.delay("limited") == 0.0


def test_deferred_messages_come_due_in_order_of_their_tokens() -> None:
    from minicelery.broker import Delivery

    deferred = Deferred()
    deferred.add(0.0, Delivery("1", "q", b""), "now")
    deferred.add(60.0, Delivery("2", "q", b""), "later")
    assert deferred.next_in(1.0) == 0.0
    assert [verdict for _, verdict in deferred.take_due()] == ["now"]
    assert 0.5 < deferred.next_in(1.0) <= 1.0
    assert deferred.tags() == {"2"} and deferred.take_all() == ["2"] and not len(deferred)


def test_frames_read_along_with_the_first_are_not_lost() -> None:
    """A child's first frame and a stop sent right behind it can arrive in one read."""
    import struct

    from minicelery.worker.channel import Channel

    main, child = Channel.pair()
    try:
        header = struct.Struct("!I")
        main.sock.sendall(header.pack(6) + b"Ifirst" + header.pack(0))  # one write, two frames
        assert child.recv_bytes() == b"Ifirst"
        assert child.buffered() == [b""]
        assert child.buffered() == []
    finally:
        main.close()
        child.close()


def test_the_processed_count_outlives_the_children_that_ran_the_tasks() -> None:
    slots = Slots(2)
    first, second = slots.allocate(), slots.allocate()
    for _ in range(3):
        slots.count_one(first)
    slots.count_one(second)
    assert slots.processed() == 4
    slots.retire_count(first)
    slots.release(first)
    assert slots.allocate() == first
    slots.count_one(first)
    assert slots.processed() == 5


def test_a_task_run_by_a_sibling_is_seen_until_its_slot_is_cleared() -> None:
    """What holds a retry back behind its last attempt (running in another child)."""
    slots = Slots(3)
    mine, sibling = slots.allocate(), slots.allocate()
    task_id = "0f9c2b1e-1111-4222-8333-944445555666"
    assert not slots.running_elsewhere(mine, task_id)
    slots.write(sibling, "5", "q", b"m", flags=0)
    slots.mark(sibling, task_id)
    assert slots.running_elsewhere(mine, task_id)
    assert not slots.running_elsewhere(sibling, task_id)  # its own attempt: not a sibling's
    assert not slots.running_elsewhere(mine, task_id[:-1])  # a prefix is another id
    slots.clear(sibling)
    assert not slots.running_elsewhere(mine, task_id)
    slots.mark(sibling, task_id)
    slots.retire_count(sibling)  # killed while running it
    assert not slots.running_elsewhere(mine, task_id)


def test_the_shared_clock_moves_on_for_every_forked_process() -> None:
    clock = SharedClock()
    assert clock.forward() == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        clock.forward()
        clock.adjust(10)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert clock.value == 11 and clock.forward() == 12
