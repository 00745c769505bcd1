"""Flower's HTTP API: the same paths, methods, parameters and JSON, so scripts written for
Flower work unchanged. Handlers are plain functions: Starlette runs them in its thread pool,
where waiting on Redis or on the workers' replies blocks no other request."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .. import states
from ..exceptions import MiniceleryError
from .queries import TaskQuery, select_tasks, task_info

if TYPE_CHECKING:
    from .service import Dashboard

DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # Flower's format for ``eta`` and ``expires``
TRUE = ("1", "true", "yes", "on", "y")


class ApiError(Exception):
    """An answer other than 200, with Flower's status code and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").strip().lower() in TRUE


def _number(
    params: Mapping[str, str],
    name: str,
    kind: type = int,
    default: Any = None,
    required: bool = False,
) -> Any:
    value = params.get(name)
    if value in (None, ""):
        if required:
            raise ApiError(400, f"Missing argument {name}")
        return default
    try:
        return kind(value)
    except ValueError as exc:
        raise ApiError(400, f"Invalid argument {name}") from exc


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise ApiError(400, f"Missing argument {name}")
    return value


def handler(func: Any) -> Any:
    """Turn ApiError and our own errors into Flower's plain error answers."""

    def wrapped(request: Request, *args: Any) -> Response:
        try:
            answer = func(request, *args)
        except ApiError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        except MiniceleryError as exc:
            return PlainTextResponse(str(exc), status_code=503)
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    wrapped.__name__ = func.__name__
    return wrapped


# -- workers ---------------------------------------------------------------------------------
@handler
def list_workers(request: Request) -> Any:
    dashboard = _dashboard(request)
    workername = request.query_params.get("workername") or None
    if _flag(request, "refresh"):
        dashboard.inspector.refresh(workername, expected=dashboard.expected_workers())
    if _flag(request, "status"):
        return {w.hostname: w.alive for w in dashboard.collector.state.workers.values()}
    workers = dashboard.inspector.snapshot()
    if workername:
        if workername not in workers:
            raise ApiError(404, f"Unknown worker '{workername}'")
        return {workername: workers[workername]}
    return workers


def _worker(request: Request) -> tuple[Dashboard, str]:
    dashboard = _dashboard(request)
    name = request.path_params["workername"]
    if not dashboard.is_worker(name):
        raise ApiError(404, f"Unknown worker '{name}'")
    return dashboard, name


def _reply(response: Any, workername: str, failure: str, success: str | None = None) -> Any:
    """Flower's answer to a command sent with a reply: the worker's ``ok``, or 403."""
    for item in response or ():
        reply = item.get(workername) if isinstance(item, dict) else None
        if isinstance(reply, dict) and "ok" in reply:
            return {"message": success or reply["ok"]}
        if isinstance(reply, dict):
            raise ApiError(403, f"{failure}: {reply.get('error', 'Unknown reason')}")
    raise ApiError(403, f"{failure}: Unknown reason")


@handler
def worker_shutdown(request: Request) -> Any:
    dashboard, name = _worker(request)
    dashboard.app.control.broadcast("shutdown", destination=[name])
    return {"message": "Shutting down!"}


@handler
def pool_restart(request: Request) -> Any:
    dashboard, name = _worker(request)
    response = dashboard.app.control.broadcast(
        "pool_restart", arguments={"reload": False}, destination=[name], reply=True
    )
    return _reply(
        response, name, f"Failed to restart the '{name}' pool", f"Restarting '{name}' worker's pool"
    )


@handler
def pool_grow(request: Request) -> Any:
    dashboard, name = _worker(request)
    n = _number(request.query_params, "n", int, 1)
    response = dashboard.app.control.pool_grow(n=n, reply=True, destination=[name])
    return _reply(
        response,
        name,
        f"Failed to grow '{name}' worker's pool",
        f"Growing '{name}' worker's pool by {n}",
    )


@handler
def pool_shrink(request: Request) -> Any:
    dashboard, name = _worker(request)
    n = _number(request.query_params, "n", int, 1)
    response = dashboard.app.control.pool_shrink(n=n, reply=True, destination=[name])
    return _reply(
        response,
        name,
        f"Failed to shrink '{name}' worker's pool",
        f"Shrinking '{name}' worker's pool by {n}",
    )


