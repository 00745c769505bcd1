"""Coordination for services that run several copies at once (beat): a lease in Redis that
elects one holder, and marks that let a message be published once per claimed run — the
claim and the publish are one Lua script, so no crash or race can split them.

Keys (see :mod:`minicelery.redislayer.keys`): a lease (holder id, with a TTL), the last
claimed run of each entry it guards (a hash: field -> mark) and how many runs were claimed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..exceptions import ImproperlyConfigured
from ..redislayer.errors import translate_errors
from ..redislayer.scripts import register
from .base import Broker, OutgoingMessage
from .redis import RedisBroker, _clamp


class Coordinator:
    """Leases and once-only publishing on one broker's Redis (real, embedded or memory://)."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.keys = broker.keys
        client, package = broker.client, "minicelery.broker"
        self._lease = register(client, package, "lease")
        self._release = register(client, package, "lease_release")
        self._marks = register(client, package, "marks")
        self._publish_once = register(client, package, "publish_once", prelude="common")

    def _run(self, what: str, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with translate_errors(what):
            return self.broker.fast.evalsha(script, keys, args)

    def hold_lease(self, name: str, owner: str, ttl: float) -> tuple[bool, float]:
        """Take lease ``name`` for ``owner`` if it is free, or extend it if ``owner`` holds
        it, for ``ttl`` seconds. Returns ``(held, seconds)``: seconds left when held, else
        seconds until the current holder's lease runs out unless it is extended."""
        keys = [self.keys.lease(name)]
        held, left = self._run("lease", self._lease, keys, [owner, max(int(ttl * 1000), 1)])
        return bool(held), max(int(left), 0) / 1000

    def release_lease(self, name: str, owner: str) -> bool:
        """Give up lease ``name`` if ``owner`` still holds it; True if it did."""
        return bool(self._run("release", self._release, [self.keys.lease(name)], [owner]))

    def lease_holder(self, name: str) -> str | None:
        with translate_errors("lease"):
            holder = self.broker.client.get(self.keys.lease(name))
        return _text(holder) if holder is not None else None

    def marks(self, name: str, fields: Sequence[str], default: str) -> dict[str, str]:
        """The current mark of each field of ``name``; missing ones are set to ``default``
        first (atomically, so concurrent readers agree on the starting point)."""
        if not fields:
            return {}
        values = self._run("marks", self._marks, [self.keys.last_runs(name)], [default, *fields])
        return {field: _text(value) for field, value in zip(fields, values, strict=True)}

    def counts(self, name: str) -> dict[str, int]:
        """How many times each field of ``name`` was claimed."""
        with translate_errors("counts"):
            raw = self.broker.client.hgetall(self.keys.run_counts(name))
        return {_text(field): int(value) for field, value in raw.items()}

    def publish_once(
        self,
        name: str,
        field: str,
        expected: str,
        new: str,
        message: OutgoingMessage,
        lease_owner: str | None = None,
    ) -> bool:
        """Publish ``message`` and move ``field``'s mark from ``expected`` to ``new``, in one
        atomic step, only if the mark is still ``expected`` (and ``lease_owner``, when given,
        holds lease ``name``). False when another process claimed it first: then nothing
        was published."""
        priority = _clamp(message.priority)
        entry = self.broker.queue_entry(message.queue, priority, message.data)
        eta = message.eta if message.eta is not None and message.eta > time.time() else None
        keys = [
            self.keys.lease(name),
            self.keys.last_runs(name),
            self.keys.run_counts(name),
            self.keys.scheduled,
            self.keys.schedule_wake,
        ]
        args = [lease_owner or "", field, expected, new, entry, "" if eta is None else repr(eta)]
        if self.broker.one_slot_per_script:
            # Redis Cluster: the claim is one script on the lease's slot, the publish
            # follows it (a crash in between loses that one run, never runs it twice).
            claim = [*args[:4], "", ""]
            claimed = bool(self._run("publish", self._publish_once, keys[:3], claim))
            if claimed:
                self.broker.publish([message])
            return claimed
        return bool(self._run("publish", self._publish_once, keys, args))


def coordinator_for(broker: Broker) -> Coordinator:
    """The coordinator of ``broker``; only Redis brokers (of any URL scheme) have one."""
    if not isinstance(broker, RedisBroker):
        raise ImproperlyConfigured(
            f"{type(broker).__name__} cannot coordinate beats: a Redis broker is needed"
        )
    return Coordinator(broker)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
