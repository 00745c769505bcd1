"""``minicelery worker``: options, start-up banner, logging, then hand over to the worker."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .. import __version__, signals
from ..app import Celery
from ..utils.log import redirect_stdouts, setup_logging
from ..utils.sysinfo import AUTO_CONCURRENCY, is_auto_concurrency
from ..worker.controller import WorkController, WorkerOptions, expand_hostname
from ..worker.forkboot import AppSource
from ..worker.forkexec import remember_source
from . import daemon
from .flags import CeleryFlags, celery_worker_flags, drop_privileges, pool_option
from .main import State, friendly_errors

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")
F = TypeVar("F", bound=Callable[..., Any])


def loglevel_option(help: str = "Logging level.") -> Callable[[F], F]:
    """``-l/--loglevel``, as the worker and beat commands take it."""
    return click.option(
        "-l",
        "--loglevel",
        default="WARNING",
        show_default=True,
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        help=help,
    )


def mask_url(url: str | None) -> str:
    """Hide the password in a URL, as Celery's banner does."""
    if url is None:
        return "disabled://"
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1**@", url)


def platform_name() -> str:
    """``platform.platform()`` as it reads on Linux, without what it costs there: it runs
    ``uname -p`` in a subprocess for the processor (blank or the machine again, both left
    out of the name), which brings the subprocess module into the main process for good."""
    if not sys.platform.startswith("linux"):
        return platform.platform()
    uname = os.uname()
    libc, version = platform.libc_ver()
    parts = [uname.sysname, uname.release, uname.machine, "with", libc + version]
    return "-".join(part.replace(" ", "_").replace("/", "-") for part in parts if part)


def banner(app: Celery, worker: WorkController, broker_url: str, backend_url: str | None) -> str:
    tasks = sorted(name for name in app.tasks if not name.startswith("minicelery."))
    task_lines = "\n".join(f"  . {name}" for name in tasks) or "  (none)"
    queue_lines = "\n".join(
        f"                .> {q:<16} exchange={q}(direct) key={q}" for q in worker.queues
    )
    return f"""
 -------------- {worker.hostname} v{__version__}
--- ***** -----
-- ******* ---- {platform_name()} {__import__("datetime").datetime.now():%Y-%m-%d %H:%M:%S}
- *** --- * ---
- ** ---------- [config]
- ** ---------- .> app:         {app.main}:{id(app):#x}
- ** ---------- .> transport:   {mask_url(broker_url)}
- ** ---------- .> results:     {mask_url(backend_url)}
- *** --- * --- .> concurrency: {worker.concurrency} ({worker.options.pool})
-- ******* ---- .> task events: {"ON" if app.conf.worker_send_task_events else "OFF"}
--- ***** -----
 -------------- [queues]
{queue_lines}

[tasks]
{task_lines}
"""


@click.command()
@loglevel_option()
@click.option(
    "-f", "--logfile", help="Log to this file instead of stderr (%n, %h, %i expand as in Celery)."
)
@click.option(
    "-c",
    "--concurrency",
    callback=lambda ctx, param, value: _concurrency(value),
    help="Pool size, or 'auto' for the CPUs this worker may use (default: CPU count).",
)
@pool_option()
@click.option("-Q", "--queues", help="Comma-separated queues to consume from.")
@click.option("-X", "--exclude-queues", help="Comma-separated queues not to consume from.")
@click.option(
    "-n", "--hostname", default="celery@%h", show_default=True, help="Worker name (%h = host)."
)
@click.option(
    "--prefetch-multiplier", type=click.IntRange(1), help="Messages reserved per pool slot."
)
@click.option(
    "--async-concurrency",
    type=click.IntRange(1),
    help="async def tasks a prefork child runs at once on its event loop (the setting "
    "worker_async_concurrency, default 100).",
)
@click.option(
    "--max-tasks-per-child", type=click.IntRange(1), help="Replace a child after this many tasks."
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(1),
    help="Replace a child after a task leaves it above this resident memory (KiB).",
)
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), help="Hard time limit (s).")
@click.option(
    "--autoscale",
    callback=lambda ctx, param, value: _autoscale(value),
    help="MAX,MIN processes: grow under backlog, shrink when idle (prefork).",
)
@click.option(
    "--soft-time-limit", type=click.FloatRange(0, min_open=True), help="Soft time limit (s)."
)
@click.option(
    "-B", "--beat", is_flag=True, help="Also run the beat (periodic tasks) in this worker."
)
@click.option(
    "--pidfile", help="Write the main process's PID here (refused while its process is alive)."
)
@click.option(
    "-E", "--task-events", is_flag=True, help="Send task events (for monitors: minicelery events)."
)
@click.option(
    "--children-consume/--no-children-consume",
    default=None,
    help="Prefork children reserve, store and acknowledge by themselves (beyond Celery; "
    "the setting worker_children_consume).",
)
@click.option("-D", "--detach", is_flag=True, help="Run in the background, as a daemon.")
@click.option("--workdir", help="Change to this directory before loading the app.")
@click.option("--umask", callback=daemon.parse_umask, help="Umask of the worker (octal).")
@celery_worker_flags
@click.pass_obj
@friendly_errors
def worker(
    state: State,
    /,
    loglevel: str,
    logfile: str | None,
    concurrency: int | str | None,
    pool: str,
    queues: str | None,
    exclude_queues: str | None,
    hostname: str,
    prefetch_multiplier: int | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    time_limit: float | None,
    soft_time_limit: float | None,
    autoscale: tuple[int, int] | None,
    pidfile: str | None,
    detach: bool,
    workdir: str | None,
    umask: int | None,
    beat: bool = False,
    task_events: bool = False,
    children_consume: bool | None = None,
    async_concurrency: int | None = None,
    **celery_flags: Any,
) -> None:
    """Start a worker."""
    flags = CeleryFlags(**celery_flags)
    files = daemon.prepare(expand_hostname(hostname), pidfile, logfile, workdir)
    app = state.app
    if task_events:
        app.conf.worker_send_task_events = True
    if children_consume is not None:
        app.conf.worker_children_consume = children_consume
    if async_concurrency is not None:
        app.conf.worker_async_concurrency = async_concurrency
    if flags.include:
        app.conf.include = (*app.conf.include, *flags.includes())
    daemon.start(files, detach, umask)  # with --detach, only the daemon returns
    setup_logging(loglevel.upper(), files.logfile, app.conf.worker_hijack_root_logger)
    if state.app_spec:  # the pool's fork servers load the app again, by this name
        _remember_source(state, app, loglevel.upper(), files.logfile,
                         {"task_events": task_events, "children_consume": children_consume,
                          "include": bool(flags.include)})  # fmt: skip
    drop_privileges(flags.uid, flags.gid)  # after the pidfile and log file are open
    for note in flags.notes():
        click.echo(note, err=True)
    app.import_modules()
    app.finalize()
    app.ensure_configured()
    broker_url, backend_url = app.resolved_urls()
    options = WorkerOptions(
        hostname=hostname,
        concurrency=concurrency,
        pool=pool,
        queues=_split(queues),
        exclude_queues=_split(exclude_queues),
        prefetch_multiplier=prefetch_multiplier,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        autoscale=autoscale,
    )
    signals.worker_init.send(sender=None)
    controller = WorkController(app, options)
    if flags.purge:
        _purge(app, list(controller.queues))
    click.echo(banner(app, controller, broker_url, backend_url))
    if app.conf.worker_redirect_stdouts:
        redirect_stdouts(app.conf.worker_redirect_stdouts_level)  # before the pool forks
    if beat:
        _embed_beat(app)
    controller.install_signal_handlers()
    sys.exit(controller.start())  # the pidfile is removed at exit


