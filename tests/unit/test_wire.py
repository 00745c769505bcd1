"""Commands packed by minicelery's fast path are byte for byte what redis-py would send."""

from __future__ import annotations

from typing import Any

import pytest
from redis.connection import Connection

from minicelery.broker import OutgoingMessage
from minicelery.broker.redis import RedisBroker
from minicelery.redislayer.memory import memory_client
from minicelery.redislayer.wire import (
    bulk_values,
    pack_args,
    pack_commands,
    pack_head,
    script_form,
    script_head,
)

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "f" * 40, 3, "{p}:q:celery:0", "{p}:wake:celery", b"\x00\xff\r\n", 0, 9),
    ("SET", "ünïcode", 1.5, "PX", 10**20),
    ("XREAD", "BLOCK", 1000, "STREAMS", "{p}:notify:id", b"0-0"),
    ("HDEL", "{p}:hold:w", *(str(i) for i in range(50))),
    ("SET", "k", -3.25e-7, memoryview(b"mv")),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_packed_like_redis_py(command: tuple[Any, ...]) -> None:
    expected = b"".join(Connection().pack_command(*command))
    assert pack_commands([command]) == expected


def test_several_commands_are_concatenated() -> None:
    expected = b"".join(b"".join(Connection().pack_command(*c)) for c in COMMANDS)
    assert pack_commands(COMMANDS) == expected


def test_values_redis_cannot_take_are_refused() -> None:
    with pytest.raises(TypeError):
        pack_commands([("SET", "k", None)])
    with pytest.raises(TypeError):
        pack_commands([("SET", "k", True)])


class Name(str):
    """A str subclass, as some applications pass for keys."""


def test_subclasses_of_text_and_bytes_pack_like_their_base() -> None:
    command = ("SET", Name("key"), bytearray(b"value"))
    assert pack_commands([command]) == b"".join(Connection().pack_command(*command))


def test_a_script_call_packed_from_its_head_is_the_whole_command() -> None:
    sha, keys, args = "f" * 40, ("{p}:q:celery:0", "{p}:wake:celery"), (b"\x00\r\n", 9)
    expected = b"".join(Connection().pack_command("EVALSHA", sha, 2, *keys, *args))
    assert script_head(sha, keys, len(args)) + pack_args(args) == expected
    assert pack_head(7, ("EVALSHA", sha, 2, *keys)) + pack_args(args) == expected


@pytest.mark.parametrize(
    "args",
    [(b"\x00%s%d\r\n", 9), ("ünï%s", 1.5, -3, Name("n")), (bytearray(b"%b"), memoryview(b"m"))],
)
def test_a_script_call_formatted_from_its_form_is_the_whole_command(args: tuple[Any, ...]) -> None:
    sha, keys = "f" * 40, ("{p}:q:%s:0", "{p}:wake:%d%%")  # a % in a key is no format
    expected = b"".join(Connection().pack_command("EVALSHA", sha, 2, *keys, *args))
    assert script_form(sha, keys, len(args)) % bulk_values(args) == expected
    with pytest.raises(TypeError):
        bulk_values((None,))


def test_a_publish_runs_again_after_redis_forgot_its_script(
    broker: RedisBroker,
) -> None:
    broker.publish([OutgoingMessage("celery", b"first")])
    broker.client.script_flush()  # what a restarted Redis has forgotten
    broker.publish([OutgoingMessage("celery", b"second")])
    assert [d.data for d in broker.reserve("c", ["celery"], 10)] == [b"first", b"second"]


def test_a_round_trip_acknowledges_even_when_redis_forgot_the_reserve_script(
    broker: RedisBroker,
) -> None:
    """The reserve script carries a consuming child's acks: a restarted Redis that forgot
    it must not drop them (the messages would go back to the queue and run twice)."""
    broker.publish([OutgoingMessage("celery", b"one"), OutgoingMessage("celery", b"two")])
    tags = [d.tag for d in broker.reserve("c", ["celery"], 10)]
    broker.client.script_flush()
    assert broker.settle_and_reserve([], "c", ["celery"], 4, tags) == []
    assert broker.held("c") == []
    assert broker.reserve("c", ["celery"], 4) == []  # the script is back, nothing left


@pytest.mark.parametrize("ack", [(), ("7",), tuple(str(n) for n in range(40))])
def test_a_reserve_packed_from_its_cached_body_is_the_command(ack: tuple[str, ...]) -> None:
    broker = RedisBroker(memory_client("memory://wire-test"), "p")
    call = ("f" * 40, "w/1", ("celery", "other"), 4)
    for beat in (1, 0):  # the heartbeat flag is part of the cached body
        expected = pack_commands([broker._reserve_command(*call, ack, beat)])
        assert broker._packed_reserve(*call, ack, beat) == expected
        assert broker._packed_reserve(*call, ack, beat) == expected  # from the cache
