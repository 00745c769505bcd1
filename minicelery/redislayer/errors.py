"""redis-py's errors, translated into minicelery's at the boundary, so no caller outside this
package ever catches ``redis.exceptions.*``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from ..exceptions import OperationalError

#: Errors that mean "Redis is not there right now" (worth retrying), not "Redis said no".
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
#: A reply error (a script's, a wrong type): returned in place by pipelines.
ResponseError = redis.ResponseError
#: EVALSHA of a script the server does not know (restarted or flushed): load it again.
NoScriptError = redis.exceptions.NoScriptError


#: Every error redis-py raises (what :func:`translated` takes).
RedisError = redis.RedisError


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn redis-py's errors into :class:`OperationalError` naming ``what`` failed."""
    try:
        yield
    except redis.RedisError as exc:
        raise translated(what, exc) from exc


def translated(what: str, exc: Exception) -> OperationalError:
    """The :class:`OperationalError` for redis-py's ``exc`` (raise it ``from exc``); a hot
    path catches :data:`RedisError` itself rather than pay for a context manager."""
    if isinstance(exc, REDIS_ERRORS):
        return OperationalError(f"{what}: Redis is unreachable ({exc})")
    return OperationalError(f"{what}: Redis error ({exc})")
