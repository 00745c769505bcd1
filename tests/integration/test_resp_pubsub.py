"""Pub/sub and ZRANGEBYSCORE on the package's own Redis client against a real redis-server:
what a worker's main process needs for remote control (subscribe, messages in order, a
timeout, a reconnect that subscribes again, close) without redis-py."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import redis

from minicelery.broker.mailbox import Mailbox
from minicelery.redislayer import errors, resppubsub
from minicelery.redislayer.connect import client_for_url
from minicelery.redislayer.keys import KeySchema
from minicelery.redislayer.respclient import RespClient
from minicelery.redislayer.resppubsub import PubSub
from tests.helpers import RedisServer, wait_until


def listeners(server: RedisServer, channel: str) -> int:
    with server.client() as admin:
        return int(admin.pubsub_numsub(channel)[0][1])


def test_messages_arrive_in_order(
    rc: RespClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    channel = f"{key_prefix}:ch"
    pubsub = rc.pubsub()
    assert isinstance(pubsub, PubSub)
    pubsub.subscribe(channel)
    first = pubsub.get_message(timeout=5)
    assert first == {"type": "subscribe", "pattern": None, "channel": channel.encode(), "data": 1}
    sent = [b"%d" % i for i in range(200)] + [b"\r\n\0" * 1000]
    for data in sent:
        redis_client.publish(channel, data)
    got = [pubsub.get_message(timeout=5) for _ in sent]
    assert [m["data"] for m in got if m] == sent
    assert {m["type"] for m in got if m} == {"message"}
    assert rc._fallback is None  # redis-py was never needed
    pubsub.close()


def test_ignored_confirmations_patterns_and_unsubscribe(
    rc: RespClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    pubsub = rc.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{key_prefix}:a", f"{key_prefix}:b")
    pubsub.psubscribe(f"{key_prefix}:p.*")
    wait_until(lambda: redis_client.publish(f"{key_prefix}:p.1", b"x") == 1)
    message = pubsub.get_message(timeout=5)  # the subscribe confirmations are skipped
    assert message == {
        "type": "pmessage", "pattern": f"{key_prefix}:p.*".encode(),
        "channel": f"{key_prefix}:p.1".encode(), "data": b"x",
    }  # fmt: skip
    pubsub.unsubscribe(f"{key_prefix}:a")
    wait_until(lambda: redis_client.publish(f"{key_prefix}:a", b"gone") == 0)
    redis_client.publish(f"{key_prefix}:b", b"kept")
    assert pubsub.get_message(timeout=5)["data"] == b"kept"  # type: ignore[index]
    assert list(pubsub.channels) == [f"{key_prefix}:b".encode()]
    pubsub.close()


def test_a_timeout_returns_none(rc: RespClient, key_prefix: str) -> None:
    pubsub = rc.pubsub(ignore_subscribe_messages=True)
    assert pubsub.get_message(timeout=0.05) is None  # nothing subscribed yet
    pubsub.subscribe(f"{key_prefix}:quiet")
    started = time.monotonic()
    assert pubsub.get_message(timeout=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2
    assert pubsub.get_message(timeout=0) is None
    pubsub.close()


def test_close_unsubscribes_and_forgets_the_socket(
    rc: RespClient, redis_server: RedisServer, key_prefix: str
) -> None:
    channel = f"{key_prefix}:closing"
    pubsub = rc.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    assert pubsub.connection is not None and pubsub.connection._sock is not None
    assert listeners(redis_server, channel) == 1
    pubsub.close()
    assert pubsub.connection is None and not pubsub.subscribed
    wait_until(lambda: listeners(redis_server, channel) == 0)
    assert pubsub.get_message(timeout=0.05) is None


def test_a_redis_restart_subscribes_again(private_redis: RedisServer) -> None:
    client = client_for_url(private_redis.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ch")
    private_redis.stop()
    with pytest.raises(errors.REDIS_ERRORS):  # Redis away: said, not hidden
        pubsub.get_message(timeout=1)
    private_redis.start()
    assert pubsub.get_message(timeout=0.2) is None  # reconnects and subscribes again
    wait_until(lambda: listeners(private_redis, "ch") == 1)
    with private_redis.client() as publisher:
        publisher.publish("ch", b"after")
    assert pubsub.get_message(timeout=5)["data"] == b"after"  # type: ignore[index]
    # A restart between two reads: noticed on the next read, which subscribes again.
    private_redis.stop()
    private_redis.start()
    with private_redis.client() as publisher:
        wait_until(lambda: pubsub.get_message(timeout=0.05) is None and listeners(
            private_redis, "ch") == 1)  # fmt: skip
        publisher.publish("ch", b"again")
    assert pubsub.get_message(timeout=5)["data"] == b"again"  # type: ignore[index]
    pubsub.close()
    client.close()


def test_a_quiet_subscription_is_health_checked(
    rc: RespClient, redis_server: RedisServer, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resppubsub, "HEALTH_CHECK", 0.1)
    named = dataclasses.replace(rc.options, client_name=f"{key_prefix}-sub")
    pubsub = PubSub(named, ignore_subscribe_messages=True)
    pubsub.subscribe(f"{key_prefix}:quiet")

    def pinged() -> bool:
        assert pubsub.get_message(timeout=0.05) is None  # the pong is not a message
        with redis_server.client() as admin:
            mine = [c for c in admin.client_list() if c["name"] == f"{key_prefix}-sub"]
        return bool(mine) and mine[0]["cmd"] == "ping"

    wait_until(pinged, timeout=5)
    pubsub.close()


def test_a_waiting_reader_holds_no_other_thread_off(
    rc: RespClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    """The remote-control thread waits in ``get_message`` while the main loop drains with
    ``timeout=0``: the drain does not wait for the other's timeout, and every message is
    taken exactly once by one of them."""
    channel = f"{key_prefix}:shared"
    pubsub = rc.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    taken: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=5)
            if message is not None:
                taken.append(message["data"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            redis_client.publish(channel, b"%d" % i)
            started = time.monotonic()
            while (message := pubsub.get_message(timeout=0)) is not None:
                taken.append(message["data"])
            assert time.monotonic() - started < 1
        wait_until(lambda: len(taken) >= 100)
    finally:
        stop.set()
        redis_client.publish(channel, b"last")
        thread.join(10)
    assert sorted(set(taken) - {b"last"}, key=int) == [b"%d" % i for i in range(100)]
    assert len(taken) - taken.count(b"last") == 100
    pubsub.close()


def test_zrangebyscore_shapes_replies_as_redis_py(rc: RespClient, key_prefix: str) -> None:
    key = f"{key_prefix}:z"
    rc.zadd(key, {"a": 1, "b": 2.5, "c": 3})
    assert rc.zrangebyscore(key, 2, "+inf") == [b"b", b"c"]
    assert rc.zrangebyscore(key, "-inf", "+inf", withscores=True) == [
        (b"a", 1.0), (b"b", 2.5), (b"c", 3.0)
    ]  # fmt: skip
    assert rc.zrangebyscore(key, "(1", 3, 1, 1, withscores=True) == [(b"c", 3.0)]
    pipe = rc.pipeline(transaction=False)
    pipe.zrangebyscore(key, 3, 3, withscores=True).zrange(key, 0, 0, withscores=True)
    assert pipe.execute() == [[(b"c", 3.0)], [(b"a", 1.0)]]
    assert rc._fallback is None


def test_the_mailbox_listens_and_reads_revokes_without_redis_py(
    rc: RespClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    keys = KeySchema(key_prefix)
    mailbox = Mailbox(rc, keys)
    listener = mailbox.listen()
    assert isinstance(listener.fileno(), int)
    redis_client.zadd(keys.revoked, {"gone": time.time() - 1, "kept": time.time() + 60})
    assert list(mailbox.revoked()) == ["kept"]
    redis_client.publish(keys.control, b"command")
    assert listener.get(5) == b"command"
    assert listener.get(0.05) is None
    listener.close()
    assert rc._fallback is None
