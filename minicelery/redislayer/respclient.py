"""Our Redis client (for ``redis://`` and ``unix://``): what a worker's children and a
client's publish and ``get()`` call, on :mod:`.resp`'s connections, without redis-py.

Ours: ``execute_command`` (any command, raw replies but for those in :data:`CALLBACKS`),
the command methods of :class:`Commands`, ``pipeline`` (with or without MULTI),
``register_script``, ``script_load``, ``evalsha``, ``ping``, ``close``, ``pubsub``
(:mod:`.resppubsub`). Anything else (an admin's ``scan_iter``, ``info``, a pipeline's
command not in :class:`Commands`) is
handed to a redis-py client for the same URL and options, made (and redis-py imported) on
its first use: a worker's main process keeps every feature, its children stay small.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from . import errors
from .resp import Connection, Options, Pool
from .respcommands import CALLBACKS, Commands
from .wire import pack_commands

try:
    # The interpreter's own SHA-1, not hashlib's: importing hashlib loads OpenSSL, over 3 MB
    # of memory in every process (a worker's children each) for hashing a few scripts.
    from _sha1 import sha1  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # an interpreter without it
    from hashlib import sha1


def backoff(failures: int) -> float:
    """Seconds before try ``failures + 1``: 0.1, 0.2, 0.4, ... at most 2 (the policy the
    redis-py client had: exponential, base 0.05 s, cap 2 s)."""
    return float(min(2.0, 0.05 * 2**failures))


class Script:
    """A Lua script run with EVALSHA (``.sha``, ``.script``), loaded again if Redis forgot
    it; callable with ``keys``/``args``/``client`` as redis-py's is."""

    def __init__(self, client: RespClient, source: str) -> None:
        self.client = client
        self.script = source
        self.sha = str(sha1(source.encode()).hexdigest())

    def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        target = self.client if client is None else client
        if isinstance(target, Pipeline):
            target.scripts.add(self)
            return target.evalsha(self.sha, len(keys), *keys, *args)
        try:
            return target.evalsha(self.sha, len(keys), *keys, *args)
        except errors.NoScriptError:
            self.sha = target.script_load(self.script)
            return target.evalsha(self.sha, len(keys), *keys, *args)


