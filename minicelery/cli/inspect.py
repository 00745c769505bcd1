"""``minicelery inspect``, ``control`` and ``status``: Celery's remote-control commands from
the shell, printed for people or, with ``--json``, for scripts."""

from __future__ import annotations

import json
import pprint
from typing import Any

import click

from .main import State, friendly_errors

EX_UNAVAILABLE = 69  # what Celery exits with when no worker replied

# method -> what it shows (``inspect --list``)
INSPECT_HELP = {
    "active": "the tasks being run now",
    "active_queues": "the queues each worker consumes from",
    "clock": "each worker's logical clock",
    "conf": "each worker's configuration",
    "ping": "which workers answer",
    "query_task": "where the tasks ID... are: active, reserved or scheduled",
    "registered": "the tasks each worker has registered",
    "report": "a bug report of each worker (versions, pool, uptime)",
    "reserved": "the tasks received and waiting to run",
    "revoked": "the ids of revoked tasks",
    "scheduled": "the tasks waiting for their ETA or countdown",
    "stats": "each worker's statistics",
}
INSPECT_METHODS = tuple(INSPECT_HELP)

# command -> (argument names, converters); the values come from the command line as strings
CONTROL_METHODS: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {
    "rate_limit": (("task_name", "rate_limit"), (str, str)),
    "time_limit": (("task_name", "soft", "hard"), (str, float, float)),
    "revoke": (("task_id",), (str,)),
    "revoke_by_stamped_headers": (("headers",), (str,)),
    "terminate": (("signal", "task_id"), (str, str)),
    "shutdown": ((), ()),
    "pool_grow": (("n",), (int,)),
    "pool_shrink": (("n",), (int,)),
    "pool_restart": ((), ()),
    "autoscale": (("max", "min"), (int, int)),
    "add_consumer": (("queue",), (str,)),
    "cancel_consumer": (("queue",), (str,)),
    "enable_events": ((), ()),
    "disable_events": ((), ()),
}


#: Commands whose last argument takes any number of values.
VARIADIC = ("revoke", "terminate", "revoke_by_stamped_headers")


