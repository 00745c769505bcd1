"""``minicelery shell`` and ``minicelery report``: an interactive Python with the app and
its tasks loaded, and the bug report people paste into an issue (as Celery's)."""

from __future__ import annotations

import code
import sys
from typing import Any

import click

from .. import Task, chain, chord, chunks, group, signature, xmap, xstarmap
from ..app import Celery
from .main import State, friendly_errors


def shell_namespace(app: Celery, with_tasks: bool = True) -> dict[str, Any]:
    """What Celery's shell starts with: the app (as ``app`` and ``celery``), the canvas, and
    each task by its short name."""
    namespace: dict[str, Any] = {
        "app": app,
        "celery": app,
        "Task": Task,
        "chain": chain,
        "chord": chord,
        "chunks": chunks,
        "group": group,
        "signature": signature,
        "subtask": signature,
        "xmap": xmap,
        "xstarmap": xstarmap,
    }
    if with_tasks:
        for name, task in app.tasks.items():
            if not name.startswith(("celery.", "minicelery.")):
                namespace[name.rpartition(".")[2]] = task
    return namespace


@click.command()
@click.option("--ipython", is_flag=True, help="Use IPython (when installed).")
@click.option("--python", "plain", is_flag=True, help="Use the plain Python shell.")
@click.option("--without-tasks", is_flag=True, help="Do not add the tasks to the namespace.")
@click.pass_obj
@friendly_errors
def shell(state: State, /, ipython: bool, plain: bool, without_tasks: bool) -> None:
    """An interactive Python shell with the app and its tasks loaded."""
    app = state.app
    app.finalize()
    namespace = shell_namespace(app, not without_tasks)
    if not plain and sys.stdin.isatty():
        try:
            from IPython import start_ipython  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            if ipython:
                raise click.ClickException("IPython is not installed") from None
        else:
            start_ipython(argv=[], user_ns=namespace)
            return
    names = ", ".join(sorted(k for k in namespace if k not in ("app", "celery")))
    banner = f"minicelery shell: app is {app!r} (also 'celery'); names: {names}"
    code.interact(banner=banner, local=namespace, exitmsg="")


@click.command()
@click.pass_obj
@friendly_errors
def report(state: State, /) -> None:
    """Print versions and settings, for bug reports."""
    click.echo(state.app.bugreport())
