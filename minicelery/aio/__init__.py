"""The asyncio client: send tasks and await their results from an event loop, with no
thread, over ``redis.asyncio``. The sync code builds every message; only Redis I/O is async.

This package's ``__init__`` imports nothing: the app imports :mod:`.outbox` on every
process start, and a worker's processes must not load asyncio or redis-py for it."""
