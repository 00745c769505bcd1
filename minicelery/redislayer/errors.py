"""Redis errors, translated into minicelery's at the boundary, so no caller outside this
package ever catches a Redis client's own classes.

Two clients raise them: ours (:mod:`.resp`, the classes below) and redis-py (``rediss://``,
``memory://`` through fakeredis, and whatever our client hands over to it). The names callers
catch (:data:`REDIS_ERRORS`, :data:`ResponseError`, :data:`NoScriptError`,
:data:`RedisError`) are tuples of classes that start with ours and grow redis-py's when a
module of this package first imports redis-py (:func:`adopt_redis_py`). Importing this module
imports no client. Read them as ``errors.REDIS_ERRORS`` at the moment of catching, never bind
them by value (``from .errors import REDIS_ERRORS``): a copy taken before redis-py was loaded
would silently miss its errors (a unit test reads every import to keep it so).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..exceptions import OperationalError


class WireError(Exception):
    """Anything our Redis client raises."""


class ConnectionLost(WireError):
    """Redis is not there right now: refused, reset, closed (worth retrying)."""


class ReplyTimeout(WireError):
    """No reply (or no connection) within the socket's timeout (worth retrying)."""


class ServerLoading(ConnectionLost):
    """Redis is loading its data set and answers nothing else yet."""


class ReadOnly(ConnectionLost):
    """A write reached a replica: a master demoted by a failover, still at its old address.
    Worth retrying: the next connection finds the new master (through the sentinels, or
    the address that moved to it), and the write did not happen."""


class AuthenticationFailed(ConnectionLost):
    """AUTH was refused, or a command was sent without it."""


class ReplyError(WireError):
    """Redis answered with an error (a script's, a wrong type, an unknown command)."""


class NoPermission(ReplyError):
    """NOPERM: the ACL user may not run this command, or touch this key or channel."""


class NoScript(ReplyError):
    """EVALSHA of a script the server does not know (restarted or flushed)."""


ErrorTypes = tuple[type[Exception], ...]

#: Errors that mean "Redis is not there right now" (worth retrying), not "Redis said no".
REDIS_ERRORS: ErrorTypes = (ConnectionLost, ReplyTimeout)
#: A reply error (a script's, a wrong type): returned in place by pipelines.
ResponseError: ErrorTypes = (ReplyError,)
#: EVALSHA of a script the server does not know (restarted or flushed): load it again.
NoScriptError: ErrorTypes = (NoScript,)
#: Every error a Redis client raises (what :func:`translated` takes).
RedisError: ErrorTypes = (WireError,)

_adopted = False


def adopt_redis_py() -> None:
    """Widen the tuples above with redis-py's classes; called by every module of this
    package right after it imports redis-py (or fakeredis), before any of its clients
    exists. Idempotent."""
    global REDIS_ERRORS, ResponseError, NoScriptError, RedisError, _adopted
    if _adopted:
        return
    import redis

    cluster = redis.exceptions
    REDIS_ERRORS = (
        *REDIS_ERRORS, redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
        # A cluster that cannot be reached as a whole (its slot map cannot be read). A
        # slot moving or failing over (TRYAGAIN, CLUSTERDOWN) is a reply, returned in place
        # by pipelines: the command did not run, and is sent again (see .cluster).
        cluster.RedisClusterException,
    )  # fmt: skip
    ResponseError = (*ResponseError, redis.ResponseError)
    NoScriptError = (*NoScriptError, redis.exceptions.NoScriptError)
    RedisError = (*RedisError, redis.RedisError, cluster.RedisClusterException)
    _adopted = True


def notice_redis_py() -> None:
    """Adopt redis-py's errors if it is loaded at all: called where a client is handed in
    (a broker or backend made around a redis-py client this package did not create)."""
    if not _adopted and "redis.exceptions" in sys.modules:
        adopt_redis_py()


notice_redis_py()


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn a Redis client's errors into :class:`OperationalError` naming ``what`` failed."""
    try:
        yield
    except RedisError as exc:
        raise translated(what, exc) from exc


def translated(what: str, exc: Exception) -> OperationalError:
    """The :class:`OperationalError` for a Redis client's ``exc`` (raise it ``from exc``); a
    hot path catches :data:`RedisError` itself rather than pay for a context manager."""
    if isinstance(exc, REDIS_ERRORS):
        return OperationalError(f"{what}: Redis is unreachable ({exc})")
    return OperationalError(f"{what}: Redis error ({exc})")
