"""``minicelery [-A APP] [-b URL] COMMAND``: the commands only parse and delegate, and every
expected failure ends in a one-line error and a non-zero exit, never a traceback."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .. import __version__
from ..app import Celery
from ..exceptions import MiniceleryError
from .app_loader import AppNotFound, configure, find_app
from .lazy import LazyGroup

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn our own errors into click's one-line ones."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (MiniceleryError, AppNotFound) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


class State:
    """What the group's options resolved to, handed to each command."""

    def __init__(
        self,
        app_spec: str | None,
        broker: str | None,
        backend: str | None,
        app: Celery | None = None,
        config: str | None = None,
    ) -> None:
        self.app_spec = app_spec
        self.broker = broker
        self.backend = backend
        self.config = config
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            app = find_app(self.app_spec) if self.app_spec else Celery("default")
            configure(app, self.config, self.broker, self.backend)
            self._app = app
            try:  # as Celery's command line: every command sees the app's task modules
                app.import_modules()
            except ImportError as exc:
                raise AppNotFound(f"cannot import the app's task modules: {exc}") from exc
        return self._app


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-A",
    "--app",
    "app_spec",
    envvar="MINICELERY_APP",
    help="The app: module, module.attr or module:attr.",
)
@click.option("-b", "--broker", help="Broker URL (overrides broker_url).")
@click.option("--result-backend", help="Result backend URL (overrides result_backend).")
@click.option("--config", help="A configuration module to load into the app's settings.")
@click.option("--workdir", help="Change to this directory before loading the app.")
@click.version_option(__version__, "--version", prog_name="minicelery", message="%(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    config: str | None,
    workdir: str | None,
) -> None:
    """minicelery: a Celery-compatible task queue on Redis."""
    if workdir:
        try:
            os.chdir(workdir)
        except OSError as exc:
            message = f"cannot change to --workdir {workdir}: {exc.strerror}"
            raise click.ClickException(message) from exc
    preset: Celery | None = ctx.obj._app if isinstance(ctx.obj, State) else None
    ctx.obj = State(app_spec, broker, result_backend, None if app_spec else preset, config)


def _json_arg(value: str | None, what: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint=what) from exc
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=what)
    return parsed


@cli.command()
@click.argument("name")
@click.option("-a", "--args", help="Positional arguments as a JSON list, e.g. '[2, 2]'.")
@click.option("-k", "--kwargs", help="Keyword arguments as a JSON object.")
@click.option("--countdown", type=float, help="Seconds to wait before running.")
@click.option("--eta", help="ISO-8601 time to run at.")
@click.option("--expires", help="Seconds, or an ISO-8601 time, after which not to run.")
@click.option("--queue", "-Q", help="Queue to send to.")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9, 9 runs first.")
@click.pass_obj
@friendly_errors
def call(
    state: State,
    name: str,
    args: str | None,
    kwargs: str | None,
    countdown: float | None,
    eta: str | None,
    expires: str | None,
    queue: str | None,
    priority: int | None,
) -> None:
    """Send task NAME and print its id.

    NAME must be a task of the loaded app (-A), or one a running worker has registered: a
    name nobody knows would only end in the dead-letter store."""
    options: dict[str, Any] = {"countdown": countdown, "queue": queue, "priority": priority}
    if eta:
        try:
            options["eta"] = dt.datetime.fromisoformat(eta)
        except ValueError as exc:
            raise click.BadParameter("not an ISO-8601 time", param_hint="--eta") from exc
    if expires:
        options["expires"] = _parse_expires(expires)
    app = state.app
    positional, keywords = _json_arg(args, "--args", list), _json_arg(kwargs, "--kwargs", dict)
    task = app.tasks.get(name)
    if task is None:
        _ensure_known_remotely(app, name)
    elif task.typing:
        try:
            task.check_arguments(positional, keywords)  # the check delay() makes
        except TypeError as exc:
            raise click.ClickException(str(exc)) from exc
    result = app.send_task(
        name, positional, keywords, **{k: v for k, v in options.items() if v is not None}
    )
    click.echo(result.id)


def _ensure_known_remotely(app: Celery, name: str) -> None:
    """Refuse a task name that neither the app nor any running worker has registered."""
    replies = app.control.inspect(timeout=1.0).registered() or {}
    if not any(name in (names or ()) for names in replies.values()):
        where = f"the app {app.main!r}" if app.main else "the loaded app"
        raise click.ClickException(
            f"task {name!r} is not registered in {where} nor on any running worker: "
            "nothing was sent (load the app that defines it with -A)"
        )


