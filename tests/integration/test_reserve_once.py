"""A consuming child's round trip (results, acks, then a reserve) whose reply does not come in
time is never sent again. Redis that hung still runs what it had read when it resumes, on the
connection given up, so each copy of the reserve would take a batch into the child's hold that
nobody runs while the child lives (the chaos soak lost tasks this way). The caller is told
instead, and looks at its hold once Redis answers."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from minicelery.broker.redis import RedisBroker
from minicelery.exceptions import OperationalError
from minicelery.redislayer.respclient import RespClient, options_from_url
from tests.helpers import RedisServer

TIMEOUT = 0.3  # the client's socket timeout here (the default is 10 s)
HANG = 3.0  # how long Redis stays stopped at most: long enough for every retry of old


@pytest.mark.timeout(30)
def test_a_reserve_whose_reply_timed_out_is_not_sent_again(
    private_redis: RedisServer, key_prefix: str
) -> None:
    url = private_redis.url
    options = options_from_url(url, socket_timeout=TIMEOUT)
    assert options is not None
    client = RespClient(url, options)
    broker = RedisBroker(client, key_prefix)
    try:
        for i in range(12):
            broker.publish_now("celery", f"message {i}".encode())
        assert broker.settle_and_reserve([], "warm-up", ["celery"], 0) == []
        outcome: dict[str, object] = {}

        def trip() -> None:
            try:
                outcome["got"] = broker.settle_and_reserve([], "child", ["celery"], 4)
            except OperationalError as exc:
                outcome["error"] = exc

        os.kill(private_redis.pid, signal.SIGSTOP)
        try:
            thread = threading.Thread(target=trip)
            thread.start()
            thread.join(HANG)
        finally:
            os.kill(private_redis.pid, signal.SIGCONT)
        thread.join(10)
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), OperationalError), outcome
        # What Redis had read before it stopped runs as it resumes, before any command of
        # a connection made afterwards: the one reserve sent, and no other.
        assert len(broker.held("child")) == 4
        assert broker.client.llen(broker.keys.queue("celery", 0)) == 8
    finally:
        client.close()
