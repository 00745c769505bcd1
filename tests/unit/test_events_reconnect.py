"""``minicelery events`` reads on through a lost connection to Redis (a restart, a failover):
it says so once, tries again with a pause, and misses no event the stream still holds."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery
from minicelery.cli.events import Reader
from minicelery.exceptions import OperationalError


def test_a_lost_connection_is_said_once_and_reading_goes_on(
    app: Celery, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[dict[str, Any]] = []
    receiver = app.events.Receiver(handlers={"*": seen.append})
    read = receiver.stream.read
    failures = iter([True, True, False])

    def flaky_read(after: bytes, timeout: float) -> list[tuple[bytes, bytes]]:
        if next(failures, False):
            raise OperationalError("reading events: Redis is unreachable")
        return read(after, timeout)

    receiver.stream.read = flaky_read  # type: ignore[method-assign]
    app.events.Dispatcher(hostname="w1@host").send("worker-online")
    reader = Reader(receiver)

    reader.drain(0.1)
    reader.drain(0.1)
    assert seen == [] and reader.pause > 0
    reader.drain(1.0)

    assert [e["type"] for e in seen] == ["worker-online"]  # sent while Redis was away
    assert reader.pause == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "-> minicelery events: connection lost (reading events: Redis is unreachable); "
        "reconnecting",
        "-> minicelery events: reconnected",
    ]


class _SlotMap:
    def __init__(self) -> None:
        self.asked = 0

    def initialize(self) -> None:
        self.asked += 1


def test_a_failed_read_on_a_cluster_asks_for_the_slot_map_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py can keep routing reads to a master that died; the next read must not."""
    import redis
    from redis.cluster import RedisCluster

    from minicelery.events.stream import EventStream
    from minicelery.redislayer import errors
    from minicelery.redislayer.keys import KeySchema

    errors.adopt_redis_py()
    monkeypatch.setattr(RedisCluster, "__del__", lambda self: None, raising=False)
    client = RedisCluster.__new__(RedisCluster)  # no nodes needed: only its kind matters
    client.nodes_manager = _SlotMap()

    def xread(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:7000. Connection refused.")

    client.xread = xread  # type: ignore[method-assign]
    stream = EventStream(client, KeySchema("p"), fast=object())
    with pytest.raises(OperationalError, match="reading events: Redis is unreachable"):
        stream.read(b"0-0", 0.1)
    assert client.nodes_manager.asked == 1
