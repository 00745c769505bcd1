"""The package's own Redis client (``redislayer.resp``/``respclient``) against a real
redis-server: every reply type, pipelines, NOSCRIPT, AUTH and SELECT, reconnecting, timeouts,
fork safety, and what it hands to redis-py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from minicelery.redislayer import errors
from minicelery.redislayer.connect import client_for_url
from minicelery.redislayer.resp import Connection, Options
from minicelery.redislayer.respclient import RespClient, options_from_url
from minicelery.redislayer.respwait import CROWDED, SPIN_PAUSE
from minicelery.redislayer.wire import FastPath, current_pid, pack_commands
from tests.helpers import RedisServer
from tests.integration.test_urls import unix_redis  # noqa: F401 - a fixture


def test_replies_of_every_type(rc: RespClient, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    connection = rc.connection_pool.get_connection()
    try:
        connection.send_command("SET", key, "v")
        assert connection.read_response() == b"OK"  # status
        connection.send_command("INCR", f"{key_prefix}:n")
        assert connection.read_response() == 1  # integer
        connection.send_command("GET", key)
        assert connection.read_response() == b"v"  # bulk
        connection.send_command("GET", f"{key_prefix}:none")
        assert connection.read_response() is None  # nil
        with pytest.raises(errors.ReplyError, match=r"^unknown command"):  # error, code stripped
            connection.send_command("NOSUCHCOMMAND")
            connection.read_response()
        nested = "return {1, {'a', {2, false}}, {}, redis.error_reply('inner')}"
        connection.send_command("EVAL", nested, 0)
        reply = connection.read_response()
        assert reply[:3] == [1, [b"a", [2, None]], []]
        assert isinstance(reply[3], errors.ReplyError) and str(reply[3]) == "inner"
    finally:
        rc.connection_pool.release(connection)


def test_large_and_binary_values_round_trip(rc: RespClient, key_prefix: str) -> None:
    big = os.urandom(3_000_000) + b"\r\n\0"
    rc.set(f"{key_prefix}:big", big)
    assert rc.get(f"{key_prefix}:big") == big
    assert rc.execute_command("STRLEN", f"{key_prefix}:big") == len(big)


def test_an_array_longer_than_one_read(rc: RespClient, key_prefix: str) -> None:
    key = f"{key_prefix}:list"
    values = [b"%d-" % i + b"v" * (i % 200) for i in range(3000)]  # about 300 kB
    rc.rpush(key, *values)
    assert rc.execute_command("LRANGE", key, 0, -1) == values


def test_command_methods_shape_replies_as_redis_py(rc: RespClient, key_prefix: str) -> None:
    key = f"{key_prefix}:h"
    assert rc.ping() is True
    assert rc.set(key + "s", 1, px=5000) is True and rc.set(key + "s", 2, nx=True) is None
    rc.execute_command("HSET", key, "a", 1, "b", 2)
    assert rc.hgetall(key) == {b"a": b"1", b"b": b"2"}
    assert rc.hmget(key, ["a", "x"]) == [b"1", None]
    rc.zadd(key + "z", {"m": 1.5})
    assert rc.zrange(key + "z", 0, -1, withscores=True) == [(b"m", 1.5)]
    rc.rpush(key + "l", b"x")
    assert rc.blpop([key + "l"], timeout=1) == (f"{key}l".encode(), b"x")
    assert rc.blpop([key + "l"], timeout=0.05) is None


def test_pipeline_with_an_error_in_the_middle(rc: RespClient, key_prefix: str) -> None:
    key = f"{key_prefix}:p"
    pipe = rc.pipeline(transaction=False)
    pipe.set(key, "text").incr(key).execute_command("APPEND", key, "!")
    replies = pipe.execute(raise_on_error=False)
    assert replies[0] is True and replies[2] == 5
    assert isinstance(replies[1], errors.ResponseError)
    pipe.incr(key).get(key)
    with pytest.raises(errors.ReplyError, match="not an integer"):
        pipe.execute()
    with rc.pipeline(transaction=True) as multi:  # an error at EXEC time: in place too
        multi.incr(key).get(key)
        failed, value = multi.execute(raise_on_error=False)
    assert isinstance(failed, errors.ReplyError) and value == b"text!"


def test_noscript_is_raised_and_a_script_loads_itself_again(
    rc: RespClient, key_prefix: str
) -> None:
    with pytest.raises(errors.NoScriptError):
        rc.evalsha("0" * 40, 0)
    script = rc.register_script("return redis.call('INCR', KEYS[1])")
    key = f"{key_prefix}:s"
    assert script(keys=[key]) == 1
    rc.execute_command("SCRIPT", "FLUSH")
    assert script(keys=[key]) == 2  # NOSCRIPT, loaded, run again
    rc.execute_command("SCRIPT", "FLUSH")
    pipe = rc.pipeline(transaction=False)
    script(keys=[key], client=pipe)
    assert pipe.execute() == [3]  # a pipeline loads what Redis lacks first


def test_auth_and_select_on_connect(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    admin.config_set("requirepass", "s3cret")
    admin = private_redis.client(password="s3cret")
    admin.execute_command("ACL", "SETUSER", "ann", "on", ">pw", "~*", "+@all")
    host = f"127.0.0.1:{private_redis.port}"
    refused = Connection(Options(host="127.0.0.1", port=private_redis.port, password="no"))
    for _ in range(2):  # and not left connected, unauthenticated, the second time
        with pytest.raises(errors.AuthenticationFailed):
            refused.send_command("PING")
    with pytest.raises(errors.AuthenticationFailed):
        RespClient("", Options(host="127.0.0.1", port=private_redis.port), retries=0).ping()
    for url, db in ((f"redis://:s3cret@{host}/3", 3), (f"redis://ann:pw@{host}?db=5", 5)):
        client = client_for_url(url)
        assert isinstance(client, RespClient)
        client.set("where", url)
        assert private_redis.client(db=db, password="s3cret").get("where") == url.encode()
        client.close()
    admin.close()


def test_a_unix_socket_with_a_database(unix_redis: Path) -> None:  # noqa: F811
    client = client_for_url(f"unix://{unix_redis}?db=3")
    assert isinstance(client, RespClient)
    client.set("where", "db3")
    with redis.Redis(unix_socket_path=str(unix_redis), db=3) as check:
        assert check.get("where") == b"db3"
    client.close()


def test_reconnects_after_the_server_restarts(private_redis: RedisServer) -> None:
    client = client_for_url(private_redis.url)
    fast = FastPath(client)
    assert client.ping() and fast.execute("SET", "k", "before") == b"OK"
    private_redis.stop()
    with pytest.raises(errors.REDIS_ERRORS):
        RespClient("", client.options, retries=0).ping()
    private_redis.start()
    assert client.ping() is True  # the pooled connection is dead: retried on a new one
    fast.execute("SET", "k", "after")  # its kept connection is dead: the client retries
    assert fast.execute("GET", "k") == b"after"
    client.close()


def test_a_silent_server_raises_our_timeout(redis_server: RedisServer, key_prefix: str) -> None:
    options = Options(host="127.0.0.1", port=redis_server.port, socket_timeout=0.2)
    connection = Connection(options)
    connection.send_command("BLPOP", f"{key_prefix}:empty", 5)
    with pytest.raises(errors.ReplyTimeout):
        connection.read_response()
    assert connection._sock is None  # dropped: a late reply must not answer the next command
    with pytest.raises(errors.REDIS_ERRORS):
        RespClient("", options, retries=1).blpop([f"{key_prefix}:empty"], timeout=1)


def test_await_reply_returns_when_the_reply_is_there_or_the_budget_is_spent(
    redis_server: RedisServer,
) -> None:
    connection = Connection(Options(host="127.0.0.1", port=redis_server.port))
    connection.send_command("PING")
    started = time.monotonic()
    connection.await_reply(5.0)
    assert time.monotonic() - started < 2.0  # the reply came: no need to spend 5 s
    assert connection.buffered() or connection.can_read(0)
    assert connection.read_response() == b"PONG"
    started = time.monotonic()
    connection.await_reply(0.05)  # nothing was sent: nothing comes
    assert time.monotonic() - started >= 0.05
    connection.send_command("PING")  # the connection is as it was
    assert connection.read_response() == b"PONG"


def test_replies_that_came_while_another_process_ran_are_then_awaited_asleep(
    redis_server: RedisServer,
) -> None:
    connection = Connection(Options(host="127.0.0.1", port=redis_server.port))
    lookout = connection._lookout
    for _ in range(CROWDED - 1):
        lookout.note_crowding(True)
    lookout.note_crowding(False)  # not in a row: a passing process, no sign
    assert lookout.pause == 0
    for _ in range(CROWDED):
        lookout.note_crowding(True)
    assert lookout.pause == SPIN_PAUSE
    connection.send_command("PING")
    connection.await_reply(5.0)  # returns at once: the reply is read asleep
    assert lookout.pause == SPIN_PAUSE - 1 and not connection._ready
    assert connection.read_response() == b"PONG"


def test_a_signal_during_await_reply_drops_the_connection(redis_server: RedisServer) -> None:
    connection = Connection(Options(host="127.0.0.1", port=redis_server.port))
    connection.send_command("BLPOP", "await-reply:none", 1)  # a reply not due for 1 s

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        with pytest.raises(KeyboardInterrupt):
            connection.await_reply(5.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert connection._sock is None  # the BLPOP's late reply must not answer the next command
    connection.send_command("PING")
    assert connection.read_response() == b"PONG"


@pytest.mark.parametrize("ours", [True, False])
def test_a_fast_path_command_that_spins_on_either_client(
    rc: RespClient, redis_server: RedisServer, key_prefix: str, ours: bool
) -> None:
    client = rc if ours else redis.Redis(port=redis_server.port)
    fast = FastPath(client)
    assert fast.execute("RPUSH", f"{key_prefix}:spun", "a", spin=0.01) == 1
    assert fast.execute("RPUSH", f"{key_prefix}:spun", "b", spin=0.01) == 2
    pipelined = [("RPUSH", f"{key_prefix}:spun", "c"), ("BLPOP", f"{key_prefix}:none", 0.05)]
    assert fast.pipeline(pipelined, spin=0.001) == [3, None]  # the second: after the spin
    client.close()


def test_a_forked_child_never_uses_its_parents_sockets(rc: RespClient) -> None:
    connection = rc.connection_pool.get_connection()
    connection.send_command("CLIENT", "ID")
    parent_id = int(connection.read_response())
    rc.connection_pool.release(connection)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            pooled = rc.execute_command("CLIENT", "ID")
            connection.send_command("CLIENT", "ID")  # the parent's object: reconnects
            kept = connection.read_response()
            os.write(write, f"{pooled} {kept}".encode())
        finally:
            os._exit(0)
    os.close(write)
    ids = [int(x) for x in os.read(read, 100).split()]
    os.close(read)
    os.waitpid(child, 0)
    assert len(ids) == 2 and parent_id not in ids
    assert int(rc.execute_command("CLIENT", "ID")) == parent_id  # the parent's still works


def test_a_forked_child_takes_a_fast_path_connection_of_its_own(rc: RespClient) -> None:
    fast = FastPath(rc)
    parent_id = int(fast.execute("CLIENT", "ID", spin=0.01))
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(
                write, f"{current_pid() == os.getpid()} {fast.execute('CLIENT', 'ID')}".encode()
            )
        finally:
            os._exit(0)
    os.close(write)
    same_pid, child_id = os.read(read, 100).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert same_pid == "True" and int(child_id) != parent_id
    assert int(fast.execute("CLIENT", "ID")) == parent_id  # the parent's is still its own


def test_what_ours_lacks_goes_to_redis_py(rc: RespClient, key_prefix: str) -> None:
    key = f"{key_prefix}:f"
    assert "redis_version" in rc.info("server")  # redis-py's, made on demand
    pipe = rc.pipeline(transaction=False)
    pipe.set(key, 1).sadd(key + "set", "a").incr(key)  # sadd: the rest moves to redis-py
    assert pipe.execute() == [True, 1, 2]
    assert isinstance(redis.ConnectionError(), errors.REDIS_ERRORS)  # its errors are caught
    # A method of ours called with an option it lacks: that call is redis-py's.
    assert rc.zadd(key + "z", {"a": 1}, nx=True) == 1 and rc.zadd(key + "z", {"a": 2}, nx=True) == 0
    assert rc.zrange(key + "z", 0, -1, True, withscores=True) == [(b"a", 1.0)]  # desc
    pipe = rc.pipeline(transaction=True)
    pipe.incr(key).zadd(key + "z", {"b": 3}, nx=True).zcard(key + "z")
    assert pipe.execute() == [3, 1, 2]


def test_urls_pick_the_client() -> None:
    assert options_from_url("redis://u:p%40ss@h:7000/2") == Options(
        host="h", port=7000, username="u", password="p@ss", db=2
    )
    assert options_from_url("unix:///tmp/r.sock?db=4&client_name=x") == Options(
        path="/tmp/r.sock", db=4, client_name="x"
    )
    assert options_from_url("redis://h/0?decode_responses=true") is None
    assert options_from_url("rediss://h/0") is None
    assert not isinstance(client_for_url("rediss://127.0.0.1:1/0"), RespClient)


@pytest.mark.parametrize("ours", [True, False])
def test_a_round_trip_in_two_writes_reads_every_reply_in_order(
    rc: RespClient, redis_server: RedisServer, key_prefix: str, ours: bool
) -> None:
    """A child's results are written before the reserve behind them is packed: the
    replies of both writes come back in order, an error reply in its place."""
    client = rc if ours else redis.Redis(port=redis_server.port)
    fast = FastPath(client)
    key = f"{key_prefix}:two-writes"
    fast.send_ahead(pack_commands([("SET", key, "a"), ("LPUSH", key, "b")]))
    replies = fast.exchange(pack_commands([("GET", key), ("DEL", key)]), 4)
    assert isinstance(replies[1], errors.ResponseError)  # LPUSH on a string: WRONGTYPE
    assert replies[2:] == [b"a", 1]
    client.close()