class RespClient(Commands):
    """A Redis client on :class:`.resp.Pool`: connection errors are retried ``retries``
    times with :func:`backoff`, on a new connection each time."""

    def __init__(self, url: str, options: Options, retries: int = 3) -> None:
        self.url = url
        self.options = options
        self.retries = retries
        self.connection_pool = Pool(options)
        self._fallback: Any = None
        self._fallback_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RespClient {self.options.where()} db={self.options.db}>"

    def _run(self, args: tuple[Any, ...], name: str | None = None) -> Any:
        reply = self.with_retry(lambda connection: _one(connection, args))
        callback = CALLBACKS.get(name or "")
        return reply if callback is None else callback(reply)

    def execute_command(self, *args: Any, **_: Any) -> Any:
        name = str(args[0]).upper()
        if name == "SCRIPT" and len(args) > 1:
            name += " " + str(args[1]).upper()
        return self._run(args, name)

    def with_retry(self, call: Callable[[Connection], Any]) -> Any:
        """``call(connection)`` on a pooled connection, again after a connection error."""
        failures = 0
        while True:
            connection = self.connection_pool.get_connection()
            try:
                return call(connection)
            except (errors.ConnectionLost, errors.ReplyTimeout):
                connection.disconnect()
                failures += 1
                if failures > self.retries:
                    raise
                time.sleep(backoff(failures))
            finally:
                self.connection_pool.release(connection)

    def pipeline(self, transaction: bool = True, **_: Any) -> Pipeline:
        return Pipeline(self, transaction)

    def pubsub(self, **kwargs: Any) -> Any:
        """A :class:`.resppubsub.PubSub` (only ``ignore_subscribe_messages`` is ours to
        take; other options get redis-py's)."""
        if not kwargs.keys() <= {"ignore_subscribe_messages"}:
            return self.fallback().pubsub(**kwargs)
        # Imported here: only a worker's main process (remote control) subscribes, and its
        # children stay without the module.
        from .resppubsub import PubSub

        return PubSub(self.options, **kwargs)

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    def script_load(self, source: str) -> str:
        return str(self._run(("SCRIPT", "LOAD", source), "SCRIPT LOAD"))

    def close(self) -> None:
        self.connection_pool.disconnect()
        if self._fallback is not None:
            self._fallback.close()

    def fallback(self) -> Any:
        """The redis-py client for what ours does not do (made on first use)."""
        with self._fallback_lock:
            if self._fallback is None:
                from .connect import client_from_url

                timeout = self.options.socket_timeout
                self._fallback = client_from_url(
                    self.url, retries=self.retries, socket_timeout=timeout
                )
        return self._fallback

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.fallback(), name)

    def _other(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return getattr(self.fallback(), name)(*args, **kwargs)


def _one(connection: Connection, args: tuple[Any, ...]) -> Any:
    connection.send_packed_command([pack_commands((args,))])
    return connection.read_response()


class Pipeline(Commands):
    """Commands sent in one write, their replies read together (in MULTI/EXEC when
    ``transaction``); redis-py's behaviour: error replies in place, the first raised unless
    ``raise_on_error=False``. A command this class lacks moves what was queued to a
    redis-py pipeline, which carries on from there."""

    def __init__(self, client: RespClient, transaction: bool) -> None:
        self.client = client
        self.transaction = transaction
        self.commands: list[tuple[tuple[Any, ...], str | None]] = []
        self.scripts: set[Script] = set()
        self._fallback: Any = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *_: object) -> None:
        self.commands, self.scripts = [], set()

    def __len__(self) -> int:
        return len(self.commands)

    def _run(self, args: tuple[Any, ...], name: str | None = None) -> Pipeline:
        if self._fallback is not None:
            self._fallback.execute_command(*args)
        else:
            self.commands.append((args, name))
        return self

    def execute_command(self, *args: Any, **_: Any) -> Pipeline:
        return self._run(args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self._fallback is not None:
            self._fallback.scripts.update(self.scripts)
            self.scripts = set()
            return list(self._fallback.execute(raise_on_error=raise_on_error))
        commands, self.commands = self.commands, []
        if not commands:
            return []
        self._load_scripts()
        args = [command for command, _ in commands]
        replies = self.client.with_retry(lambda connection: self._send(connection, args))
        results = [_shaped(reply, name) for reply, (_, name) in zip(replies, commands, strict=True)]
        if raise_on_error:
            for result in results:
                if isinstance(result, errors.WireError):
                    raise result
        return results

    def _load_scripts(self) -> None:
        """Load the scripts queued here that Redis lacks (redis-py's way: SCRIPT EXISTS)."""
        scripts, self.scripts = list(self.scripts), set()
        if scripts:
            known = self.client.execute_command("SCRIPT", "EXISTS", *(s.sha for s in scripts))
            for script, exists in zip(scripts, known, strict=True):
                if not exists:
                    script.sha = self.client.script_load(script.script)

    def _send(self, connection: Connection, args: list[tuple[Any, ...]]) -> list[Any]:
        wrapped = [("MULTI",), *args, ("EXEC",)] if self.transaction else args
        connection.send_packed_command([pack_commands(wrapped)])
        replies = [_read(connection) for _ in wrapped]
        if not self.transaction:
            return replies
        queued, done = replies[1:-1], replies[-1]
        if isinstance(done, errors.WireError):  # EXECABORT: say why
            raise next((r for r in queued if isinstance(r, errors.WireError)), done)
        if done is None:
            raise errors.ReplyError("Watched variable changed.")
        return list(done)

    def _moved(self) -> Any:
        """The redis-py pipeline this one carries on in, what was queued moved to it."""
        if self._fallback is None:
            pipe = self.client.fallback().pipeline(transaction=self.transaction)
            for args, _ in self.commands:
                pipe.execute_command(*args)
            pipe.scripts.update(self.scripts)
            self._fallback, self.commands, self.scripts = pipe, [], set()
        return self._fallback

    def _other(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = getattr(self._moved(), name)(*args, **kwargs)
        return self if result is self._fallback else result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._moved(), name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._other(name, args, kwargs)

        return call


def _read(connection: Connection) -> Any:
    try:
        return connection.read_response()
    except errors.ReplyError as exc:
        return exc


def _shaped(reply: Any, name: str | None) -> Any:
    callback = CALLBACKS.get(name or "")
    if callback is None or isinstance(reply, errors.WireError):
        return reply
    return callback(reply)


#: URL query options ours understands; any other sends the URL to redis-py.
OUR_OPTIONS = {"db", "client_name"}


def options_from_url(url: str, socket_timeout: float | None = 10.0) -> Options | None:
    """:class:`.resp.Options` for a ``redis://`` or ``unix://`` URL, or None when it asks
    for something only redis-py does (another scheme, a query option such as
    ``decode_responses``)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    if parts.scheme not in ("redis", "unix") or set(query) - OUR_OPTIONS:
        return None
    db_text = query.get("db") or (parts.path.lstrip("/") if parts.scheme == "redis" else "")
    common: dict[str, Any] = {
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": urllib.parse.unquote(parts.password) if parts.password else None,
        "db": int(db_text or 0),
        "client_name": query.get("client_name"),
        "socket_timeout": socket_timeout,
    }
    if parts.scheme == "unix":
        return Options(path=urllib.parse.unquote(parts.path), **common)
    return Options(host=parts.hostname or "localhost", port=parts.port or 6379, **common)
