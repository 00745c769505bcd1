"""``delay()`` on a real redis-server: every call is confirmed before it returns (the message
is on its queue), a message Redis refuses is an error at the call, and a Redis that forgot
the publish script (restarted, flushed) is served again."""

from __future__ import annotations

import os

import pytest
import redis

from minicelery import Celery
from minicelery.exceptions import OperationalError
from minicelery.message import decode_message
from minicelery.utils import uuid
from tests.integration.apps import basic


@pytest.fixture(autouse=True)
def plain_path_only(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    """These calls have no options: they must not need the general path."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("delay() without options took the general path")

    monkeypatch.setattr(app, "prepare_message", refuse)


def queue_length(app: Celery, client: redis.Redis) -> int:
    return int(client.llen(app.broker.keys.queue("celery", 0)))


def test_each_delay_is_on_its_queue_when_it_returns(app: Celery, client: redis.Redis) -> None:
    ids = []
    for i in range(50):
        ids.append(basic.add.delay(i, i).id)
        assert queue_length(app, client) == i + 1  # confirmed: already there
    queued = client.lrange(app.broker.keys.queue("celery", 0), 0, -1)
    assert [decode_message(data).id for data in queued] == ids


def test_a_message_redis_refuses_is_an_error_at_the_call(app: Celery, client: redis.Redis) -> None:
    client.set(app.broker.keys.queue("celery", 0), b"not a list")
    with pytest.raises(OperationalError, match="publish: Redis error"):
        basic.add.delay(1, 2)


def test_delay_after_redis_forgot_the_publish_script(app: Celery, client: redis.Redis) -> None:
    basic.add.delay(1, 1)
    client.script_flush()  # what a restarted Redis has forgotten
    basic.add.delay(2, 2)
    basic.add.delay(3, 3)
    assert queue_length(app, client) == 3


def test_a_forked_child_never_takes_its_parents_next_task_ids() -> None:
    uuid()  # the parent has ids drawn ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, " ".join(uuid() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    theirs = set(os.read(read, 1000).decode().split())
    os.close(read)
    os.waitpid(child, 0)
    ours = {uuid() for _ in range(5)}
    assert len(theirs) == 5 and not theirs & ours
