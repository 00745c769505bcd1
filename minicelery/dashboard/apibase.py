"""What the API's handlers share: Flower's error answers, its argument parsing, and how a
worker's reply to a command becomes the answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..exceptions import MiniceleryError

if TYPE_CHECKING:
    from .service import Dashboard

TRUE = ("1", "true", "yes", "on", "y")


class ApiError(Exception):
    """An answer other than 200, with Flower's status code and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").strip().lower() in TRUE


def number(
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


def required(params: Mapping[str, str], name: str) -> str:
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


def reply(response: Any, workername: str, failure: str, success: str | None = None) -> Any:
    """Flower's answer to a command sent with a reply: the worker's ``ok``, or 403."""
    for item in response or ():
        reply = item.get(workername) if isinstance(item, dict) else None
        if isinstance(reply, dict) and "ok" in reply:
            return {"message": success or reply["ok"]}
        if isinstance(reply, dict):
            raise ApiError(403, f"{failure}: {reply.get('error', 'Unknown reason')}")
    raise ApiError(403, f"{failure}: Unknown reason")


def first_ok(response: Any) -> str | None:
    for item in response or ():
        for reply in item.values():
            if isinstance(reply, dict) and "ok" in reply:
                return str(reply["ok"])
    return None