def _remember_source(
    state: State, app: Celery, loglevel: str, logfile: str | None, given: dict[str, Any]
) -> None:
    """Tell the pool how this command loaded the app and what it changed in its settings:
    its fork servers, fresh interpreters, do the same."""
    changed: dict[str, Any] = {}
    if given["task_events"]:
        changed["worker_send_task_events"] = True
    if given["children_consume"] is not None:
        changed["worker_children_consume"] = given["children_consume"]
    if given["include"]:
        changed["include"] = tuple(app.conf.include)
    assert state.app_spec is not None
    remember_source(app, AppSource(state.app_spec, state.config, state.broker, state.backend,
                                   changed, loglevel, logfile, list(sys.path)))  # fmt: skip


def _concurrency(value: str | None) -> int | str | None:
    """``-c N`` (N >= 1; 0 leaves it to ``worker_concurrency``), or ``-c auto``."""
    if value is None or is_auto_concurrency(value):
        return AUTO_CONCURRENCY if value is not None else None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise click.BadParameter(f"a number of processes or 'auto', got {value!r}",
                                 param_hint="--concurrency")  # fmt: skip
    return number or None


def _autoscale(value: str | None) -> tuple[int, int] | None:
    """Celery's ``--autoscale=MAX,MIN`` (MIN defaults to 0 there; here to 1: a worker
    always keeps one process)."""
    if not value:
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        high = int(parts[0])
        low = int(parts[1]) if len(parts) > 1 and parts[1] else 1
    except ValueError as exc:
        raise click.BadParameter("expected MAX,MIN, e.g. 10,3", param_hint="--autoscale") from exc
    if not 0 < low <= high or len(parts) > 2:
        raise click.BadParameter("expected 0 < MIN <= MAX, e.g. 10,3", param_hint="--autoscale")
    return high, low


def _embed_beat(app: Celery) -> None:
    """``-B``: a beat in a thread of this process, started once the pool has forked (no
    thread may exist across a fork) and stopped as soon as the worker begins to shut down.
    The schedule is checked now, so a bad entry stops the worker before it starts."""
    from ..beat import EmbeddedService, load_entries

    load_entries(app, app.conf.beat_schedule, time.time)
    embedded: list[EmbeddedService] = []

    def start(sender: Any = None, **kwargs: Any) -> None:
        embedded.append(EmbeddedService(app))
        embedded[0].start()

    def stop(sender: Any = None, **kwargs: Any) -> None:
        for service in embedded:
            service.stop()

    signals.worker_ready.connect(start, weak=False, dispatch_uid="beat-start")
    signals.worker_shutting_down.connect(stop, weak=False, dispatch_uid="beat-stop")
    signals.worker_shutdown.connect(stop, weak=False, dispatch_uid="beat-stop")


def _purge(app: Celery, queues: list[str]) -> None:
    """``--purge``: drop what waits in the worker's queues, as Celery's worker does."""
    count = app.broker.purge(queues)
    plural = "queue" if len(queues) == 1 else "queues"
    click.echo(f"purge: Erased {count} {'message' if count == 1 else 'messages'} from {plural} "
               f"{', '.join(queues)}.")  # fmt: skip


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]
