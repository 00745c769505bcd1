"""The web application: server-rendered pages (Jinja2), each with a live part that is fetched
again whenever the server-sent event stream says something changed, plus ``/metrics`` and
Flower's API, behind HTTP basic authentication."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hmac
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from .api import routes as api_routes
from .charts import rate_lines, runtime_bars
from .metrics import CONTENT_TYPE
from .pages import task_page, tasks_page
from .service import Dashboard

HERE = Path(__file__).resolve().parent
STREAM_PERIOD = 0.5  # seconds between checks for news on the event stream to the pages
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _clock(when: float | None) -> str:
    """An event time as UTC date and time to the millisecond."""
    if not when:
        return ""
    stamp = dt.datetime.fromtimestamp(float(when), dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


templates.env.filters["clock"] = _clock


class BasicAuth:
    """HTTP basic authentication in front of everything (pages, API, metrics) but
    ``open_paths``, accepting any of ``credentials`` (``user:password`` pairs)."""

    def __init__(
        self, app: ASGIApp, credentials: Sequence[str], open_paths: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.credentials = [c.encode() for c in credentials]
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "Unauthorized",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="minicelery"'},
        )
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        # Compare against every pair, always: no early exit that timing could reveal.
        matches = [hmac.compare_digest(given, pair) for pair in self.credentials]
        return any(matches)


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _render(request: Request, name: str, **context: Any) -> Response:
    dashboard = _dashboard(request)
    context.update(
        root=request.scope.get("root_path", ""), counts=dashboard.counts(), now=time.time()
    )
    return templates.TemplateResponse(request, name, context)


def workers(request: Request) -> Response:
    return _render(request, _page(request, "workers"), rows=_dashboard(request).worker_rows())


def queues(request: Request) -> Response:
    dashboard = _dashboard(request)
    collector = dashboard.collector
    collector.poll_queues()
    letters = dashboard.app.broker.dead_letters()[-50:]
    return _render(
        request,
        _page(request, "queues"),
        queues=dashboard.queue_sizes(),
        scheduled=collector.scheduled,
        dead=collector.dead,
        letters=letters,
    )


def charts(request: Request) -> Response:
    collector = _dashboard(request).collector
    start, series = collector.rate_series()
    lines, top = rate_lines(series)
    runtimes = {name: runtime_bars(counts) for name, counts in sorted(collector.runtimes.items())}
    return _render(
        request, _page(request, "charts"), lines=lines, top=top, start=start, runtimes=runtimes
    )


def tasks(request: Request) -> Response:
    context = tasks_page(_dashboard(request), request.query_params)
    return _render(request, _page(request, "tasks"), **context)


def task(request: Request) -> Response:
    context = task_page(_dashboard(request), request.path_params["taskid"])
    if context is None:
        return PlainTextResponse(f"Unknown task '{request.path_params['taskid']}'", 404)
    return _render(request, _page(request, "task"), **context)


def _page(request: Request, name: str) -> str:
    """The whole page, or only its live part (``/live`` at the end of the path)."""
    return f"_{name}.html" if request.url.path.endswith("/live") else f"{name}.html"


async def stream(request: Request) -> Response:
    """Server-sent events: a ``change`` event whenever the dashboard's view moved on, at
    most every ``STREAM_PERIOD`` seconds; a comment every 15 s keeps proxies from closing."""
    dashboard = _dashboard(request)

    async def events() -> Any:
        seen, quiet = -1, 0.0
        yield "retry: 2000\n\n"
        while not dashboard.stopping.is_set() and not await request.is_disconnected():
            version = dashboard.collector.version
            if version != seen:
                seen, quiet = version, 0.0
                yield f"event: change\ndata: {version}\n\n"
            elif quiet >= 15:
                quiet = 0.0
                yield ": idle\n\n"
            await asyncio.sleep(STREAM_PERIOD)
            quiet += STREAM_PERIOD

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def metrics(request: Request) -> Response:
    """Prometheus's exposition format; queue lengths are read afresh for each scrape."""
    dashboard = _dashboard(request)
    dashboard.collector.poll_queues()
    return Response(dashboard.metrics.exposition(), media_type=CONTENT_TYPE)


def healthcheck(request: Request) -> Response:
    return PlainTextResponse("OK")


def index(request: Request) -> Response:
    return RedirectResponse(request.scope.get("root_path", "") + "/workers")


def page_routes() -> list[Route | Mount]:
    pages: list[Route | Mount] = []
    for path, endpoint in (
        ("/workers", workers),
        ("/tasks", tasks),
        ("/queues", queues),
        ("/charts", charts),
        ("/task/{taskid}", task),
    ):
        pages += [Route(path, endpoint), Route(path + "/live", endpoint)]
    return [
        Route("/", index),
        *pages,
        Route("/stream", stream),
        Route("/metrics", metrics),
        Route("/healthcheck", healthcheck),
        *api_routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]


def create_app(
    dashboard: Dashboard, credentials: Sequence[str] = (), url_prefix: str = ""
) -> ASGIApp:
    """The ASGI application: the dashboard's routes under ``url_prefix``, behind basic
    authentication unless ``credentials`` is empty (the caller decides when that is allowed)."""
    inner = Starlette(routes=page_routes())
    inner.state.dashboard = dashboard
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
    app: ASGIApp = inner
    if prefix:
        outer = Starlette(routes=[Mount(prefix, app=inner)])
        outer.state.dashboard = dashboard
        app = outer
    if not credentials:
        return app
    return BasicAuth(app, credentials, open_paths=[prefix + "/healthcheck"])  # for load balancers