@handler
def pool_autoscale(request: Request) -> Any:
    dashboard, name = _worker(request)
    params = request.query_params
    low = _number(params, "min", required=True)
    high = _number(params, "max", required=True)
    response = dashboard.app.control.broadcast(
        "autoscale", arguments={"min": low, "max": high}, destination=[name], reply=True
    )
    return _reply(
        response,
        name,
        f"Failed to autoscale '{name}' worker",
        f"Autoscaling '{name}' worker (min={low}, max={high})",
    )


@handler
def add_consumer(request: Request) -> Any:
    dashboard, name = _worker(request)
    queue = _required(request.query_params, "queue")
    response = dashboard.app.control.broadcast(
        "add_consumer", arguments={"queue": queue}, destination=[name], reply=True
    )
    return _reply(response, name, f"Failed to add '{queue}' consumer to '{name}' worker")


@handler
def cancel_consumer(request: Request) -> Any:
    dashboard, name = _worker(request)
    queue = _required(request.query_params, "queue")
    response = dashboard.app.control.broadcast(
        "cancel_consumer", arguments={"queue": queue}, destination=[name], reply=True
    )
    return _reply(response, name, f"Failed to cancel '{queue}' consumer from '{name}' worker")


# -- tasks -----------------------------------------------------------------------------------
@handler
def list_tasks(request: Request) -> Any:
    query = TaskQuery.from_params(request.query_params)
    dashboard = _dashboard(request)
    return {record["uuid"]: record for record in select_tasks(dashboard.history, query)}


@handler
def task_types(request: Request) -> Any:
    return {"task-types": sorted(_dashboard(request).task_types())}


@handler
def task_info_handler(request: Request) -> Any:
    task_id = request.path_params["taskid"]
    info = task_info(_dashboard(request).history, task_id)
    if info is None:
        raise ApiError(404, f"Unknown task '{task_id}'")
    return info


def _result(response: dict[str, Any], result: Any) -> dict[str, Any]:
    value = result.result
    if result.state == states.FAILURE:
        response.update(result=repr(value), traceback=result.traceback)
    else:
        response["result"] = _safe(value)
    return response


def _safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


@handler
def task_result(request: Request) -> Any:
    task_id = request.path_params["taskid"]
    timeout = _number(request.query_params, "timeout", float)
    result = _dashboard(request).app.AsyncResult(task_id)
    response = {"task-id": task_id, "state": result.state}
    if timeout:
        result.get(timeout=timeout, propagate=False)
        response["state"] = result.state
        return _result(response, result)
    return _result(response, result) if result.ready() else response


async def _task_args(request: Request) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    body = await request.body()
    try:
        options = json.loads(body) if body else {}
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    if not isinstance(options, dict):
        raise ApiError(400, "invalid options")
    args, kwargs = options.pop("args", []), options.pop("kwargs", {})
    if not isinstance(args, (list, tuple)):
        raise ApiError(400, "args must be an array")
    try:
        _normalize(options)
    except ValueError as exc:
        raise ApiError(400, "Invalid option") from exc
    return list(args), dict(kwargs or {}), options


def _normalize(options: dict[str, Any]) -> None:
    if "eta" in options:
        options["eta"] = dt.datetime.strptime(options["eta"], DATE_FORMAT)
    if "countdown" in options:
        options["countdown"] = float(options["countdown"])
    if "expires" in options:
        try:
            options["expires"] = float(options["expires"])
        except ValueError:
            options["expires"] = dt.datetime.strptime(options["expires"], DATE_FORMAT)


