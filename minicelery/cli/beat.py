"""``minicelery beat``: options, banner and logging, then the beat service until SIGTERM or
SIGINT. The beat module (and with it the Redis client) is imported only when beat runs."""

from __future__ import annotations

import datetime as dt
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..utils.log import setup_logging
from . import daemon
from .flags import drop_privileges
from .main import State, friendly_errors
from .worker import loglevel_option, mask_url

if TYPE_CHECKING:
    from ..app import Celery
    from ..beat import Service


def banner(app: Celery, service: Service, logfile: str | None, loglevel: str) -> str:
    from ..schedules import humanize_seconds

    broker_url, _ = app.resolved_urls()
    interval = service.max_interval
    return f"""minicelery beat v{__version__} is starting.
LocalTime -> {dt.datetime.now():%Y-%m-%d %H:%M:%S}
Configuration ->
    . broker -> {mask_url(broker_url)}
    . scheduler -> minicelery.beat.PersistentScheduler (state in Redis; several beats may run)
    . lease -> {humanize_seconds(service.lease_timeout)} ({service.owner})
    . entries -> {len(service.scheduler.schedule)}
    . logfile -> {logfile or "[stderr]"}@%{loglevel}
    . maxinterval -> {humanize_seconds(interval)} ({interval:g}s)"""


@click.command()
@loglevel_option("Logging level (INFO shows each task sent).")
@click.option("-f", "--logfile", help="Log to this file instead of stderr.")
@click.option(
    "--max-interval",
    type=click.FloatRange(0, min_open=True),
    help="Longest sleep between checks of the schedule, in seconds (default 300).",
)
@click.option(
    "-s",
    "--schedule",
    "schedule_filename",
    help="Accepted for Celery compatibility and ignored: the schedule's state is in Redis.",
)
@click.option(
    "-S",
    "--scheduler",
    help="Accepted for Celery compatibility: the beat has one scheduler, its state in Redis.",
)
@click.option(
    "--enable-remote-control/--no-enable-remote-control",
    "remote_control",
    default=None,
    help="Answer `inspect ping` (a health check); overrides beat_enable_remote_control.",
)
@click.option(
    "-n", "--hostname", help="Node name to answer remote control on (default celerybeat@%h)."
)
@click.option("--pidfile", help="Write the beat's PID here (refused while its process is alive).")
@click.option("--detach", is_flag=True, help="Run in the background, as a daemon.")
@click.option("--uid", help="Run as this user (name or id) once started.")
@click.option("--gid", help="Run as this group (name or id) once started.")
@click.option("--umask", callback=daemon.parse_umask, help="Umask of the beat (octal).")
@click.pass_obj
@friendly_errors
def beat(
    state: State,
    /,
    loglevel: str,
    logfile: str | None,
    max_interval: float | None,
    schedule_filename: str | None,
    scheduler: str | None,
    remote_control: bool | None,
    hostname: str | None,
    pidfile: str | None,
    detach: bool,
    uid: str | None,
    gid: str | None,
    umask: int | None,
) -> None:
    """Start the beat: send periodic tasks when they are due."""
    from ..beat import Service

    files = daemon.prepare("beat", pidfile, logfile, None)
    app = state.app
    daemon.start(files, detach, umask)  # with --detach, only the daemon returns
    setup_logging(loglevel.upper(), files.logfile, app.conf.worker_hijack_root_logger)
    drop_privileges(uid, gid)
    app.import_modules()
    app.finalize()
    service = Service(
        app, max_interval=max_interval, remote_control=remote_control, hostname=hostname
    )
    click.echo(banner(app, service, files.logfile, loglevel.upper()))
    if schedule_filename:
        click.echo(f"Note: --schedule {schedule_filename} is ignored; the state is in Redis.")
    if scheduler:
        click.echo(f"Note: --scheduler {scheduler} is ignored; the state is in Redis.")

    def on_signal(signum: int, frame: Any) -> None:
        service.stop()  # flag and wake-up only: the loop does the work

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    sys.exit(0)  # the pidfile is removed at exit
