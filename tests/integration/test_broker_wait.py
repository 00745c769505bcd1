"""The idle wait with its chained reserve, on a real redis-server: a woken consumer gets its
message with the wake-up itself, and a wait abandoned after its reserve ran loses nothing."""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest

from minicelery.broker import OutgoingMessage
from minicelery.broker.redis import RedisBroker
from minicelery.redislayer.connect import client_from_url
from tests.helpers import RedisServer, wait_until


@pytest.fixture
def brokers(redis_server: RedisServer, key_prefix: str) -> Iterator[tuple[RedisBroker, ...]]:
    """Two brokers on the test's prefix: one waits, the other publishes."""
    made = [RedisBroker(client_from_url(redis_server.url), key_prefix) for _ in range(2)]
    assert made[0].reserve("c1", ["celery"], 1) == []  # as a worker does before it waits
    yield tuple(made)
    for broker in made:
        broker.close()


def test_a_woken_consumer_gets_its_message_with_the_wake_up(
    brokers: tuple[RedisBroker, ...],
) -> None:
    waiter, sender = brokers
    fd = waiter.wait_start(["celery"], 5.0, reserve_for=("c1", 4))
    assert fd is not None
    assert select.select([fd], [], [], 0.2)[0] == []  # nothing yet: it blocks
    sender.publish([OutgoingMessage("celery", b"hello")])
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    deliveries = waiter.wait_finish()
    assert [(d.queue, d.data) for d in deliveries] == [("celery", b"hello")]
    assert waiter.held("c1") == [deliveries[0].tag]
    assert sender.queue_sizes(["celery"]) == {"celery": 0}


def test_a_wait_given_up_after_its_reserve_ran_loses_nothing(
    brokers: tuple[RedisBroker, ...],
) -> None:
    waiter, sender = brokers
    fd = waiter.wait_start(["celery"], 5.0, reserve_for=("c1", 4))
    assert fd is not None
    sender.publish([OutgoingMessage("celery", b"hello")])
    wait_until(lambda: sender.held("c1"), 5)  # reserved, its reply never read
    waiter.wait_abort()
    assert sender.unregister("c1") == 1  # what a worker does on its way out
    assert sender.queue_sizes(["celery"]) == {"celery": 1}
    assert [d.data for d in sender.reserve("c2", ["celery"], 4)] == [b"hello"]


def test_a_wait_that_times_out_reserves_nothing(brokers: tuple[RedisBroker, ...]) -> None:
    waiter, _ = brokers
    fd = waiter.wait_start(["celery"], 0.05, reserve_for=("c1", 4))
    assert fd is not None
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    assert waiter.wait_finish() == []
    assert waiter.held("c1") == []


def test_after_a_redis_restart_the_chained_reserve_leaves_the_message_queued(
    brokers: tuple[RedisBroker, ...], redis_server: RedisServer
) -> None:
    waiter, sender = brokers
    sender.client.script_flush()  # what a restarted Redis has forgotten
    fd = waiter.wait_start(["celery"], 5.0, reserve_for=("c1", 4))
    assert fd is not None
    sender.publish([OutgoingMessage("celery", b"hello")])
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    assert waiter.wait_finish() == []  # NOSCRIPT: nothing taken, nothing lost
    assert [d.data for d in waiter.reserve("c1", ["celery"], 4)] == [b"hello"]


def test_a_reserve_started_without_waiting_brings_its_messages_when_readable(
    brokers: tuple[RedisBroker, ...],
) -> None:
    waiter, sender = brokers
    sender.publish([OutgoingMessage("celery", f"m{i}".encode()) for i in range(3)])
    fd = waiter.reserve_start("c1", ["celery"], 2)
    assert fd is not None
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    deliveries = waiter.wait_finish()
    assert [d.data for d in deliveries] == [b"m0", b"m1"]
    assert sorted(waiter.held("c1")) == sorted(d.tag for d in deliveries)
    assert sender.queue_sizes(["celery"]) == {"celery": 1}


def test_a_reserve_started_after_a_redis_restart_reloads_its_script(
    brokers: tuple[RedisBroker, ...],
) -> None:
    waiter, sender = brokers
    sender.publish([OutgoingMessage("celery", b"hello")])
    sender.client.script_flush()
    fd = waiter.reserve_start("c1", ["celery"], 4)
    assert fd is not None
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    assert waiter.wait_finish() == []  # NOSCRIPT: nothing taken
    fd = waiter.reserve_start("c1", ["celery"], 4)  # the script is back
    assert fd is not None and select.select([fd], [], [], 5.0)[0] == [fd]
    assert [d.data for d in waiter.wait_finish()] == [b"hello"]
