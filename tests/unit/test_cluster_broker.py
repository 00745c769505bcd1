"""The broker, result backend and beat coordination as they run on Redis Cluster, on an
in-memory Redis that refuses what a cluster refuses: a script or a multi-key command whose
keys lie in more than one hash slot (``CROSSSLOT``). The real cluster runs in the
integration tests; here every path is driven fast, and the slot rule checked on each call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.crc import key_slot

from minicelery.backend.cluster import ClusterBackend
from minicelery.broker import DeadLetter, OutgoingMessage
from minicelery.broker.cluster import ClusterBroker, by_queue, split_tag
from minicelery.broker.coordination import Coordinator
from minicelery.exceptions import ImproperlyConfigured
from minicelery.redislayer import cluster, clusterwire
from minicelery.redislayer.keys import KeySchema

MULTI_KEY = {"DEL", "MGET", "BLPOP", "EXISTS", "SUNION", "RENAME"}


def _keys_of(args: tuple[Any, ...]) -> list[Any]:
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return list(args[3 : 3 + int(args[2])])
    if name == "BLPOP":
        return list(args[1:-1])
    if name in MULTI_KEY:
        return list(args[1:])
    return []


def _check(args: tuple[Any, ...]) -> None:
    keys = _keys_of(args)
    slots = {key_slot(k if isinstance(k, bytes) else str(k).encode()) for k in keys}
    if len(slots) > 1:
        raise AssertionError(f"CROSSSLOT: {args[0]} on {keys}")


class SlotStrictRedis(fakeredis.FakeRedis):  # type: ignore[misc]
    """fakeredis that fails a command a cluster would refuse."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        _check(args)
        return super().execute_command(*args, **options)


