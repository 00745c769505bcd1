"""The asyncio client of one app in one event loop: a publisher and a waiter over
``redis.asyncio`` connections (and, for a lone publish on ``redis://`` or ``unix://``, one
connection of our own: :mod:`..redislayer.aioresp`), made on first use in that loop (a
loop's connections cannot serve another loop)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import states
from ..exceptions import ImproperlyConfigured
from ..redislayer import errors
from ..redislayer.aioredis import async_client
from ..redislayer.aioresp import line_for
from ..redislayer.keys import KeySchema
from ..result import ResultBase, _raise_for
from ..serialization import codec_for
from .outbox import DEFERRED, Outbox
from .publishing import AsyncPublisher
from .waiting import Meta, Waiter

if TYPE_CHECKING:
    from ..app import Celery

T = TypeVar("T")

_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[Any, AioClient]
] = weakref.WeakKeyDictionary()


def client_for(app: Celery) -> AioClient:
    """``app``'s client for the running event loop, made on first use."""
    loop = asyncio.get_running_loop()
    per_app = _clients.get(loop)
    if per_app is None:
        per_app = _clients[loop] = weakref.WeakKeyDictionary()
    client = per_app.get(app)
    if client is None:
        client = per_app[app] = AioClient(app)
    return client


class AioClient:
    """Sends and awaits for one app: ``send`` runs the sync sending code with its publishing
    deferred, then publishes what it built; ``wait_for`` awaits a task's ready record."""

    def __init__(self, app: Celery) -> None:
        broker_url, backend_url = app.resolved_urls()
        keys = KeySchema(app.conf.key_prefix)
        self.keys = keys
        self.commands = async_client(broker_url)
        self.publisher = AsyncPublisher(self.commands, keys, line_for(broker_url))
        self.results: Any = None
        self.waiter: Waiter | None = None
        if backend_url is not None:
            self.results = self.commands if backend_url == broker_url else async_client(backend_url)
            reader = async_client(backend_url, max_connections=1)
            codec = codec_for(app.conf.result_serializer)

            def decode(data: Any) -> Meta:
                meta = codec.loads(data.encode() if isinstance(data, str) else data)
                return meta if isinstance(meta, dict) else {"status": states.FAILURE,
                                                            "result": meta}  # fmt: skip

            self.decode = decode
            self.waiter = Waiter(reader, self.results, keys, decode)

    async def send(self, send: Callable[[], T]) -> T:
        """Run ``send`` (sync code that sends tasks) with an outbox open, then publish the
        messages it left there, then run what it asked to run after publishing."""
        outbox = Outbox()
        token = DEFERRED.set(outbox)
        try:
            value = send()
        finally:
            DEFERRED.reset(token)
        await self.publisher.publish(outbox.messages)
        for after in outbox.after:
            after()
        return value

    def _waiter(self) -> Waiter:
        if self.waiter is None:
            raise ImproperlyConfigured("No result backend is configured")
        return self.waiter

    async def wait_for(
        self, task_id: str, timeout: float | None, on_message: Callable[[Meta], None] | None
    ) -> Meta:
        """The ready record of ``task_id`` (TimeoutError after ``timeout`` seconds)."""
        return await self._waiter().wait_for(task_id, timeout, on_message)

    def iter_states(self, task_id: str, timeout: float | None) -> AsyncIterator[Meta]:
        """Each stored record of ``task_id`` as it is written, ending with a ready one."""
        return self._waiter().iter_states(task_id, timeout)

    async def metas(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """The stored records of ``task_ids`` now (None: no record yet), one MGET."""
        self._waiter()
        if not task_ids:
            return []
        with errors.translate_errors("get results"):
            values = await self.results.mget([self.keys.result(t) for t in task_ids])
        return [None if value is None else self.decode(value) for value in values]

    async def raise_if_parents_failed(self, result: ResultBase) -> None:
        """Raise the error of the first failed parent of ``result``, root first (as
        ``get()`` with ``follow_parents``)."""
        lineage: list[Any] = []
        node = result.parent
        while node is not None:
            lineage.append(node)
            node = node.parent
        for node in reversed(lineage):
            members = getattr(node, "results", None) or [node]
            ids = [member.id for member in members if hasattr(member, "id")]
            for task_id, meta in zip(ids, await self.metas(ids), strict=True):
                if meta is not None and meta.get("status") in states.PROPAGATE_STATES:
                    _raise_for(meta, task_id)

    async def join(
        self, results: Sequence[Any], timeout: float | None, propagate: bool
    ) -> list[Any]:
        """The values of ``results`` in order, all awaited at once (the first failure in
        order raised when ``propagate``)."""
        pending = [
            asyncio.ensure_future(r.aget(timeout=timeout, propagate=propagate)) for r in results
        ]
        try:
            return [await each for each in pending]
        finally:
            for each in pending:
                each.cancel()

    async def aclose(self) -> None:
        """Close this client's connections (the loop's client is made again on next use)."""
        loop = asyncio.get_running_loop()
        per_app = _clients.get(loop)
        if per_app is not None:
            for app, client in list(per_app.items()):
                if client is self:
                    del per_app[app]
        clients = {id(c): c for c in (self.commands, self.results) if c is not None}
        if self.waiter is not None:
            await self.waiter.stop()
            clients[id(self.waiter.reader)] = self.waiter.reader
        for client in clients.values():
            await client.aclose()
        if self.publisher.line is not None:
            await self.publisher.line.aclose()
