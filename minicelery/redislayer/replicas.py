"""Opt-in replica acknowledgement: after each write of the hot path (a publish, a reserve,
an ack, a result), Redis's ``WAIT numreplicas timeout`` holds the caller until that many
replicas have the write, or the timeout passes.

Set per Redis, with the other options of its connection::

    broker_transport_options = {"wait_for_replicas": 1, "wait_for_replicas_timeout": 0.5}
    result_backend_transport_options = {"wait_for_replicas": 1}

Without it, Redis replicates asynchronously: a master that dies (and is replaced by a
replica through Sentinel) loses whatever it acknowledged in its last moments: a publish the
caller was told succeeded, a result, or an ack (the task then runs again). With it, a
write confirmed by ``wait_for_replicas`` replicas survives a failover. When fewer answer in
time the write still stands (Redis cannot undo it): a warning says so, at most every ten
seconds, and the caller goes on; raising would make a publish be sent twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..exceptions import ImproperlyConfigured
from . import errors

logger = logging.getLogger(__name__)

ATTRIBUTE = "minicelery_wait_for_replicas"
DEFAULT_TIMEOUT = 1.0
WARN_EVERY = 10.0
#: Commands of the hot path that write nothing: no WAIT after them.
READS = frozenset(
    {"GET", "MGET", "EXISTS", "PING", "HGET", "HMGET", "HKEYS", "HGETALL", "LLEN", "ZRANGE",
     "XREAD", "XRANGE", "XREVRANGE"}
)  # fmt: skip


class _Warned:
    at = 0.0


def configure(client: Any, options: Mapping[str, Any], setting: str) -> None:
    """Make ``client``'s hot path wait for replicas, as ``options`` (the transport options
    named ``setting``) ask; nothing when they do not."""
    count = options.get("wait_for_replicas")
    if not count:
        return
    timeout = options.get("wait_for_replicas_timeout", DEFAULT_TIMEOUT)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ImproperlyConfigured(f"{setting}['wait_for_replicas'] must be a number of replicas")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ImproperlyConfigured(f"{setting}['wait_for_replicas_timeout'] must be seconds > 0")
    setattr(client, ATTRIBUTE, (count, max(1, round(timeout * 1000))))


def wanted(client: Any) -> tuple[int, int] | None:
    """``(replicas, timeout in ms)`` for ``client``, or None (no waiting)."""
    # Read from the instance's own attributes: getattr would reach our client's fallback to
    # redis-py for a name it does not have (and load redis-py in every process).
    want: tuple[int, int] | None = getattr(client, "__dict__", {}).get(ATTRIBUTE)
    return want


def writes(commands: Any) -> bool:
    """Whether any of ``commands`` (argument tuples) writes."""
    return any(str(command[0]).upper() not in READS for command in commands if command)


def await_replicas(connection: Any, want: tuple[int, int]) -> None:
    """WAIT on ``connection`` for the writes it sent. A connection error here is logged, not
    raised: the writes happened, only their copies are unknown."""
    from .wire import pack_commands

    count, ms = want
    try:
        connection.send_packed_command([pack_commands([("WAIT", count, ms)])])
        got = int(connection.read_response())
    except errors.REDIS_ERRORS as exc:
        connection.disconnect()
        warn(f"could not wait for {count} replica(s): {exc}")
        return
    if got < count:
        warn(f"only {got} of {count} replica(s) acknowledged a write within {ms} ms")


def wait_command(want: tuple[int, int]) -> tuple[Any, ...]:
    """The WAIT command itself, for a caller that sends it behind its writes."""
    return ("WAIT", want[0], want[1])


def warn(message: str) -> None:
    """Log a replica's lateness, at most every ``WARN_EVERY`` seconds."""
    now = time.monotonic()
    if now - _Warned.at >= WARN_EVERY:
        _Warned.at = now
        logger.warning("Replica acknowledgement: %s", message)
