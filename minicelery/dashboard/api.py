"""Flower's HTTP API: the same paths, methods, parameters and JSON, so scripts written for
Flower work unchanged. Handlers are plain functions: Starlette runs them in its thread pool,
where waiting on Redis or on the workers' replies blocks no other request."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .. import states
from ..exceptions import MiniceleryError
from . import api_control as control
from .apibase import ApiError, dashboard_of, flag, handler, number
from .queries import TaskQuery, select_tasks, task_info

DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # Flower's format for ``eta`` and ``expires``


# -- tasks -----------------------------------------------------------------------------------
@handler
def list_tasks(request: Request) -> Any:
    query = TaskQuery.from_params(request.query_params)
    dashboard = dashboard_of(request)
    return {record["uuid"]: record for record in select_tasks(dashboard.history, query)}


@handler
def task_types(request: Request) -> Any:
    return {"task-types": sorted(dashboard_of(request).task_types())}


@handler
def task_info_handler(request: Request) -> Any:
    task_id = request.path_params["taskid"]
    info = task_info(dashboard_of(request).history, task_id)
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
    timeout = number(request.query_params, "timeout", float)
    result = dashboard_of(request).app.AsyncResult(task_id)
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
    app = dashboard_of(request).app
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
    dashboard_of(request).app.control.revoke(
        task_id, terminate=flag(request, "terminate"), signal=signal
    )
    return {"message": f"Revoked '{task_id}'"}


@handler
def abort(request: Request) -> Any:
    """Celery's abortable tasks read ABORTED from the result backend: set it, unless the task
    has already finished."""
    task_id = request.path_params["taskid"]
    app = dashboard_of(request).app
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


@handler
def queue_lengths(request: Request) -> Any:
    dashboard = dashboard_of(request)
    sizes = dashboard.queue_sizes()
    return {"active_queues": [{"name": q, "messages": n} for q, n in sizes.items()]}


@handler
def replay_dead(request: Request) -> Any:
    """Not Flower's: put dead letters (``id``, repeatable, or all) back on their queues."""
    ids = request.query_params.getlist("id") or None
    count = dashboard_of(request).app.broker.replay_dead(ids)
    return {
        "message": f"Replayed {count} dead {'letter' if count == 1 else 'letters'}",
        "replayed": count,
    }


def routes() -> list[Route]:
    post, get = ["POST"], ["GET"]
    return [
        Route("/api/workers", control.list_workers, methods=get),
        Route("/api/worker/shutdown/{workername}", control.worker_shutdown, methods=post),
        Route("/api/worker/pool/restart/{workername}", control.pool_restart, methods=post),
        Route("/api/worker/pool/grow/{workername}", control.pool_grow, methods=post),
        Route("/api/worker/pool/shrink/{workername}", control.pool_shrink, methods=post),
        Route("/api/worker/pool/autoscale/{workername}", control.pool_autoscale, methods=post),
        Route("/api/worker/queue/add-consumer/{workername}", control.add_consumer, methods=post),
        Route(
            "/api/worker/queue/cancel-consumer/{workername}", control.cancel_consumer, methods=post
        ),
        Route("/api/tasks", list_tasks, methods=get),
        Route("/api/task/types", task_types, methods=get),
        Route("/api/task/info/{taskid}", task_info_handler, methods=get),
        Route("/api/task/result/{taskid}", task_result, methods=get),
        Route("/api/task/apply/{taskname}", sending("apply"), methods=post),
        Route("/api/task/async-apply/{taskname}", sending("async-apply"), methods=post),
        Route("/api/task/send-task/{taskname}", sending("send-task"), methods=post),
        Route("/api/task/revoke/{taskid}", revoke, methods=post),
        Route("/api/task/abort/{taskid}", abort, methods=post),
        Route("/api/task/rate-limit/{taskname}", control.limits("rate-limit"), methods=post),
        Route("/api/task/timeout/{taskname}", control.limits("timeout"), methods=post),
        Route("/api/queues/length", queue_lengths, methods=get),
        Route("/api/dead/replay", replay_dead, methods=post),
    ]
