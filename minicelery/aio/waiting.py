"""Awaiting results from an event loop: one connection, one ``XREAD BLOCK`` over the
streams of every task awaited at the moment, however many awaits there are.

Each round flags every awaited task with ``wait_result.lua`` (as the sync ``get()`` does:
the worker streams a record only while its task is flagged, and the script appends a
record stored before the flag) and reads all their streams behind it, in one pipelined
round trip. Rounds block at most a second, so flags are renewed and a stream that expired
unseen is made again. An await that arrives while a round blocks wakes it at once with
``CLIENT UNBLOCK`` sent on a second connection, so it joins the next round without waiting
out the slice (a server that refuses the command leaves it to the slice's end)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from .. import states
from ..backend.redis import NOTIFY_SECONDS, STREAM_START, WAITING_MS
from ..exceptions import TimeoutError
from ..redislayer import errors
from ..redislayer.aioredis import script_sha
from ..redislayer.keys import KeySchema
from ..redislayer.scripts import script_source

Meta = dict[str, Any]
#: Told each record of its task as it comes, ``(meta, stored)``; answers whether it is done.
Listener = Callable[[Meta, bool], bool]
SLICE_MS = 1000
UNBLOCK_RETRY = 0.001  # seconds between wakes of a round that is not blocking yet


class Watched:
    """One awaited task: where its stream's next read starts, and who listens."""

    __slots__ = ("keys", "last_id", "listeners", "seen", "stream", "task_id")

    def __init__(self, keys: KeySchema, task_id: str) -> None:
        self.task_id = task_id
        self.stream = keys.result_stream(task_id)
        self.keys = (keys.result(task_id), self.stream, keys.result_waiting(task_id))
        self.last_id: Any = STREAM_START
        self.seen = False  # whether a round has read it (its first read takes the newest)
        self.listeners: list[Listener] = []


