"""Fetching pages with asyncio from ``async def`` tasks.

Each prefork child runs its async tasks on an event loop of its own, many at once (up to
``worker_async_concurrency``, 100 by default): while one task waits for a server, the others
go on. ``fetch`` gets one page; ``crawl`` gets many at once inside one task with
``asyncio.gather``. Only the standard library is used (``asyncio.open_connection``); an HTTP
client such as aiohttp or httpx works the same way.

With no broker configured both the worker and the client use the embedded Redis; set
MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND (e.g. ``redis://localhost:6379/0``) in
both shells to use a Redis server.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from minicelery import Celery
from minicelery.utils.log import get_task_logger

app = Celery("tasks")
logger = get_task_logger(__name__)


async def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """``GET url`` over HTTP/1.0 (plain http only): the status and the body."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 80
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True,
          retry_kwargs={"max_retries": 3})  # fmt: skip
async def fetch(self: Any, url: str) -> dict[str, Any]:
    """One page: its status and size. A refused connection is retried with backoff."""
    status, body = await get(url)
    logger.info("%s: %s (%d bytes, attempt %d)", url, status, len(body), self.request.retries + 1)
    return {"url": url, "status": status, "bytes": len(body)}


@app.task
async def crawl(urls: list[str]) -> dict[str, int]:
    """Many pages at once in one task: ``{url: status}``."""
    results = await asyncio.gather(*(get(url) for url in urls), return_exceptions=True)
    pairs = zip(urls, results, strict=True)
    return {url: (r[0] if isinstance(r, tuple) else 0) for url, r in pairs}