def _destination(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def _print_replies(replies: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(replies, default=str, sort_keys=True))
        return
    for hostname, reply in sorted(replies.items()):
        ok = not (isinstance(reply, dict) and "error" in reply)
        click.echo(f"->  {hostname}: {'OK' if ok else 'ERROR'}")
        click.echo("    " + pprint.pformat(reply, width=96).replace("\n", "\n    "))
    count = len(replies)
    click.echo(f"\n{count} {'node' if count == 1 else 'nodes'} online.")


def _no_replies(as_json: bool) -> None:
    if as_json:
        click.echo("{}")
    raise click.ClickException("No nodes replied within time constraint")


def _common(func: Any) -> Any:
    func = click.option("-t", "--timeout", type=float, default=1.0, show_default=True,
                        help="Seconds to wait for replies.")(func)  # fmt: skip
    func = click.option("-d", "--destination",
                        help="Comma-separated worker names (default: all).")(func)  # fmt: skip
    return click.option("-j", "--json", "as_json", is_flag=True,
                        help="Print the replies as JSON.")(func)  # fmt: skip


@click.command()
@click.argument("method", type=click.Choice(INSPECT_METHODS), required=False)
@click.argument("values", nargs=-1)
@click.option("--list", "show_list", is_flag=True, help="List the inspect methods and exit.")
@_common
@click.pass_obj
@friendly_errors
def inspect(
    state: State,
    /,
    method: str | None,
    values: tuple[str, ...],
    show_list: bool,
    timeout: float,
    destination: str | None,
    as_json: bool,
) -> None:
    """Ask workers what they are doing (active, reserved, stats, query_task ID..., ...)."""
    if show_list or method is None:
        if method is None and not show_list:
            raise click.UsageError("missing METHOD (inspect --list shows them)")
        for name, text in INSPECT_HELP.items():
            label = f"{name} ID..." if name == "query_task" else name
            click.echo(f"|- {label:<18} {text}")
        return
    if method == "query_task" and not values:
        raise click.UsageError("query_task needs one or more task ids")
    inspector = state.app.control.inspect(_destination(destination), timeout=timeout)
    replies = getattr(inspector, method)(*values)
    if not replies:
        _no_replies(as_json)
    _print_replies(replies, as_json)


def _convert(method: str, values: tuple[str, ...]) -> dict[str, Any]:
    names, kinds = CONTROL_METHODS[method]
    if method in VARIADIC:
        needed = 2 if method == "terminate" else 1
        if len(values) < needed:
            raise click.UsageError(f"{method} needs {' '.join(names)}")
        if method == "terminate":
            return {"signal": values[0], "task_id": list(values[1:])}
        if method == "revoke_by_stamped_headers" and not all("=" in v for v in values):
            raise click.UsageError("revoke_by_stamped_headers takes NAME=VALUE...")
        return {names[0]: list(values)}
    if len(values) > len(names) or (names and len(values) < 1):
        raise click.UsageError(f"{method} takes: {' '.join(names) or 'no arguments'}")
    arguments: dict[str, Any] = {}
    for name, kind, value in zip(names, kinds, values, strict=False):
        try:
            arguments[name] = kind(value)
        except ValueError as exc:
            raise click.BadParameter(f"{value!r} is not a valid {kind.__name__}",
                                     param_hint=name) from exc  # fmt: skip
    return arguments


@click.command()
@click.argument("method", type=click.Choice(sorted(CONTROL_METHODS)))
@click.argument("values", nargs=-1)
@_common
@click.pass_obj
@friendly_errors
def control(
    state: State,
    method: str,
    values: tuple[str, ...],
    timeout: float,
    destination: str | None,
    as_json: bool,
) -> None:
    """Tell workers to do something: rate_limit TASK RATE, revoke ID..., shutdown, ..."""
    arguments = _convert(method, values)
    control_api = state.app.control
    targets = _destination(destination)
    if method == "revoke":
        answers = control_api.revoke(arguments.pop("task_id"), destination=targets,
                                     reply=True, timeout=timeout)  # fmt: skip
    elif method == "terminate":
        answers = control_api.revoke(arguments["task_id"], destination=targets, terminate=True,
                                     signal=arguments["signal"], reply=True,
                                     timeout=timeout)  # fmt: skip
    else:
        answers = control_api.broadcast(method, arguments, targets, reply=True, timeout=timeout)
    merged: dict[str, Any] = {}
    for item in answers or ():
        merged.update(item)
    if not merged:
        _no_replies(as_json)
    _print_replies(merged, as_json)
    if any(isinstance(reply, dict) and "error" in reply for reply in merged.values()):
        raise click.exceptions.Exit(1)  # a worker refused: scripts must see it


@click.command()
@_common
@click.pass_obj
@friendly_errors
def status(state: State, timeout: float, destination: str | None, as_json: bool) -> None:
    """Which workers are online, and how many messages wait in each queue."""
    app = state.app
    replies = app.control.inspect(_destination(destination), timeout=timeout).ping() or {}
    backlog = app.broker.mailbox().backlog()
    if as_json:
        click.echo(json.dumps({"nodes": sorted(replies), "backlog": backlog}, sort_keys=True))
    else:
        for hostname in sorted(replies):
            click.echo(f"{hostname}: OK")
        for queue, count in backlog.items():
            click.echo(f"queue {queue}: {count} waiting")
        count = len(replies)
        click.echo(f"\n{count} {'node' if count == 1 else 'nodes'} online.")
    if not replies:
        if not as_json:
            click.echo("Error: No nodes replied within time constraint", err=True)
        raise click.exceptions.Exit(EX_UNAVAILABLE)
