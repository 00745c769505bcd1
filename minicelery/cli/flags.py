"""Celery's worker and beat flags that users' service files carry. Each one either does
what it does in Celery or, where it has no meaning on this design, is accepted with a
one-line note, so a unit file written for Celery starts unchanged."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..worker.controller import POOLS

F = TypeVar("F", bound=Callable[..., Any])

# Pools Celery has and this project does not, with what to use instead.
MISSING_POOLS = {
    "gevent": "use -P threads for I/O-bound tasks",
    "eventlet": "use -P threads for I/O-bound tasks",
    "custom": "use -P prefork, threads or solo",
}
POOL_ALIASES = {"processes": "prefork", "thread": "threads"}


def choose_pool(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``-P``: one of ours (or Celery's alias for it); a pool we lack is one clear line."""
    name = POOL_ALIASES.get(value.lower(), value.lower())
    if name in POOLS:
        return name
    hint = MISSING_POOLS.get(name, f"choose one of {', '.join(POOLS)}")
    raise click.ClickException(f"the {value} pool is not available in minicelery: {hint}")


def pool_option() -> Callable[[F], F]:
    return click.option(
        "-P",
        "--pool",
        default="prefork",
        show_default=True,
        callback=choose_pool,
        help=f"Pool: {', '.join(POOLS)} (gevent and eventlet are not available).",
    )


def celery_worker_flags(func: F) -> F:
    """The Celery worker flags not covered by the worker's own options."""
    options = [
        click.option("-O", "optimization", type=click.Choice(["default", "fair"]),
                     help="Accepted: the prefork pool always hands a task to an idle child."),
        click.option("--without-gossip", is_flag=True, help="Accepted: there is no gossip."),
        click.option("--without-mingle", is_flag=True, help="Accepted: there is no mingle."),
        click.option("--without-heartbeat", is_flag=True,
                     help="Accepted: the liveness heartbeat recovers a dead worker's tasks."),
        click.option("--purge", "--discard", "purge", is_flag=True,
                     help="Delete the waiting messages of the worker's queues before starting."),
        click.option("-I", "--include", "include",
                     help="Comma-separated modules to import (their tasks are registered)."),
        click.option("-S", "--statedb",
                     help="Accepted: revocations are kept in Redis, not in a state file."),
        click.option("-s", "--schedule-filename", "--schedule", "schedule_filename",
                     help="Accepted (with -B): the beat's state is kept in Redis."),
        click.option("--scheduler", help="Accepted (with -B): the beat's scheduler is built in."),
        click.option("--uid", help="Run as this user (name or id) once started."),
        click.option("--gid", help="Run as this group (name or id) once started."),
        click.option("--pool-start-method", type=click.Choice(["fork", "spawn", "forkserver"]),
                     help="Accepted: the prefork pool always forks (from a one-thread process)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@dataclass
class CeleryFlags:
    """What the flags of :func:`celery_worker_flags` were given as."""

    optimization: str | None = None
    without_gossip: bool = False
    without_mingle: bool = False
    without_heartbeat: bool = False
    purge: bool = False
    include: str | None = None
    statedb: str | None = None
    schedule_filename: str | None = None
    scheduler: str | None = None
    uid: str | None = None
    gid: str | None = None
    pool_start_method: str | None = None

    def includes(self) -> list[str]:
        return [name.strip() for name in (self.include or "").split(",") if name.strip()]

    def notes(self) -> list[str]:
        """One line for each flag given that has no effect here."""
        given = [
            (self.optimization, "-O {}: the prefork pool always hands a task to an idle child"),
            (self.without_gossip, "--without-gossip: minicelery workers have no gossip"),
            (self.without_mingle, "--without-mingle: minicelery workers have no mingle"),
            (
                self.without_heartbeat,
                "--without-heartbeat: the liveness heartbeat stays on (it recovers the tasks "
                "of a dead worker)",
            ),
            (self.statedb, "--statedb {}: revocations are kept in Redis, not in a file"),
            (self.schedule_filename, "--schedule {}: the beat's state is kept in Redis"),
            (self.scheduler, "--scheduler {}: the beat has one scheduler, its state in Redis"),
            (
                self.pool_start_method if self.pool_start_method != "fork" else None,
                "--pool-start-method {}: the prefork pool always forks",
            ),
        ]
        return [f"Note: {text.format(value)}" for value, text in given if value]


def drop_privileges(uid: str | None, gid: str | None) -> None:
    """Become ``uid``/``gid`` (names or numbers), group first, as Celery's ``--uid/--gid``;
    a user given alone also takes that user's primary group and supplementary groups."""
    if uid is None and gid is None:
        return
    user = _lookup_user(uid) if uid is not None else None
    group_id = _lookup_group(gid) if gid is not None else (user.pw_gid if user else None)
    try:
        if group_id is not None and group_id != os.getgid():
            if user is not None:
                os.initgroups(user.pw_name, group_id)
            else:
                os.setgroups([group_id])
            os.setgid(group_id)
        if user is not None and user.pw_uid != os.getuid():
            os.setuid(user.pw_uid)
    except PermissionError as exc:
        raise click.ClickException(
            f"cannot switch to uid={uid} gid={gid}: {exc.strerror} (only root may)"
        ) from exc


def _lookup_user(uid: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(uid)) if uid.isdigit() else pwd.getpwnam(uid)
    except KeyError:
        raise click.ClickException(f"--uid: no such user: {uid}") from None


def _lookup_group(gid: str) -> int:
    try:
        return int(gid) if gid.isdigit() else grp.getgrnam(gid).gr_gid
    except KeyError:
        raise click.ClickException(f"--gid: no such group: {gid}") from None
