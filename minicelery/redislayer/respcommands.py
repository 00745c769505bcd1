"""The command methods of our Redis client (:mod:`.respclient`) and its pipelines, with
redis-py's signatures and reply shapes, for the commands the package calls by name."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

Callback = Callable[[Any], Any]


def _pairs(reply: Any) -> list[tuple[Any, float]]:
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _text(reply: Any) -> Any:
    return reply.decode() if isinstance(reply, bytes) else reply


#: Replies shaped as redis-py (RESP2, bytes) shapes them; the rest are returned raw.
CALLBACKS: dict[str, Callback] = {
    "PING": lambda r: r == b"PONG",
    "SET": lambda r: r == b"OK" or (None if r is None else r),
    "EXPIRE": bool,
    "PEXPIRE": bool,
    "BLPOP": lambda r: tuple(r) if r else None,
    "BRPOP": lambda r: tuple(r) if r else None,
    "HGETALL": lambda r: dict(zip(r[::2], r[1::2], strict=True)),
    "SCRIPT LOAD": _text,
    "SCRIPT EXISTS": lambda r: [bool(x) for x in r],
    "WITHSCORES": _pairs,  # ZRANGE or ZRANGEBYSCORE with scores: (member, score) pairs
}


def ours(func: F) -> F:
    """A command method ours answers when called with the arguments it names; called with
    any other (redis-py's ``nx=``, ``keepttl=``, ...), the call goes to redis-py as it is."""
    code = func.__code__
    names = set(code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount])
    most = None if code.co_flags & inspect.CO_VARARGS else code.co_argcount - 1
    name = func.__name__

    @functools.wraps(func)
    def method(self: Commands, *args: Any, **kwargs: Any) -> Any:
        if (most is not None and len(args) > most) or not kwargs.keys() <= names:
            return self._other(name, args, kwargs)
        return func(self, *args, **kwargs)

    return cast(F, method)


class Commands:
    """The command methods ours answers (redis-py's signatures, for what callers use)."""

    def _run(self, args: tuple[Any, ...], name: str | None = None) -> Any:
        raise NotImplementedError

    def _other(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """redis-py's method ``name`` called with ``args``/``kwargs``."""
        raise NotImplementedError

    @ours
    def get(self, name: Any) -> Any:
        return self._run(("GET", name))

    @ours
    def set(self, name: Any, value: Any, ex: Any = None, px: Any = None, nx: bool = False) -> Any:
        args: tuple[Any, ...] = ("SET", name, value)
        args += ("EX", int(ex)) if ex is not None else ()
        args += ("PX", int(px)) if px is not None else ()
        return self._run((*args, "NX") if nx else args, "SET")

    @ours
    def delete(self, *names: Any) -> Any:
        return self._run(("DEL", *names))

    @ours
    def exists(self, *names: Any) -> Any:
        return self._run(("EXISTS", *names))

    @ours
    def incr(self, name: Any, amount: int = 1) -> Any:
        return self._run(("INCRBY", name, amount))

    @ours
    def expire(self, name: Any, time: Any) -> Any:
        return self._run(("EXPIRE", name, int(time)), "EXPIRE")

    @ours
    def pexpire(self, name: Any, time: Any) -> Any:
        return self._run(("PEXPIRE", name, int(time)), "PEXPIRE")

    @ours
    def lpush(self, name: Any, *values: Any) -> Any:
        return self._run(("LPUSH", name, *values))

    @ours
    def rpush(self, name: Any, *values: Any) -> Any:
        return self._run(("RPUSH", name, *values))

    @ours
    def ltrim(self, name: Any, start: int, end: int) -> Any:
        return self._run(("LTRIM", name, start, end))

    @ours
    def llen(self, name: Any) -> Any:
        return self._run(("LLEN", name))

    @ours
    def blpop(self, keys: Any, timeout: float = 0) -> Any:
        keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        return self._run(("BLPOP", *keys, timeout), "BLPOP")

    @ours
    def hkeys(self, name: Any) -> Any:
        return self._run(("HKEYS", name))

    @ours
    def hget(self, name: Any, key: Any) -> Any:
        return self._run(("HGET", name, key))

    @ours
    def hmget(self, name: Any, keys: Any, *args: Any) -> Any:
        keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        return self._run(("HMGET", name, *keys, *args))

    @ours
    def hgetall(self, name: Any) -> Any:
        return self._run(("HGETALL", name), "HGETALL")

    @ours
    def hdel(self, name: Any, *keys: Any) -> Any:
        return self._run(("HDEL", name, *keys))

    @ours
    def zadd(self, name: Any, mapping: dict[Any, Any]) -> Any:
        flat = [x for member, score in mapping.items() for x in (score, member)]
        return self._run(("ZADD", name, *flat))

    @ours
    def zrange(self, name: Any, start: int, end: int, *, withscores: bool = False) -> Any:
        if not withscores:
            return self._run(("ZRANGE", name, start, end))
        return self._run(("ZRANGE", name, start, end, "WITHSCORES"), "WITHSCORES")

    @ours
    def zrangebyscore(
        self,
        name: Any,
        min: Any,
        max: Any,
        start: int | None = None,
        num: int | None = None,
        *,
        withscores: bool = False,
    ) -> Any:
        if (start is None) != (num is None):  # redis-py's error for half a LIMIT
            return self._other("zrangebyscore", (name, min, max, start, num), {})
        args: tuple[Any, ...] = ("ZRANGEBYSCORE", name, min, max)
        args += ("WITHSCORES",) if withscores else ()
        args += ("LIMIT", start, num) if start is not None else ()
        return self._run(args, "WITHSCORES" if withscores else None)

    @ours
    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self._run(("EVALSHA", sha, numkeys, *keys_and_args))

    @ours
    def ping(self) -> Any:
        return self._run(("PING",), "PING")
