"""The broker contract, run against RedisBroker on memory:// (fakeredis with Lua).

The tests only use the ``Broker`` interface, plus the Redis client to backdate heartbeats
and look into a consumer's hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import cast

import pytest

from minicelery.broker.base import DeadLetter, Delivery, OutgoingMessage
from minicelery.broker.redis import RedisBroker
from minicelery.redislayer.memory import memory_client


def publish(broker: RedisBroker, *items: bytes, queue: str = "celery", priority: int = 0) -> None:
    broker.publish([OutgoingMessage(queue, item, priority) for item in items])


def datas(deliveries: Sequence[Delivery]) -> list[bytes]:
    return [d.data for d in deliveries]


def held(broker: RedisBroker, consumer: str) -> int:
    return int(broker.client.hlen(broker.keys.hold(consumer)))


def backdate_heartbeat(broker: RedisBroker, consumer: str, seconds: float) -> None:
    """``consumer`` fell silent ``seconds`` ago while Redis and its other workers went on:
    lost-worker checks ran all along (see the tests of a silence of Redis itself)."""
    broker.client.zadd(broker.keys.consumers, {consumer: time.time() - seconds})
    broker.client.set(broker.keys.recovered_at, time.time())


# --------------------------------------------------------------------------- publish / reserve


def test_publish_reserve_ack(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b", b"c")
    assert broker.queue_sizes(["celery"]) == {"celery": 3}
    deliveries = broker.reserve("c1", ["celery"], 10)
    assert datas(deliveries) == [b"a", b"b", b"c"]
    assert {d.queue for d in deliveries} == {"celery"}
    assert len({d.tag for d in deliveries}) == 3
    assert broker.queue_sizes(["celery"]) == {"celery": 0}
    assert held(broker, "c1") == 3
    broker.ack("c1", [d.tag for d in deliveries])
    assert held(broker, "c1") == 0
    assert broker.recover_lost(0) == 0  # nothing left to give back
    assert broker.reserve("c1", ["celery"], 10) == []


def test_reserve_can_ack_earlier_deliveries_in_the_same_step(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b", b"c")
    first = broker.reserve("c1", ["celery"], 2)
    assert held(broker, "c1") == 2
    second = broker.reserve("c1", ["celery"], 2, ack=[first[0].tag])
    assert datas(second) == [b"c"]
    assert held(broker, "c1") == 2  # a acked, b and c held
    backdate_heartbeat(broker, "c1", 120)
    assert broker.recover_lost(30) == 2
    assert datas(broker.reserve("c2", ["celery"], 10)) == [b"b", b"c"]


def test_reserve_takes_at_most_count(broker: RedisBroker) -> None:
    publish(broker, b"1", b"2", b"3", b"4")
    assert datas(broker.reserve("c1", ["celery"], 3)) == [b"1", b"2", b"3"]
    assert datas(broker.reserve("c1", ["celery"], 3)) == [b"4"]
    assert broker.reserve("c1", ["celery"], 0) == []
    assert broker.reserve("c1", [], 5) == []


def test_reserve_from_several_queues(broker: RedisBroker) -> None:
    publish(broker, b"x1", b"x2", queue="x")
    publish(broker, b"y1", queue="y")
    deliveries = broker.reserve("c1", ["x", "y"], 10)
    assert sorted(datas(deliveries)) == [b"x1", b"x2", b"y1"]
    assert {d.data: d.queue for d in deliveries} == {b"x1": "x", b"x2": "x", b"y1": "y"}
    assert broker.reserve("c1", ["z"], 10) == []


def test_priority_nine_first_and_fifo_within_a_level(broker: RedisBroker) -> None:
    publish(broker, b"p0-a", priority=0)
    publish(broker, b"p9-a", priority=9)
    publish(broker, b"p5-a", priority=5)
    publish(broker, b"p9-b", priority=9)
    publish(broker, b"p0-b", priority=0)
    publish(broker, b"p5-b", priority=5)
    assert datas(broker.reserve("c1", ["celery"], 10)) == [
        b"p9-a",
        b"p9-b",
        b"p5-a",
        b"p5-b",
        b"p0-a",
        b"p0-b",
    ]


def test_priority_is_clamped_to_0_9(broker: RedisBroker) -> None:
    publish(broker, b"low", priority=-4)
    publish(broker, b"mid", priority=4)
    publish(broker, b"high", priority=42)
    assert datas(broker.reserve("c1", ["celery"], 10)) == [b"high", b"mid", b"low"]


def test_reserve_moves_messages_into_the_hold(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b", b"c")
    deliveries = broker.reserve("c1", ["celery"], 2)
    assert broker.queue_sizes(["celery"]) == {"celery": 1}
    assert held(broker, "c1") == 2
    raw = cast(dict[bytes, bytes], broker.client.hgetall(broker.keys.hold("c1")))
    hold = {tag.decode(): entry for tag, entry in raw.items()}
    assert set(hold) == {d.tag for d in deliveries}
    for delivery in deliveries:
        assert hold[delivery.tag].endswith(delivery.data)


def test_concurrent_consumers_never_share_or_lose_a_message(broker: RedisBroker) -> None:
    items = [f"m{i}".encode() for i in range(200)]
    publish(broker, *items)
    got: dict[str, list[bytes]] = {}

    def consume(name: str) -> None:
        mine = got.setdefault(name, [])
        while True:
            batch = broker.reserve(name, ["celery"], 3)
            if not batch:
                return
            mine.extend(datas(batch))

    threads = [threading.Thread(target=consume, args=(f"c{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    everything = [item for batch in got.values() for item in batch]
    assert len(everything) == len(items)
    assert sorted(everything) == sorted(items)
    assert sum(held(broker, name) for name in got) == len(items)


# --------------------------------------------------------------------------- requeue


def test_requeue_puts_a_message_back_at_the_front(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b", b"c")
    (first,) = broker.reserve("c1", ["celery"], 1)
    assert broker.requeue("c1", [first.tag]) == 1
    assert held(broker, "c1") == 0
    assert datas(broker.reserve("c2", ["celery"], 10)) == [b"a", b"b", b"c"]


def test_requeue_of_several_messages_keeps_their_order(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b", b"c", b"d")
    taken = broker.reserve("c1", ["celery"], 3)
    assert datas(taken) == [b"a", b"b", b"c"]
    assert broker.requeue("c1", [d.tag for d in taken]) == 3
    assert datas(broker.reserve("c2", ["celery"], 10)) == [b"a", b"b", b"c", b"d"]


def test_requeue_keeps_the_priority_and_wakes_waiters(broker: RedisBroker) -> None:
    publish(broker, b"urgent", priority=9)
    (urgent,) = broker.reserve("c1", ["celery"], 1)
    assert broker.wait(["celery"], 0.01) is False  # queue empty: no wake-up token
    broker.requeue("c1", [urgent.tag])
    assert broker.wait(["celery"], 1) is True
    publish(broker, b"normal", priority=5)
    assert datas(broker.reserve("c2", ["celery"], 10)) == [b"urgent", b"normal"]


def test_requeue_of_unknown_or_empty_tags(broker: RedisBroker) -> None:
    assert broker.requeue("c1", []) == 0
    assert broker.requeue("c1", ["999"]) == 0


# --------------------------------------------------------------------------- lost consumers


def test_recover_lost_requeues_a_silent_consumers_messages_exactly_once(
    broker: RedisBroker,
) -> None:
    publish(broker, b"a", b"b", b"c")
    lost = broker.reserve("lost", ["celery"], 2)
    alive = broker.reserve("alive", ["celery"], 1)
    assert datas(lost) == [b"a", b"b"] and datas(alive) == [b"c"]
    backdate_heartbeat(broker, "lost", 120)
    broker.heartbeat("alive")
    assert broker.recover_lost(30) == 2
    assert broker.recover_lost(30) == 0  # exactly once
    assert held(broker, "lost") == 0
    assert held(broker, "alive") == 1
    assert broker.client.zscore(broker.keys.consumers, "lost") is None
    assert datas(broker.reserve("new", ["celery"], 10)) == [b"a", b"b"]


def test_after_redis_itself_fell_silent_no_live_worker_is_judged_lost_at_once(
    broker: RedisBroker,
) -> None:
    """A frozen or restarted Redis leaves every heartbeat old, live workers' too: the first
    check after it gives everyone ``lost_after`` seconds to heartbeat again; a worker still
    silent then is lost."""
    publish(broker, b"a", b"b")
    broker.reserve("alive", ["celery"], 1)
    broker.reserve("dead", ["celery"], 1)
    backdate_heartbeat(broker, "alive", 60)
    backdate_heartbeat(broker, "dead", 60)
    broker.client.set(broker.keys.recovered_at, time.time() - 60)  # nobody checked: a freeze
    assert broker.recover_lost(30) == 0
    assert held(broker, "alive") == 1 and held(broker, "dead") == 1
    broker.heartbeat("alive")  # the live one is back within the grace...
    broker.client.set(broker.keys.heard_again_at, time.time() - 31)  # ...which has passed
    assert broker.recover_lost(30) == 1
    assert held(broker, "alive") == 1 and held(broker, "dead") == 0


def test_recovered_messages_go_before_newer_ones(broker: RedisBroker) -> None:
    publish(broker, b"old1", b"old2")
    broker.reserve("lost", ["celery"], 2)
    publish(broker, b"new")
    backdate_heartbeat(broker, "lost", 120)
    assert broker.recover_lost(30) == 2
    assert datas(broker.reserve("c", ["celery"], 10)) == [b"old1", b"old2", b"new"]


def test_heartbeat_keeps_a_consumer_alive(broker: RedisBroker) -> None:
    publish(broker, b"a")
    broker.reserve("c1", ["celery"], 1)
    backdate_heartbeat(broker, "c1", 120)
    broker.heartbeat("c1")
    assert broker.recover_lost(30) == 0
    assert held(broker, "c1") == 1


def test_concurrent_recovery_requeues_once(broker: RedisBroker) -> None:
    publish(broker, *(f"m{i}".encode() for i in range(20)))
    broker.reserve("lost", ["celery"], 20)
    backdate_heartbeat(broker, "lost", 120)
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda: counts.append(broker.recover_lost(30))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(counts) == [0, 0, 0, 20]
    assert broker.queue_sizes(["celery"]) == {"celery": 20}


def test_unregister_gives_back_what_a_consumer_holds(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b")
    broker.reserve("c1", ["celery"], 2)
    assert broker.unregister("c1") == 2
    assert held(broker, "c1") == 0
    assert datas(broker.reserve("c2", ["celery"], 10)) == [b"a", b"b"]


# --------------------------------------------------------------------------- scheduled


def test_move_due_moves_only_due_messages(broker: RedisBroker) -> None:
    now = time.time()
    broker.publish(
        [
            OutgoingMessage("celery", b"far", 0, now + 1000),
            OutgoingMessage("celery", b"soon", 0, now + 5),
            OutgoingMessage("celery", b"past", 0, now - 5),  # due already: queued at once
        ]
    )
    assert broker.queue_sizes(["celery"]) == {"celery": 1}
    due = broker.next_due()
    assert due is not None and abs(due - (now + 5)) < 0.01
    assert broker.move_due(now) == 0
    assert broker.move_due(now + 10) == 1
    assert broker.move_due(now + 10) == 0  # moved once
    assert broker.queue_sizes(["celery"]) == {"celery": 2}
    far = broker.next_due()
    assert far is not None and abs(far - (now + 1000)) < 0.01
    assert datas(broker.reserve("c1", ["celery"], 10)) == [b"past", b"soon"]


def test_move_due_keeps_queue_and_priority_and_honours_limit(broker: RedisBroker) -> None:
    now = time.time()
    broker.publish(
        [
            OutgoingMessage("q", b"s1", 0, now + 1),
            OutgoingMessage("q", b"s2", 9, now + 2),
            OutgoingMessage("q", b"s3", 0, now + 3),
        ]
    )
    publish(broker, b"plain", queue="q", priority=5)
    assert broker.move_due(now + 10, limit=2) == 2
    assert broker.move_due(now + 10, limit=2) == 1
    assert broker.next_due() is None
    assert datas(broker.reserve("c1", ["q"], 10)) == [b"s2", b"plain", b"s1", b"s3"]


def test_due_messages_wake_a_waiting_consumer(broker: RedisBroker) -> None:
    now = time.time()
    broker.publish([OutgoingMessage("celery", b"later", 0, now + 60)])
    assert broker.wait(["celery"], 0.01) is False
    broker.move_due(now + 61)
    assert broker.wait(["celery"], 1) is True


# --------------------------------------------------------------------------- dead letters


def dead_letter(broker: RedisBroker, delivery: Delivery, id: str, when: float) -> DeadLetter:
    letter = DeadLetter(id, "proj.add", f"reason {id}", when, delivery.queue, delivery.data)
    broker.dead_letter("c1", delivery, letter)
    return letter


def test_dead_letters_list_replay_and_purge(broker: RedisBroker) -> None:
    publish(broker, b"one", b"two", b"three", queue="work")
    first, second, third = broker.reserve("c1", ["work"], 3)
    now = time.time()
    l2 = dead_letter(broker, second, "id-2", now + 1)
    l1 = dead_letter(broker, first, "id-1", now)
    l3 = dead_letter(broker, third, "id-3", now + 2)
    assert held(broker, "c1") == 0  # moved out of the hold
    assert broker.dead_letters() == [l1, l2, l3]  # oldest first
    assert broker.replay_dead(["id-2"]) == 1
    assert broker.queue_sizes(["work"]) == {"work": 1}
    assert [letter.id for letter in broker.dead_letters()] == ["id-1", "id-3"]
    assert datas(broker.reserve("c2", ["work"], 10)) == [b"two"]
    assert broker.replay_dead(["no-such-id"]) == 0
    assert broker.purge_dead() == 2
    assert broker.dead_letters() == []
    assert broker.purge_dead() == 0


def test_replay_all_dead_letters(broker: RedisBroker) -> None:
    publish(broker, b"x", b"y")
    x, y = broker.reserve("c1", ["celery"], 2)
    dead_letter(broker, x, "x", 1.0)
    dead_letter(broker, y, "y", 2.0)
    assert broker.replay_dead() == 2
    assert broker.dead_letters() == []
    assert datas(broker.reserve("c2", ["celery"], 10)) == [b"x", b"y"]
    assert broker.replay_dead() == 0


# --------------------------------------------------------------------------- purge / sizes


def test_purge_and_queue_sizes(broker: RedisBroker) -> None:
    publish(broker, b"a1", queue="a", priority=0)
    publish(broker, b"a2", b"a3", queue="a", priority=7)
    publish(broker, b"b1", b"b2", queue="b")
    assert broker.queue_sizes(["a", "b", "empty"]) == {"a": 3, "b": 2, "empty": 0}
    assert broker.purge(["a"]) == 3
    assert broker.queue_sizes(["a", "b"]) == {"a": 0, "b": 2}
    assert broker.wait(["a"], 0.01) is False
    assert broker.purge(["a"]) == 0
    assert broker.purge(["a", "b"]) == 2


def test_purge_leaves_held_and_scheduled_messages(broker: RedisBroker) -> None:
    publish(broker, b"held", b"waiting")
    broker.reserve("c1", ["celery"], 1)
    broker.publish([OutgoingMessage("celery", b"scheduled", 0, time.time() + 60)])
    assert broker.purge(["celery"]) == 1
    assert held(broker, "c1") == 1
    assert broker.next_due() is not None


def test_wait(broker: RedisBroker) -> None:
    started = time.monotonic()
    assert broker.wait(["celery"], 0.05) is False
    assert time.monotonic() - started < 2
    publish(broker, b"a")
    assert broker.wait(["celery"], 1) is True


# --------------------------------------------------------------------------- isolation


def test_prefixes_isolate(memory_url: str) -> None:
    one = RedisBroker(memory_client(memory_url), "prefix-one")
    two = RedisBroker(memory_client(memory_url), "prefix-two")
    publish(one, b"for-one")
    publish(two, b"for-two", b"also-two")
    assert one.queue_sizes(["celery"]) == {"celery": 1}
    assert two.queue_sizes(["celery"]) == {"celery": 2}
    assert two.purge(["celery"]) == 2
    assert datas(one.reserve("c1", ["celery"], 10)) == [b"for-one"]
    backdate_heartbeat(one, "c1", 120)
    assert two.recover_lost(30) == 0  # another prefix's consumers are not ours
    assert one.recover_lost(30) == 1


def test_memory_servers_isolate_by_name(memory_url: str) -> None:
    one = RedisBroker(memory_client(memory_url), "p")
    other = RedisBroker(memory_client(memory_url + "-other"), "p")
    same = RedisBroker(memory_client(memory_url), "p")
    publish(one, b"a")
    assert other.queue_sizes(["celery"]) == {"celery": 0}
    assert same.queue_sizes(["celery"]) == {"celery": 1}


def test_ping(broker: RedisBroker) -> None:
    broker.ping()


@pytest.mark.parametrize("count", [1, 5])
def test_reserve_records_the_consumer_heartbeat(broker: RedisBroker, count: int) -> None:
    before = time.time()
    publish(broker, *(b"m" for _ in range(count)))
    broker.reserve("c1", ["celery"], count)
    score = broker.client.zscore(broker.keys.consumers, "c1")
    assert score is not None and before - 1 <= score <= time.time() + 1


def test_held_lists_the_tags_a_consumer_holds(broker: RedisBroker) -> None:
    publish(broker, b"a", b"b", b"c")
    taken = broker.reserve("c1", ["celery"], 3)
    broker.ack("c1", [taken[0].tag])
    assert sorted(broker.held("c1")) == sorted(d.tag for d in taken[1:])
    assert broker.held("nobody") == []


def test_messages_pushed_onto_a_list_by_hand_are_found(broker: RedisBroker) -> None:
    """Publishing marks a priority level as non-empty; a message pushed some other way (by
    hand, or by an older version) must still be reserved."""
    broker.client.rpush(broker.keys.queue("celery", 0), b"raw")
    assert datas(broker.reserve("c1", ["celery"], 5)) == [b"raw"]