class CheckedWire:
    """The hot path's wire, refusing what a cluster refuses."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def execute(self, *args: Any, **options: Any) -> Any:
        _check(args)
        return self.inner.execute(*args, **options)

    def pipeline(self, commands: Any, **options: Any) -> Any:
        for command in commands:
            _check(tuple(command))
        return self.inner.pipeline(commands, **options)

    def evalsha(self, script: Any, keys: Any, args: Any, **options: Any) -> Any:
        _check(("EVALSHA", script.sha, len(keys), *keys))
        return self.inner.evalsha(script, keys, args, **options)


@pytest.fixture(autouse=True)
def _strict_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    original = redis.client.Pipeline.pipeline_execute_command

    def checked(self: Any, *args: Any, **options: Any) -> Any:
        _check(args)
        return original(self, *args, **options)

    monkeypatch.setattr(redis.client.Pipeline, "pipeline_execute_command", checked)


@pytest.fixture
def client() -> Iterator[Any]:
    made = SlotStrictRedis(server=fakeredis.FakeServer())
    yield made
    made.close()


@pytest.fixture
def broker(client: Any) -> ClusterBroker:
    made = ClusterBroker(client, "cl")
    made.fast = CheckedWire(made.fast)
    return made


def _publish(broker: ClusterBroker, queue: str, body: bytes, priority: int = 0) -> None:
    broker.publish([OutgoingMessage(queue, body, priority)])


def test_the_url_names_nodes_and_credentials() -> None:
    parsed = cluster.parse("rediscluster://user:s%40cret@10.0.0.1:7000,10.0.0.2:7001/0")
    assert parsed.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert (parsed.username, parsed.password) == ("user", "s@cret")
    assert cluster.parse("rediscluster://:pw@h").nodes == [("h", 6379)]
    assert cluster.redact("rediscluster://user:pw@h:1,h:2") == "rediscluster://user:**@h:1,h:2"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("rediscluster://h:7000/3", "database 0 only"),
        ("rediscluster://h:port", "bad port"),
        ("rediscluster:///0", "at least one host"),
        ("redis://h:7000", "not a cluster URL"),
    ],
)
def test_a_bad_cluster_url_is_refused_in_one_line(url: str, says: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=says):
        cluster.parse(url)


def test_a_tag_names_its_queue() -> None:
    assert split_tag("12@emails@eu") == ("emails@eu", "12")
    assert by_queue(["1@a", "2@b", "3@a"]) == {"a": ["1", "3"], "b": ["2"]}


def test_what_one_script_touches_shares_a_slot_on_a_cluster() -> None:
    keys = KeySchema("p", cluster=True)
    assert len({key_slot(k.encode()) for k in (keys.consumers, keys.recovered_at,
                                               keys.heard_again_at)}) == 1  # fmt: skip
    queue_keys = [keys.queue_hold("q", "c/1"), keys.queue_seq("q"), keys.wake("q"),
                  keys.levels("q"), *(keys.queue("q", p) for p in range(10))]  # fmt: skip
    assert len({key_slot(k.encode()) for k in queue_keys}) == 1
    assert key_slot(keys.scheduled.encode()) == key_slot(keys.moving.encode())
    assert KeySchema("p").consumers == "p:consumers"  # one server's names are unchanged


def test_a_reserve_over_queues_of_many_slots_takes_by_priority_and_acks(
    broker: ClusterBroker,
) -> None:
    for queue in ("a", "b", "c"):
        _publish(broker, queue, f"{queue}-low".encode())
    _publish(broker, "b", b"b-high", priority=9)
    taken = broker.reserve("c1", ["a", "b", "c"], 10)
    assert sorted(d.data for d in taken) == [b"a-low", b"b-high", b"b-low", b"c-low"]
    b_items = [d.data for d in taken if d.queue == "b"]
    assert b_items == [b"b-high", b"b-low"]  # the highest priority first within a queue
    assert {split_tag(d.tag)[0] for d in taken} == {"a", "b", "c"}
    assert sorted(broker.held("c1")) == sorted(d.tag for d in taken)
    again = broker.reserve("c1", ["a", "b", "c"], 10, ack=[d.tag for d in taken[:2]])
    assert again == []
    assert sorted(broker.held("c1")) == sorted(d.tag for d in taken[2:])
    broker.ack("c1", [d.tag for d in taken[2:]])
    assert broker.held("c1") == []


def test_a_reserve_takes_no_more_than_asked_across_queues(broker: ClusterBroker) -> None:
    for i in range(3):
        _publish(broker, "a", b"a%d" % i)
        _publish(broker, "b", b"b%d" % i)
    assert len(broker.reserve("c1", ["a", "b"], 4)) == 4
    assert broker.queue_sizes(["a", "b"]) in ({"a": 0, "b": 2}, {"a": 2, "b": 0},
                                              {"a": 1, "b": 1})  # fmt: skip


def test_requeue_redeliver_and_held_messages_work_per_queue(broker: ClusterBroker) -> None:
    _publish(broker, "a", b"one")
    _publish(broker, "b", b"two")
    taken = {d.data: d for d in broker.reserve("c1", ["a", "b"], 5)}
    found = broker.held_messages("c1", [d.tag for d in taken.values()])
    assert sorted(d.data for d in found) == [b"one", b"two"]
    assert broker.requeue("c1", [taken[b"one"].tag]) == 1
    assert broker.redeliver("c1", taken[b"two"].tag, b"two-again") == 1
    assert broker.held("c1") == []
    assert sorted(d.data for d in broker.reserve("c2", ["a", "b"], 5)) == [b"one", b"two-again"]


def test_a_lost_consumers_holds_on_every_queue_are_given_back(broker: ClusterBroker) -> None:
    _publish(broker, "a", b"one")
    _publish(broker, "b", b"two")
    assert len(broker.reserve("dead", ["a", "b"], 5)) == 2
    broker.heartbeat("alive")
    # Never judged lost right after a silence: the clock of the last recovery is old.
    assert broker.recover_lost(1000.0) == 0
    assert broker.recover_lost(0.0) == 2
    assert broker.held("dead") == []
    assert sorted(d.data for d in broker.reserve("alive", ["a", "b"], 5)) == [b"one", b"two"]
    assert broker.unregister("alive") == 2
    assert broker.queue_sizes(["a", "b"]) == {"a": 1, "b": 1}


def test_scheduled_messages_reach_queues_on_other_slots(broker: ClusterBroker) -> None:
    now = time.time()
    broker.publish([OutgoingMessage("a", b"later", eta=now + 0.05),
                    OutgoingMessage("b", b"now")])  # fmt: skip
    assert broker.next_due() == pytest.approx(now + 0.05)
    assert broker.move_due(now) == 0
    assert broker.move_due(now + 1) == 1
    assert broker.client.hlen(broker.keys.moving) == 0
    assert broker.queue_sizes(["a", "b"]) == {"a": 1, "b": 1}


def test_a_scheduled_message_a_dead_mover_took_is_queued_by_the_next(
    broker: ClusterBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.publish([OutgoingMessage("a", b"later", eta=time.time() + 0.01)])
    monkeypatch.setattr("minicelery.broker.cluster.MOVING_STALE", 0.0)
    keys = [broker.keys.scheduled, broker.keys.moving]
    taken = broker.fast.evalsha(broker._take_due, keys, [time.time() + 1, 10, 1000.0])
    assert len(taken) == 1  # taken, then the mover died before queueing it
    assert broker.queue_sizes(["a"]) == {"a": 0}
    assert broker.move_due(time.time() + 1) == 1
    assert broker.queue_sizes(["a"]) == {"a": 1}


def test_dead_letters_leave_the_hold_and_replay(broker: ClusterBroker) -> None:
    _publish(broker, "a", b"bad")
    (delivery,) = broker.reserve("c1", ["a"], 1)
    letter = DeadLetter("id1", "t.bad", "unknown task", time.time(), "a", delivery.data)
    broker.dead_letter("c1", delivery, letter)
    assert broker.held("c1") == []
    assert [d.id for d in broker.dead_letters()] == ["id1"]
    assert broker.replay_dead() == 1
    assert broker.dead_letters() == []
    assert broker.queue_sizes(["a"]) == {"a": 1}
    assert broker.purge(["a"]) == 1


def test_a_consuming_childs_round_trip_stores_then_acks_then_reserves(
    broker: ClusterBroker, client: Any
) -> None:
    backend = ClusterBackend(client, "cl")
    backend.fast = CheckedWire(backend.fast)
    _publish(broker, "a", b"m1")
    (delivery,) = broker.reserve("c1", ["a"], 1)
    _publish(broker, "b", b"m2")
    records = [
        (task_id, backend.encode({"status": "SUCCESS", "result": n, "task_id": task_id}))
        for n, task_id in ((1, "t1"), (2, "t2"))
    ]
    news: list[Any] = []
    taken = broker.settle_and_reserve(
        backend.store_commands(records), "c1", ["a", "b"], 5, [delivery.tag],
        [(("XRANGE", broker.keys.revoke_news, "-", "+"), news.append)],
    )  # fmt: skip
    assert [d.data for d in taken] == [b"m2"]
    assert [m["result"] for m in backend.get_many(["t1", "t2", "t3"])[:2]] == [1, 2]
    assert backend.get_many(["t3"])[0]["status"] == "PENDING"
    assert news == [[]]
    assert broker.held("c1") == [taken[0].tag]
    backend.store_encoded(records)  # the main process's path: one pipeline, any slots
    assert backend.get_meta("t2")["result"] == 2


def test_a_beat_run_is_claimed_once_then_published(broker: ClusterBroker) -> None:
    coordinator = Coordinator(broker)
    assert coordinator.hold_lease("beat", "me", 10)[0]
    assert coordinator.marks("beat", ["e"], "") == {"e": ""}
    message = OutgoingMessage("a", b"tick")
    assert coordinator.publish_once("beat", "e", "", "run1", message, lease_owner="me")
    assert not coordinator.publish_once("beat", "e", "", "run1", message, lease_owner="me")
    assert not coordinator.publish_once("beat", "e", "run1", "run2", message, "other")
    assert broker.queue_sizes(["a"]) == {"a": 1}
    assert coordinator.counts("beat") == {"e": 1}


def test_remote_control_revokes_go_to_one_slot_then_the_command(broker: ClusterBroker) -> None:
    mailbox = broker.mailbox()
    listener = mailbox.listen()
    assert mailbox.publish(b"cmd", revoke=["t1"], keep_for=60) == 1
    assert "t1" in mailbox.revoked()
    got = [listener.get(1.0) for _ in range(2)]  # the first may be the subscription's
    assert b"cmd" in got
    listener.close()


def test_a_success_is_stored_without_a_script_and_reaches_its_waiter(client: Any) -> None:
    backend = ClusterBackend(client, "cl")
    backend.fast = CheckedWire(backend.fast)
    ok = backend.encode({"status": "SUCCESS", "result": 5, "task_id": "t1"})
    failed = backend.encode({"status": "FAILURE", "result": "boom", "task_id": "t1"})
    assert [c[0] for c, _ in backend.store_commands([("t1", ok)])] == ["SET", "XADD", "EXPIRE"]
    assert [c[0] for c, _ in backend.store_commands([("t1", failed)])] == ["EVALSHA"]
    backend.store_encoded([("t2", ok)])  # nobody waited: no stream is made
    assert client.exists(backend.notify_key("t2")) == 0
    waiting = backend.iter_meta("t1", timeout=5)
    assert next(waiting)[0]["status"] == "PENDING"  # the waiter's round made the stream
    backend.store_encoded([("t1", ok)])
    assert next(waiting)[0]["result"] == 5
    backend.store_encoded([("t1", failed)])  # a redelivery's failure never replaces it
    assert backend.get_meta("t1")["status"] == "SUCCESS"


def test_after_a_wait_that_only_timed_out_the_reserve_skips_but_for_a_sweep(
    broker: ClusterBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(broker, "a", b"pushed")  # as if by hand: the next wait saw no token
    assert len(broker.reserve("c1", ["a"], 1)) == 1  # a first reserve always looks
    _publish(broker, "a", b"more")
    broker._quiet = True
    assert broker.reserve("c1", ["a"], 1) == []  # nothing was told to come
    broker._quiet = True
    monkeypatch.setattr("minicelery.broker.cluster.SWEEP_EVERY", 0.0)
    assert [d.data for d in broker.reserve("c1", ["a"], 1)] == [b"more"]  # the sweep


def test_records_in_order_go_as_runs_of_one_shard() -> None:
    class Node:
        def __init__(self, name: str) -> None:
            self.name = name

    a, b = Node("a"), Node("b")
    runs = clusterwire._runs([(a, [0, 2, 3]), (b, [1, 4])])
    assert [(node.name, indexes) for node, indexes in runs] == [
        ("a", [0]),
        ("b", [1]),
        ("a", [2, 3]),
        ("b", [4]),
    ]