class Waiter:
    """The results awaited in one event loop, read over one connection (``reader``); the
    other client (``commands``) only wakes the reader when a new await arrives."""

    def __init__(
        self, reader: Any, commands: Any, keys: KeySchema, decode: Callable[[Any], Meta]
    ) -> None:
        self.reader = reader
        self.commands = commands
        self.keys = keys
        self.decode = decode
        self.source = script_source("minicelery.backend", "wait_result")
        self.sha = script_sha(self.source)
        self.watched: dict[str, Watched] = {}
        self._fail_to: dict[Listener, asyncio.Future[Any]] = {}  # where a failure to read goes
        self._runner: asyncio.Task[None] | None = None
        self._waking: asyncio.Future[None] | None = None
        self._reader_id: int | None = None
        self._blocked = False  # a round is blocking on the reader right now
        self._woken = False  # and has been sent its CLIENT UNBLOCK
        self._can_unblock = True
        self.rounds = 0  # round trips made (tests and the bench read it)

    async def wait_for(
        self, task_id: str, timeout: float | None, on_message: Callable[[Meta], None] | None
    ) -> Meta:
        """The task's ready record, as ``RedisBackend.wait_for`` returns it."""
        done: asyncio.Future[Meta] = asyncio.get_running_loop().create_future()

        def listen(meta: Meta, stored: bool) -> bool:
            if stored and on_message is not None:
                on_message(meta)
            if meta["status"] in states.READY_STATES:
                if not done.done():
                    done.set_result(meta)
                return True
            return False

        self.listen(task_id, listen, done)
        try:
            await asyncio.wait((done,), timeout=timeout)
        finally:
            self.forget(task_id, listen)
        if done.done():
            return done.result()
        # As the sync get(): a record already ready counts, however short the timeout
        # (timeout=0 collects what is done), though no round has read it yet.
        meta = await self._stored(task_id)
        if meta is not None and meta["status"] in states.READY_STATES:
            return meta
        raise TimeoutError(f"The operation timed out ({timeout}s) waiting for task {task_id}")

    async def iter_states(self, task_id: str, timeout: float | None) -> AsyncIterator[Meta]:
        """Each stored record of the task as the worker writes it, from its current one
        to a ready one (``timeout`` for the whole iteration), as ``iter_states()``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        records: asyncio.Queue[Meta] = asyncio.Queue()
        failed: asyncio.Future[Meta] = loop.create_future()

        def listen(meta: Meta, stored: bool) -> bool:
            if stored:
                records.put_nowait(meta)
            return bool(meta["status"] in states.READY_STATES)

        self.listen(task_id, listen, failed)
        try:
            while True:
                remaining = None if deadline is None else max(deadline - loop.time(), 0)
                meta = await _next(records, failed, remaining, task_id)
                yield meta
                if meta["status"] in states.READY_STATES:
                    return
        finally:
            self.forget(task_id, listen)

    async def _stored(self, task_id: str) -> Meta | None:
        with errors.translate_errors("get result"):
            data = await self.commands.get(self.keys.result(task_id))
        return None if data is None else self.decode(data)

    def listen(self, task_id: str, listener: Listener, failed: asyncio.Future[Any]) -> None:
        """Tell ``listener`` every record of ``task_id`` from its current one on; a failure
        to reach Redis is set on ``failed``."""
        watched = self.watched.get(task_id)
        if watched is None:
            watched = self.watched[task_id] = Watched(self.keys, task_id)
        watched.listeners.append(listener)
        self._fail_to[listener] = failed
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        elif self._blocked and not self._woken:
            self._woken = True
            self._waking = asyncio.ensure_future(self._wake())

    def forget(self, task_id: str, listener: Listener) -> None:
        """Stop telling ``listener`` (its await is over); a task no one awaits any more
        leaves the next round."""
        self._fail_to.pop(listener, None)
        watched = self.watched.get(task_id)
        if watched is None:
            return
        if listener in watched.listeners:
            watched.listeners.remove(listener)
        if not watched.listeners:  # (a listener that was done has left already)
            del self.watched[task_id]

    async def stop(self) -> None:
        """End the rounds (their awaits fail with CancelledError): the client is closing."""
        for task in (self._runner, self._waking):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _wake(self) -> None:
        """Cut the blocking read short so the new await joins the next round."""
        if not self._can_unblock or self._reader_id is None:
            return
        round_no = self.rounds
        try:
            # 0: the reader is not blocking yet (the round's scripts are still running
            # ahead of its XREAD): ask again, for as long as that round lasts.
            while self._blocked and self.rounds == round_no:
                unblocked = await self.commands.execute_command(
                    "CLIENT", "UNBLOCK", self._reader_id
                )
                if unblocked:
                    return
                await asyncio.sleep(UNBLOCK_RETRY)
        except errors.ResponseError:
            self._can_unblock = False  # a server without it: new awaits wait out the slice
        except errors.RedisError:
            pass  # the round in progress will meet the same trouble and report it

    async def _run(self) -> None:
        try:
            while self.watched:
                await self._round()
        except errors.RedisError as exc:
            self._fail_all(errors.translated("wait for result", exc))
        except BaseException as exc:
            self._fail_all(exc)
            raise

    def _fail_all(self, exc: BaseException) -> None:
        for future in self._fail_to.values():
            if not future.done():
                future.set_exception(exc)
        self._fail_to.clear()
        self.watched.clear()

    async def _round(self) -> None:
        if self._reader_id is None:  # first round, or a new connection: load, ask its id
            await self.reader.script_load(self.source)
            self._reader_id = int(await self.reader.client_id())
        watched = list(self.watched.values())
        pipe = self.reader.pipeline(transaction=False)
        for item in watched:
            pipe.evalsha(self.sha, 3, *item.keys, WAITING_MS, NOTIFY_SECONDS)
        pipe.xread({item.stream: item.last_id for item in watched}, block=SLICE_MS)
        self._blocked, self._woken = True, False
        try:
            replies = await pipe.execute(raise_on_error=False)
        except errors.REDIS_ERRORS:
            self._reader_id = None  # a new connection has a new id
            raise
        finally:
            self._blocked = False
        self.rounds += 1
        if any(isinstance(reply, errors.NoScriptError) for reply in replies[:-1]):
            self._reader_id = None  # Redis restarted: load the script, go again
            return
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        self._deliver(watched, _entries_by_stream(replies[-1]))

    def _deliver(self, watched: list[Watched], entries: dict[str, list[tuple[Any, Any]]]) -> None:
        for item in watched:
            found = entries.get(item.stream, [])
            if not item.seen:  # the first read: from the current record on
                item.seen = True
                found = found[-1:]
                if not found:
                    self._tell(item, _pending(item.task_id), False)
            for entry_id, data in found:
                item.last_id = entry_id
                self._tell(item, self.decode(data), True)

    def _tell(self, item: Watched, meta: Meta, stored: bool) -> None:
        for listener in list(item.listeners):
            if listener(meta, stored):
                with contextlib.suppress(ValueError):
                    item.listeners.remove(listener)
        if not item.listeners and self.watched.get(item.task_id) is item:
            del self.watched[item.task_id]  # out of the next round already


async def _next(
    records: asyncio.Queue[Meta], failed: asyncio.Future[Meta], timeout: float | None, task: str
) -> Meta:
    """The next record told, or the waiter's failure, or TimeoutError after ``timeout``."""
    if not records.empty():
        return records.get_nowait()
    taken = asyncio.ensure_future(records.get())
    try:
        await asyncio.wait((taken, failed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not taken.done():
            taken.cancel()
    if taken.done() and not taken.cancelled():
        return taken.result()
    if failed.done():
        return failed.result()  # raises what stopped the waiter
    raise TimeoutError(f"The operation timed out ({timeout}s) waiting for task {task}")


def _entries_by_stream(reply: Any) -> dict[str, list[tuple[Any, Any]]]:
    """``{stream: [(entry id, record)]}`` from redis-py's XREAD reply; entries whose field
    is not ``r`` (the marker a stream is made with) hold no record."""
    found: dict[str, list[tuple[Any, Any]]] = {}
    for stream, entries in reply or ():
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        records = found.setdefault(name, [])
        for entry_id, fields in entries:
            data = fields.get(b"r", fields.get("r")) if isinstance(fields, dict) else None
            if data is not None:
                records.append((entry_id, data))
    return found


def _pending(task_id: str) -> Meta:
    return {"status": states.PENDING, "result": None, "traceback": None, "children": [],
            "date_done": None, "task_id": task_id}  # fmt: skip