def _parse_expires(value: str) -> float | dt.datetime:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("seconds or an ISO-8601 time", param_hint="--expires") from exc


@cli.command()
@click.argument("task_id")
@click.option(
    "--traceback", "show_traceback", is_flag=True, help="Show the traceback of a failure."
)
@click.option("-t", "--task", help="Task name (accepted for Celery compatibility).")
@click.option(
    "--timeout", type=float, default=None, help="Wait up to this many seconds for the result."
)
@click.pass_obj
@friendly_errors
def result(
    state: State, task_id: str, show_traceback: bool, task: str | None, timeout: float | None
) -> None:
    """Print the result of TASK_ID (its state while it is not ready). Exits 1 when the task
    failed or was revoked (its error is printed) and when no result is known for the id."""
    handle = state.app.AsyncResult(task_id)
    if timeout is not None:
        handle.get(timeout=timeout, propagate=False)
    if show_traceback:
        click.echo(handle.traceback or "")
        return
    status = handle.state
    if status == "PENDING":
        click.echo(status)
        raise click.ClickException(
            f"no result is known for task {task_id} (an unknown id, or a task not run yet)"
        )
    if status in ("FAILURE", "REVOKED"):
        error = handle.result
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        click.echo(text)
        raise click.exceptions.Exit(1)
    click.echo(_show(handle.result) if handle.ready() else status)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=repr)


def _queues(app: Celery, queues: str | None, exclude: str | None) -> list[str]:
    names = [q for q in (queues or "").split(",") if q] or [app.conf.task_default_queue]
    excluded = {q for q in (exclude or "").split(",") if q}
    return [q for q in names if q not in excluded]


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "-Q", "--queues", help="Comma-separated queues to purge (default: the default queue)."
)
@click.option("-X", "--exclude-queues", help="Comma-separated queues to leave alone.")
@click.pass_obj
@friendly_errors
def purge(state: State, force: bool, queues: str | None, exclude_queues: str | None) -> None:
    """Delete all waiting messages from the queues."""
    names = _queues(state.app, queues, exclude_queues)
    if not force:
        click.echo(
            f"WARNING: This will remove all tasks from {'queue' if len(names) == 1 else 'queues'}: "
            f"{', '.join(names)}.\n         There is no undo for this operation!\n\n"
            "(to skip this prompt use the -f option)"
        )
        if not sys.stdin.isatty() or not click.confirm(
            "Are you sure you want to delete all tasks?"
        ):
            raise click.ClickException("Purge cancelled (use -f to purge without asking).")
    count = state.app.broker.purge(names)
    plural = "queue" if len(names) == 1 else "queues"
    if count:
        click.echo(
            f"Purged {count} {'message' if count == 1 else 'messages'} from "
            f"{len(names)} known task {plural}."
        )
    else:
        click.echo(f"No messages purged from {len(names)} {plural}.")


@cli.group()
def dead() -> None:
    """Messages the worker could not run: list, replay, purge."""


@dead.command("list")
@click.pass_obj
@friendly_errors
def dead_list(state: State) -> None:
    """One line per dead letter: id, task, reason, when."""
    letters = state.app.broker.dead_letters()
    for letter in letters:
        when = dt.datetime.fromtimestamp(letter.when, dt.timezone.utc).isoformat(timespec="seconds")
        click.echo(f"{letter.id}\t{letter.task}\t{letter.reason}\t{when}")
    if not letters:
        click.echo("No dead letters.", err=True)


@dead.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.pass_obj
@friendly_errors
def dead_replay(state: State, ids: tuple[str, ...], replay_all: bool) -> None:
    """Put dead letters back on their queues."""
    if not ids and not replay_all:
        raise click.UsageError("give dead-letter IDs or --all")
    count = state.app.broker.replay_dead(None if replay_all else list(ids))
    click.echo(f"Replayed {count} dead {'letter' if count == 1 else 'letters'}.")
    if ids and count < len(ids):
        raise click.ClickException(f"{len(ids) - count} of the given IDs were not found.")


@dead.command("purge")
@click.pass_obj
@friendly_errors
def dead_purge(state: State) -> None:
    """Delete every dead letter."""
    count = state.app.broker.purge_dead()
    click.echo(f"Purged {count} dead {'letter' if count == 1 else 'letters'}.")


def main(argv: list[str] | None = None, app: Celery | None = None) -> None:
    """The console script; ``app`` is given when an app starts its own command line."""
    cli.main(args=argv, prog_name="minicelery", obj=State(None, None, None, app))
