"""Flower's worker-control endpoints (``/api/worker/...``) and its per-task limits
(``/api/task/rate-limit``, ``/api/task/timeout``): commands broadcast to the named worker,
answered with its reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .apibase import ApiError, dashboard_of, first_ok, flag, handler, number, reply, required

if TYPE_CHECKING:
    from .service import Dashboard


@handler
def list_workers(request: Request) -> Any:
    dashboard = dashboard_of(request)
    workername = request.query_params.get("workername") or None
    if flag(request, "refresh"):
        dashboard.inspector.refresh(workername, expected=dashboard.expected_workers())
    if flag(request, "status"):
        return {w.hostname: w.alive for w in dashboard.collector.state.workers.values()}
    workers = dashboard.inspector.snapshot()
    if workername:
        if workername not in workers:
            raise ApiError(404, f"Unknown worker '{workername}'")
        return {workername: workers[workername]}
    return workers


def _worker(request: Request) -> tuple[Dashboard, str]:
    dashboard = dashboard_of(request)
    name = request.path_params["workername"]
    if not dashboard.is_worker(name):
        raise ApiError(404, f"Unknown worker '{name}'")
    return dashboard, name


@handler
def worker_shutdown(request: Request) -> Any:
    dashboard, name = _worker(request)
    dashboard.app.control.broadcast("shutdown", destination=[name])
    return {"message": "Shutting down!"}


@handler
def pool_restart(request: Request) -> Any:
    dashboard, name = _worker(request)
    dashboard.refresh_soon()
    response = dashboard.app.control.broadcast(
        "pool_restart", arguments={"reload": False}, destination=[name], reply=True
    )
    return reply(
        response, name, f"Failed to restart the '{name}' pool", f"Restarting '{name}' worker's pool"
    )


@handler
def pool_grow(request: Request) -> Any:
    return _resize(request, "grow")


@handler
def pool_shrink(request: Request) -> Any:
    return _resize(request, "shrink")


def _resize(request: Request, how: str) -> Any:
    """``pool/grow`` and ``pool/shrink``: Flower's replies, the workers' command."""
    dashboard, name = _worker(request)
    dashboard.refresh_soon()
    n = number(request.query_params, "n", int, 1)
    command = getattr(dashboard.app.control, f"pool_{how}")
    response = command(n=n, reply=True, destination=[name])
    verb = "Growing" if how == "grow" else "Shrinking"
    return reply(
        response,
        name,
        f"Failed to {how} '{name}' worker's pool",
        f"{verb} '{name}' worker's pool by {n}",
    )


@handler
def pool_autoscale(request: Request) -> Any:
    dashboard, name = _worker(request)
    dashboard.refresh_soon()
    params = request.query_params
    low = number(params, "min", required=True)
    high = number(params, "max", required=True)
    response = dashboard.app.control.broadcast(
        "autoscale", arguments={"min": low, "max": high}, destination=[name], reply=True
    )
    return reply(
        response,
        name,
        f"Failed to autoscale '{name}' worker",
        f"Autoscaling '{name}' worker (min={low}, max={high})",
    )


@handler
def add_consumer(request: Request) -> Any:
    dashboard, name = _worker(request)
    dashboard.refresh_soon()
    queue = required(request.query_params, "queue")
    response = dashboard.app.control.broadcast(
        "add_consumer", arguments={"queue": queue}, destination=[name], reply=True
    )
    return reply(response, name, f"Failed to add '{queue}' consumer to '{name}' worker")


@handler
def cancel_consumer(request: Request) -> Any:
    dashboard, name = _worker(request)
    dashboard.refresh_soon()
    queue = required(request.query_params, "queue")
    response = dashboard.app.control.broadcast(
        "cancel_consumer", arguments={"queue": queue}, destination=[name], reply=True
    )
    return reply(response, name, f"Failed to cancel '{queue}' consumer from '{name}' worker")


def _limit_target(request: Request, params: dict[str, str]) -> tuple[Dashboard, str, str | None]:
    dashboard = dashboard_of(request)
    name = request.path_params["taskname"]
    if name not in dashboard.app.tasks:
        raise ApiError(404, f"Unknown task '{name}'")
    workername = params.get("workername")
    if workername is not None and not dashboard.is_worker(workername):
        raise ApiError(404, f"Unknown worker '{workername}'")
    return dashboard, name, workername


async def _form(request: Request) -> dict[str, str]:
    """Flower reads these arguments from the query or a form body alike."""
    form = await request.form()
    return {**request.query_params, **{k: str(v) for k, v in form.items()}}


def limits(kind: str) -> Any:
    """``rate-limit`` (``ratelimit``) or ``timeout`` (``soft``, ``hard``) for a task."""

    async def endpoint(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        params = await _form(request)
        answer: Response = await run_in_threadpool(_limit_handler, request, kind, params)
        return answer

    return endpoint


@handler
def _limit_handler(request: Request, kind: str, params: dict[str, str]) -> Any:
    dashboard, name, workername = _limit_target(request, params)
    destination = [workername] if workername else None
    control = dashboard.app.control
    if kind == "rate-limit":
        rate = required(params, "ratelimit")
        response = control.rate_limit(name, rate, reply=True, destination=destination)
        failure = "Failed to set rate limit"
    else:
        soft, hard = number(params, "soft", float), number(params, "hard", float)
        response = control.time_limit(
            name, soft=soft, hard=hard, reply=True, destination=destination
        )
        failure = "Failed to set timeouts"
    if workername:
        return reply(response, workername, failure)
    return {"message": first_ok(response) or "no worker replied"}