def sending(mode: str) -> Any:
    """``apply`` (send and wait), ``async-apply`` (a registered task) or ``send-task`` (any
    name), as Flower's three handlers."""

    async def endpoint(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            args, kwargs, options = await _task_args(request)
            answer = await run_in_threadpool(_send, request, mode, args, kwargs, options)
        except ApiError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        except MiniceleryError as exc:
            return PlainTextResponse(str(exc), status_code=503)
        return JSONResponse(answer)

    return endpoint


def _send(
    request: Request, mode: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    app = _dashboard(request).app
    name = request.path_params["taskname"]
    if mode == "send-task":
        result = app.send_task(name, args=args, kwargs=kwargs, **options)
    else:
        task = app.tasks.get(name)
        if task is None:
            raise ApiError(404, f"Unknown task '{name}'")
        try:
            result = task.apply_async(args=args, kwargs=kwargs, **options)
        except TypeError as exc:
            raise ApiError(400, str(exc)) from exc
    response: dict[str, Any] = {"task-id": result.id}
    if mode == "apply":
        result.get(propagate=False)
        _result(response, result)
    response["state"] = result.state
    return response


@handler
def revoke(request: Request) -> Any:
    task_id = request.path_params["taskid"]
    signal = request.query_params.get("signal") or "SIGTERM"
    _dashboard(request).app.control.revoke(
        task_id, terminate=_flag(request, "terminate"), signal=signal
    )
    return {"message": f"Revoked '{task_id}'"}


@handler
def abort(request: Request) -> Any:
    """Celery's abortable tasks read ABORTED from the result backend: set it, unless the task
    has already finished."""
    task_id = request.path_params["taskid"]
    app = _dashboard(request).app
    if app.AsyncResult(task_id).state not in states.READY_STATES:
        app.backend.store(
            task_id,
            {
                "status": "ABORTED",
                "result": None,
                "traceback": None,
                "children": [],
                "task_id": task_id,
            },
        )
    return {"message": f"Aborted '{task_id}'"}


def _limit_target(request: Request, params: dict[str, str]) -> tuple[Dashboard, str, str | None]:
    dashboard = _dashboard(request)
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
        rate = _required(params, "ratelimit")
        response = control.rate_limit(name, rate, reply=True, destination=destination)
        failure = "Failed to set rate limit"
    else:
        soft, hard = _number(params, "soft", float), _number(params, "hard", float)
        response = control.time_limit(
            name, soft=soft, hard=hard, reply=True, destination=destination
        )
        failure = "Failed to set timeouts"
    if workername:
        return _reply(response, workername, failure)
    return {"message": _first_ok(response) or "no worker replied"}


def _first_ok(response: Any) -> str | None:
    for item in response or ():
        for reply in item.values():
            if isinstance(reply, dict) and "ok" in reply:
                return str(reply["ok"])
    return None


@handler
def queue_lengths(request: Request) -> Any:
    dashboard = _dashboard(request)
    sizes = dashboard.queue_sizes()
    return {"active_queues": [{"name": q, "messages": n} for q, n in sizes.items()]}


@handler
def replay_dead(request: Request) -> Any:
    """Not Flower's: put dead letters (``id``, repeatable, or all) back on their queues."""
    ids = request.query_params.getlist("id") or None
    count = _dashboard(request).app.broker.replay_dead(ids)
    return {
        "message": f"Replayed {count} dead {'letter' if count == 1 else 'letters'}",
        "replayed": count,
    }


def routes() -> list[Route]:
    post, get = ["POST"], ["GET"]
    return [
        Route("/api/workers", list_workers, methods=get),
        Route("/api/worker/shutdown/{workername}", worker_shutdown, methods=post),
        Route("/api/worker/pool/restart/{workername}", pool_restart, methods=post),
        Route("/api/worker/pool/grow/{workername}", pool_grow, methods=post),
        Route("/api/worker/pool/shrink/{workername}", pool_shrink, methods=post),
        Route("/api/worker/pool/autoscale/{workername}", pool_autoscale, methods=post),
        Route("/api/worker/queue/add-consumer/{workername}", add_consumer, methods=post),
        Route("/api/worker/queue/cancel-consumer/{workername}", cancel_consumer, methods=post),
        Route("/api/tasks", list_tasks, methods=get),
        Route("/api/task/types", task_types, methods=get),
        Route("/api/task/info/{taskid}", task_info_handler, methods=get),
        Route("/api/task/result/{taskid}", task_result, methods=get),
        Route("/api/task/apply/{taskname}", sending("apply"), methods=post),
        Route("/api/task/async-apply/{taskname}", sending("async-apply"), methods=post),
        Route("/api/task/send-task/{taskname}", sending("send-task"), methods=post),
        Route("/api/task/revoke/{taskid}", revoke, methods=post),
        Route("/api/task/abort/{taskid}", abort, methods=post),
        Route("/api/task/rate-limit/{taskname}", limits("rate-limit"), methods=post),
        Route("/api/task/timeout/{taskname}", limits("timeout"), methods=post),
        Route("/api/queues/length", queue_lengths, methods=get),
        Route("/api/dead/replay", replay_dead, methods=post),
    ]
