"""Running the dashboard: who may reach it, and the ASGI server (uvicorn) it runs in."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)


def parse_credentials(values: Sequence[str]) -> list[str]:
    """``--basic-auth`` values as Flower takes them: repeated, or comma-separated
    ``user:password`` pairs."""
    pairs = [pair.strip() for value in values for pair in value.split(",") if pair.strip()]
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ImproperlyConfigured(f"--basic-auth expects user:password, not {pair!r}")
    return pairs


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, credentials: Sequence[str], unauthenticated: bool) -> None:
    """Refuse to serve without authentication, unless asked to explicitly and only on a
    loopback address (where only this machine's users can connect)."""
    if credentials:
        return
    if not unauthenticated:
        raise ImproperlyConfigured(
            "the dashboard needs --basic-auth user:password (or, on a loopback address only, "
            "--unauthenticated-loopback)"
        )
    if not is_loopback(address):
        raise ImproperlyConfigured(
            f"--unauthenticated-loopback needs a loopback --address, not {address!r}"
        )


def serve(
    app: Celery,
    address: str = "127.0.0.1",
    port: int = 5555,
    credentials: Sequence[str] = (),
    url_prefix: str = "",
    max_tasks: int = 100_000,
    max_task_age: float = 86_400.0,
    enable_events: bool = True,
) -> None:
    """Serve until SIGINT or SIGTERM, the event collector running beside the server."""
    import uvicorn

    from .service import Dashboard
    from .web import create_app

    dashboard = Dashboard(app, max_tasks, max_task_age, enable_events)
    asgi = create_app(dashboard, credentials, url_prefix)
    config = uvicorn.Config(
        asgi,
        host=address,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    dashboard.start()
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
    logger.warning(
        "Dashboard at http://%s:%s%s/ (%s)",
        address,
        port,
        prefix,
        "basic auth" if credentials else "no authentication, loopback only",
    )
    try:
        server.run()
    finally:
        dashboard.stop()
