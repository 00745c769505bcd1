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


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn redis-py's errors into :class:`OperationalError` naming ``what`` failed."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise OperationalError(f"{what}: Redis is unreachable ({exc})") from exc
    except redis.RedisError as exc:
        raise OperationalError(f"{what}: Redis error ({exc})") from exc
