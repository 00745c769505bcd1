"""``get()``'s wait on a real redis-server: woken by the store, told every newer record and
no older one, not kept waiting by a ready record whose stream expired, and the connection
it waited on is left with no reply unread whatever happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import states
from minicelery.backend.redis import RedisBackend
from minicelery.exceptions import TimeoutError
from minicelery.redislayer.connect import client_from_url
from minicelery.trace import build_meta
from tests.helpers import RedisServer, wait_until


@pytest.fixture
def backend(redis_server: RedisServer, key_prefix: str) -> Iterator[RedisBackend]:
    made = RedisBackend(client_from_url(redis_server.url), key_prefix)
    yield made
    made.close()


def _store_later(backend: RedisBackend, task_id: str, *metas: dict[str, Any]) -> threading.Timer:
    other = RedisBackend(backend.client, backend.keys.prefix)

    def store() -> None:
        for meta in metas:
            other.store(task_id, meta)

    timer = threading.Timer(0.2, store)
    timer.start()
    return timer


def _connection_still_in_step(backend: RedisBackend) -> None:
    """Replies read on the waiting thread's connection are the replies to its commands."""
    backend.store("in-step", build_meta("in-step", states.SUCCESS, 7))
    assert backend.get_meta("in-step")["result"] == 7
    assert backend.fast.execute("PING") in (b"PONG", "PONG", True)


def test_a_record_stored_while_waiting_wakes_the_waiter(backend: RedisBackend) -> None:
    timer = _store_later(backend, "t1", build_meta("t1", states.SUCCESS, 3))
    assert backend.wait_for("t1", 5)["result"] == 3
    timer.join()
    _connection_still_in_step(backend)


def test_every_newer_record_is_told_and_older_ones_are_not(backend: RedisBackend) -> None:
    backend.store("t2", build_meta("t2", "PROGRESS", {"done": 1}))
    timer = _store_later(
        backend, "t2", build_meta("t2", "PROGRESS", {"done": 2}),
        build_meta("t2", states.SUCCESS, 9),
    )  # fmt: skip
    seen: list[Any] = []
    meta = backend.wait_for("t2", 5, on_message=lambda m: seen.append(m["result"]))
    timer.join()
    assert meta["result"] == 9
    assert seen == [{"done": 1}, {"done": 2}, 9]
    _connection_still_in_step(backend)


def test_a_ready_record_whose_stream_expired_is_returned_at_once(
    backend: RedisBackend,
) -> None:
    backend.store("t3", build_meta("t3", states.SUCCESS, 4))
    backend.client.delete(backend.notify_key("t3"))  # as after a minute
    started = time.monotonic()
    assert backend.wait_for("t3", 5)["result"] == 4
    assert time.monotonic() - started < 0.5  # not after the blocking read's second
    _connection_still_in_step(backend)


def test_a_ready_record_with_its_stream_is_returned_at_once(backend: RedisBackend) -> None:
    backend.store("t4", build_meta("t4", states.SUCCESS, 5))
    started = time.monotonic()
    assert backend.wait_for("t4", 5)["result"] == 5
    assert time.monotonic() - started < 0.5
    _connection_still_in_step(backend)


def test_a_wait_times_out_and_leaves_the_connection_in_step(backend: RedisBackend) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        backend.wait_for("t5", 0.3)
    assert 0.25 < time.monotonic() - started < 2
    _connection_still_in_step(backend)


def test_an_on_message_that_raises_leaves_the_connection_in_step(
    backend: RedisBackend,
) -> None:
    backend.store("t6", build_meta("t6", states.STARTED, None))

    def refuse(meta: dict[str, Any]) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        backend.wait_for("t6", 5, on_message=refuse)
    _connection_still_in_step(backend)


def test_a_record_stored_while_the_waiters_flag_had_lapsed_still_reaches_it(
    backend: RedisBackend,
) -> None:
    """A record stored unstreamed (no flag: it had lapsed) is appended to the stream by the
    waiter's next round trip, at most a blocking slice later."""
    backend.store("t7", build_meta("t7", states.STARTED, None))
    seen: list[str] = []

    def store_unstreamed() -> None:
        wait_until(lambda: bool(seen), 5)
        backend.client.delete(backend.keys.result_waiting("t7"))
        RedisBackend(backend.client, backend.keys.prefix).store(
            "t7", build_meta("t7", states.SUCCESS, 8)
        )

    storer = threading.Thread(target=store_unstreamed)
    storer.start()
    started = time.monotonic()
    meta = backend.wait_for("t7", 5, on_message=lambda m: seen.append(m["status"]))
    storer.join()
    assert meta["result"] == 8 and seen == [states.STARTED, states.SUCCESS]
    assert time.monotonic() - started < 2.5
    assert len(backend.client.xrange(backend.notify_key("t7"))) == 2
    _connection_still_in_step(backend)


def test_a_wait_after_redis_forgot_its_script_does_not_sit_out_its_block(
    backend: RedisBackend,
) -> None:
    """The wait script answered NOSCRIPT (Redis restarted, scripts flushed): the blocking
    read behind it is abandoned with its connection and the wait goes again at once."""
    backend.store("t9", build_meta("t9", states.SUCCESS, 1))
    assert backend.wait_for("t9", 5)["result"] == 1  # the script is known from now on
    backend.client.script_flush()
    backend.store("t8", build_meta("t8", states.SUCCESS, 2))
    started = time.monotonic()
    assert backend.wait_for("t8", 5)["result"] == 2
    assert time.monotonic() - started < 0.5
    _connection_still_in_step(backend)
