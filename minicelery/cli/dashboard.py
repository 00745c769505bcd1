"""``minicelery dashboard``: the web dashboard, with Flower's option names. The dashboard
itself lives in the optional ``dashboard`` extra and is imported only when this runs."""

from __future__ import annotations

import click

from ..exceptions import ImproperlyConfigured
from ..utils.log import setup_logging
from .main import State, friendly_errors
from .worker import loglevel_option


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=5555,
    show_default=True,
    help="Port to serve on.",
)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--basic-auth",
    "basic_auth",
    multiple=True,
    metavar="USER:PASSWORD",
    help="Require HTTP basic authentication; repeat it or separate pairs with commas.",
)
@click.option(
    "--unauthenticated-loopback",
    is_flag=True,
    help="Serve without authentication; only allowed on a loopback --address.",
)
@click.option("--url-prefix", default="", help="Serve under this path, e.g. /flower.")
@click.option(
    "--max-tasks",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Tasks kept in the history in Redis.",
)
@click.option(
    "--max-task-age",
    type=click.FloatRange(1),
    default=86_400.0,
    show_default=True,
    help="Seconds a task is kept in the history.",
)
@click.option(
    "--enable-events/--no-enable-events",
    default=True,
    show_default=True,
    help="Turn task events on in running workers every 10 s, as Flower does.",
)
@loglevel_option()
@click.pass_obj
@friendly_errors
def dashboard(
    state: State,
    port: int,
    address: str,
    basic_auth: tuple[str, ...],
    unauthenticated_loopback: bool,
    url_prefix: str,
    max_tasks: int,
    max_task_age: float,
    enable_events: bool,
    loglevel: str,
) -> None:
    """A live web dashboard with Flower's HTTP API and /metrics (pip install
    'minicelery[dashboard]')."""
    try:
        from ..dashboard import check_exposure, parse_credentials, serve
    except ImportError as exc:
        raise ImproperlyConfigured(
            "the dashboard needs the 'dashboard' extra: "
            f"pip install 'minicelery[dashboard]' ({exc})"
        ) from exc
    credentials = parse_credentials(basic_auth)
    check_exposure(address, credentials, unauthenticated_loopback)
    setup_logging(loglevel.upper(), None, state.app.conf.worker_hijack_root_logger)
    serve(state.app, address, port, credentials, url_prefix, max_tasks, max_task_age, enable_events)
