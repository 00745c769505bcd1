"""``app.control`` and ``app.control.inspect()``: commands broadcast to workers over Redis
pub/sub, replies gathered within a timeout, with Celery's names, arguments and reply shapes.

Revocation also writes the ids to a revoked set in Redis (kept ``worker_revoke_expires``
seconds), so workers started later skip them too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from .app import Celery

Reply = dict[str, Any]


def _encode(method: str, arguments: dict[str, Any], destination: Any, ticket: Any) -> bytes:
    data: bytes = msgpack.packb(
        {"method": method, "arguments": arguments, "destination": destination, "ticket": ticket},
        default=str,
    )
    return data


def _stamp_news(
    command: str, arguments: dict[str, Any], targets: list[str] | None
) -> dict[str, Any] | None:
    """The revoke news of a ``revoke_by_stamped_headers``: the stamps it revokes
    (``{name: value(s)}``, or the command line's ``["name=value", ...]``), for whom, and an
    id of its own."""
    headers = arguments.get("headers") if command == "revoke_by_stamped_headers" else None
    if isinstance(headers, (list, tuple)):
        headers = dict(str(item).split("=", 1) for item in headers if "=" in str(item))
    if not isinstance(headers, dict) or not headers:
        return None
    return {"stamps": dict(headers), "to": targets, "id": uuid.uuid4().hex}


def _destination(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class Control:
    """Celery's ``app.control`` interface."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def inspect(
        self,
        destination: str | Sequence[str] | None = None,
        timeout: float = 1.0,
        callback: Callable[[Reply], None] | None = None,
        limit: int | None = None,
        **kwargs: Any,
    ) -> Inspect:
        return Inspect(self, destination, timeout, callback, limit)

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: str | Sequence[str] | None = None,
        connection: Any = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Callable[[Reply], None] | None = None,
        **extra: Any,
    ) -> list[Reply] | None:
        """Send ``command`` to every worker (or those in ``destination``); with
        ``reply=True``, a list of ``{hostname: reply}`` gathered for ``timeout`` seconds (or
        until ``limit`` replies, by default one per named destination)."""
        return self._send(command, {**(arguments or {}), **extra}, destination, reply,
                          timeout, limit, callback)  # fmt: skip

    def _send(
        self,
        command: str,
        arguments: dict[str, Any],
        destination: str | Sequence[str] | None,
        reply: bool,
        timeout: float,
        limit: int | None,
        callback: Callable[[Reply], None] | None,
        revoke: Sequence[str] = (),
    ) -> list[Reply] | None:
        mailbox = self.app.broker.mailbox()
        targets = _destination(destination)
        ticket = uuid.uuid4().hex if reply else None
        keep_for = float(self.app.conf.worker_revoke_expires)
        news = _stamp_news(command, arguments, targets)
        if news is not None:  # the worker says which it obeyed (see worker.revokenews)
            arguments = {**arguments, "news_id": news["id"]}
        encoded = _encode(command, arguments, targets, ticket)
        listeners = mailbox.publish(encoded, revoke, keep_for, news)
        if ticket is None:
            return None
        if limit is None and targets is not None:
            limit = len(targets)
        if listeners == 0:
            return []
        replies = []
        for data in mailbox.collect(ticket, timeout, limit):
            item = msgpack.unpackb(data)
            if callback is not None:
                callback(item)
            replies.append(item)
        return replies

    # -- commands ------------------------------------------------------------------------
    def revoke(
        self,
        task_id: str | Sequence[str],
        destination: str | Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> list[Reply] | None:
        """Never run these tasks; with ``terminate=True`` also stop them where they run now
        (with ``signal``, SIGTERM by default) and mark them REVOKED."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        arguments = {"task_id": ids, "terminate": terminate, "signal": signal or "SIGTERM"}
        return self._send(
            "revoke",
            arguments,
            destination,
            kwargs.get("reply", False),
            kwargs.get("timeout", 1.0),
            kwargs.get("limit"),
            kwargs.get("callback"),
            revoke=ids,
        )

    def revoke_by_stamped_headers(
        self,
        headers: dict[str, Any],
        destination: str | Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | None = "SIGTERM",
        **kwargs: Any,
    ) -> list[Reply] | None:
        """Never run tasks stamped with any of ``headers`` (``{stamp name: value(s)}``);
        with ``terminate=True`` also stop those running now."""
        arguments = {"headers": headers, "terminate": terminate, "signal": signal}
        return self.broadcast("revoke_by_stamped_headers", arguments, destination, **kwargs)

    def terminate(self, task_id: str | Sequence[str], signal: str | None = None,
                  **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.revoke(task_id, terminate=True, signal=signal, **kwargs)

    def ping(self, destination: str | Sequence[str] | None = None, timeout: float = 1.0,
             **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout,
                              **kwargs)  # fmt: skip

    def rate_limit(self, task_name: str, rate_limit: str | float | None,
                   destination: str | Sequence[str] | None = None,
                   **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        """Change a task's rate limit on running workers (``'10/m'``; None or 0 to lift it)."""
        return self.broadcast("rate_limit", {"task_name": task_name, "rate_limit": rate_limit},
                              destination, **kwargs)  # fmt: skip

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None,
                   destination: str | Sequence[str] | None = None,
                   **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("time_limit", {"task_name": task_name, "soft": soft, "hard": hard},
                              destination, **kwargs)  # fmt: skip

    def shutdown(self, destination: str | Sequence[str] | None = None,
                 **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("shutdown", destination=destination, **kwargs)

    def pool_grow(self, n: int = 1, destination: str | Sequence[str] | None = None,
                  **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("pool_grow", {"n": n}, destination, **kwargs)

    def pool_shrink(self, n: int = 1, destination: str | Sequence[str] | None = None,
                    **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("pool_shrink", {"n": n}, destination, **kwargs)

    def pool_restart(self, modules: Sequence[str] | None = None, reload: bool = False,
                     destination: str | Sequence[str] | None = None,
                     **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("pool_restart", {"modules": list(modules or ()), "reload": reload},
                              destination, **kwargs)  # fmt: skip

    def autoscale(self, max: int, min: int, destination: str | Sequence[str] | None = None,
                  **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("autoscale", {"max": max, "min": min}, destination, **kwargs)

    def enable_events(self, destination: str | Sequence[str] | None = None,
                      **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        """Workers start sending task events (as if started with ``-E``)."""
        return self.broadcast("enable_events", destination=destination, **kwargs)

    def disable_events(self, destination: str | Sequence[str] | None = None,
                       **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        """Workers stop sending task events (worker heartbeats go on)."""
        return self.broadcast("disable_events", destination=destination, **kwargs)

    def add_consumer(self, queue: str, destination: str | Sequence[str] | None = None,
                     **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("add_consumer", {"queue": queue}, destination, **kwargs)

    def cancel_consumer(self, queue: str, destination: str | Sequence[str] | None = None,
                        **kwargs: Any) -> list[Reply] | None:  # fmt: skip
        return self.broadcast("cancel_consumer", {"queue": queue}, destination, **kwargs)


class Inspect:
    """``app.control.inspect()``: each method returns ``{hostname: reply}`` from the workers
    that answered within the timeout, or None when none did (as Celery does)."""

    def __init__(
        self,
        control: Control,
        destination: str | Sequence[str] | None,
        timeout: float,
        callback: Callable[[Reply], None] | None,
        limit: int | None,
    ) -> None:
        self.control = control
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.limit = limit

    def _request(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        replies = self.control.broadcast(
            command,
            arguments,
            self.destination,
            reply=True,
            timeout=self.timeout,
            limit=self.limit,
            callback=self.callback,
        )
        merged: dict[str, Any] = {}
        for item in replies or ():
            merged.update(item)
        return merged or None

    def ping(self) -> dict[str, Any] | None:
        return self._request("ping")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        """The running tasks; ``safe``: arguments as their reprs, never as values."""
        return self._request("active", safe=bool(safe))

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("reserved", safe=bool(safe))

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("scheduled")

    def revoked(self) -> dict[str, Any] | None:
        return self._request("revoked")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        return self._request("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def stats(self) -> dict[str, Any] | None:
        return self._request("stats")

    def active_queues(self) -> dict[str, Any] | None:
        return self._request("active_queues")

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        return self._request("conf", with_defaults=with_defaults)

    def query_task(self, *ids: str | Sequence[str]) -> dict[str, Any] | None:
        """Where the tasks ``ids`` are on each worker: ``{hostname: {id: [state, info]}}``
        with state ``active`` or ``reserved`` (Celery's reply shape)."""
        wanted = [i for item in ids for i in ([item] if isinstance(item, str) else item)]
        return self._request("query_task", ids=wanted)

    def clock(self) -> dict[str, Any] | None:
        """Each worker's logical clock, as ``{hostname: {"clock": n}}``."""
        return self._request("clock")

    def report(self) -> dict[str, Any] | None:
        """Each worker's bug report, as ``{hostname: {"ok": text}}``."""
        return self._request("report")

    def hello(self, from_node: str, revoked: Any = None) -> dict[str, Any] | None:
        """Say hello as ``from_node`` with its revoked ids; each worker takes the ids and
        replies with its own (``{"revoked": [...], "clock": n}``)."""
        return self._request("hello", from_node=from_node, revoked=revoked)
