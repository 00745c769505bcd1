"""The top-level command group's commands from other modules, each imported only when it
is run (or when ``--help`` lists them all)."""

from __future__ import annotations

from collections.abc import Callable

import click


def _worker_commands() -> list[click.Command]:
    from .worker import worker

    return [worker]


def _beat_commands() -> list[click.Command]:
    from .beat import beat

    return [beat]


def _events_commands() -> list[click.Command]:
    from .events import events

    return [events]


def _inspect_commands() -> list[click.Command]:
    from .inspect import control, inspect, status

    return [inspect, control, status]


def _multi_commands() -> list[click.Command]:
    from .multi import multi

    return [multi]


def _tools_commands() -> list[click.Command]:
    from .tools import report, shell

    return [shell, report]


def _dashboard_commands() -> list[click.Command]:
    from .dashboard import dashboard

    return [dashboard]


def _upgrade_commands() -> list[click.Command]:
    from .upgrade import upgrade

    return [upgrade]


#: The commands defined in other modules, by name, with the function that imports them.
LAZY_COMMANDS: dict[str, Callable[[], list[click.Command]]] = {
    "worker": _worker_commands,
    "beat": _beat_commands,
    "events": _events_commands,
    "inspect": _inspect_commands,
    "control": _inspect_commands,
    "status": _inspect_commands,
    "multi": _multi_commands,
    "shell": _tools_commands,
    "report": _tools_commands,
    "dashboard": _dashboard_commands,
    "upgrade": _upgrade_commands,
}


class LazyGroup(click.Group):
    """The top-level group, importing a command's module only when that command is run (or
    ``--help`` lists them all): whatever a module imports stays resident in the process, and
    a worker's is forked into every pool child, so a worker never loads the code of beat,
    ``multi``, the dashboard or the event monitor."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in LAZY_COMMANDS:
            for command in LAZY_COMMANDS[cmd_name]():
                self.add_command(command)
            found = super().get_command(ctx, cmd_name)
        return found
