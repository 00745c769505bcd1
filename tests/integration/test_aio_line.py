"""The asyncio client's own connection for a lone publish (``redislayer.aioresp``), against
a real redis-server: it is the one a lone ``adelay()`` uses, a script Redis forgot is sent
again, a connection the server closed is opened again, and errors reach the sender as
minicelery's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from minicelery import Celery
from minicelery.exceptions import OperationalError
from minicelery.redislayer import errors
from minicelery.redislayer.aioresp import AioLine, line_for
from tests.helpers import LOOPBACK, RedisServer, free_port
from tests.integration.apps import basic


def run(app: Celery, coro: Any) -> Any:
    async def main() -> Any:
        try:
            return await coro
        finally:
            await app.aio.aclose()

    return asyncio.run(main())


def queued(app: Celery) -> int:
    return int(app.broker.client.llen(app.broker.keys.queue("celery", 0)))  # type: ignore[attr-defined]


def test_line_for_takes_only_the_urls_it_speaks(redis_server: RedisServer) -> None:
    assert isinstance(line_for(redis_server.url), AioLine)
    assert isinstance(line_for("unix:///tmp/redis.sock?db=2"), AioLine)
    assert line_for("rediss://127.0.0.1:6379/0") is None
    assert line_for("memory://") is None
    assert line_for(redis_server.url + "?decode_responses=True") is None


def test_a_lone_send_goes_on_the_line_and_a_forgotten_script_is_sent_again(
    app: Celery, client: redis.Redis
) -> None:
    async def scenario() -> tuple[Any, Any]:
        await basic.add.adelay(1, 1)
        line = app.aio.publisher.line
        first_id = await line.execute("CLIENT", "ID")  # the line is open: it published
        client.script_flush()
        await basic.add.adelay(2, 2)  # NOSCRIPT on the line: EVAL, then on as before
        return first_id, await line.execute("CLIENT", "ID")

    first_id, second_id = run(app, scenario())
    assert first_id == second_id  # the same connection, not a new one after NOSCRIPT
    assert queued(app) == 2


def test_a_connection_the_server_closed_is_opened_again(
    app: Celery, client: redis.Redis
) -> None:
    async def scenario() -> tuple[Any, Any]:
        await basic.add.adelay(1, 1)
        line = app.aio.publisher.line
        killed = await line.execute("CLIENT", "ID")
        client.client_kill_filter(_id=killed)
        await basic.add.adelay(2, 2)  # written on the closed one or after it was noticed
        return killed, await line.execute("CLIENT", "ID")

    killed, now = run(app, scenario())
    assert now != killed
    assert queued(app) == 2


def test_an_error_reply_is_raised_as_ours(redis_server: RedisServer, client: redis.Redis,
                                          key_prefix: str) -> None:  # fmt: skip
    key = f"{key_prefix}:text"
    client.set(key, "not a number")
    line = line_for(redis_server.url)
    assert line is not None

    async def scenario() -> None:
        try:
            await line.execute("INCR", key)
        finally:
            await line.aclose()

    with pytest.raises(errors.ReplyError, match="not an integer"):
        asyncio.run(scenario())


def test_a_publish_to_a_key_of_the_wrong_type_raises_operational_error(
    app: Celery, client: redis.Redis
) -> None:
    client.set(app.broker.keys.queue("celery", 0), "a string")  # type: ignore[attr-defined]
    with pytest.raises(OperationalError, match=r"publish: Redis error .*WRONGTYPE"):
        run(app, basic.add.adelay(1, 1))


def test_an_unreachable_redis_raises_operational_error() -> None:
    app = Celery("unreachable", broker=f"redis://{LOOPBACK}:{free_port()}/0")
    with pytest.raises(OperationalError, match="publish: Redis is unreachable"):
        run(app, app.asend_task("noop"))


def test_sends_made_during_a_lone_publish_are_flushed_together_after_it(app: Celery) -> None:
    """The first of fifty concurrent sends publishes alone on the line; the other 49,
    made while it waits for its reply, go in one flush after it."""

    async def scenario() -> int:
        await asyncio.gather(*(basic.add.adelay(i, 0) for i in range(50)))
        return int(app.aio.publisher.flushes)

    assert run(app, scenario()) == 2
    assert queued(app) == 50


def test_a_new_connection_selects_the_database_of_its_url(
    redis_server: RedisServer, key_prefix: str
) -> None:
    line = line_for(redis_server.url.rsplit("/", 1)[0] + "/3?client_name=aioline")
    assert line is not None
    key = f"{key_prefix}:in-db-3"

    async def scenario() -> Any:
        try:
            await line.execute("SET", key, "here")
            return await line.execute("CLIENT", "GETNAME")
        finally:
            await line.aclose()

    assert asyncio.run(scenario()) == b"aioline"
    with redis_server.client(3) as db3, redis_server.client(0) as db0:
        assert db3.get(key) == b"here"
        assert db0.get(key) is None
        db3.delete(key)
