"""Worker node names (``name@host``), under Celery's module path ``celery.utils.nodenames``."""

from __future__ import annotations

import os
import socket

NODENAME_SEP = "@"
NODENAME_DEFAULT = "celery"


def gethostname() -> str:
    """This machine's host name (what ``%h`` expands to in ``-n`` worker names)."""
    return socket.gethostname()


def nodename(name: str, hostname: str) -> str:
    """Join a worker name and a host name: ``nodename('w1', 'example.com') == 'w1@example.com'``."""
    return NODENAME_SEP.join((name, hostname))


def nodesplit(name: str) -> tuple[str | None, str]:
    """Split ``name@host`` into ``(name, host)``; ``(None, host)`` when there is no name part."""
    parts = name.split(NODENAME_SEP, 1)
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def default_nodename(hostname: str | None, default_name: str = NODENAME_DEFAULT) -> str:
    """``celery@<hostname>`` (``default_name`` for the name part when ``hostname`` has none),
    with this machine's name when ``hostname`` is not given."""
    name, host = nodesplit(hostname or "")
    return nodename(name or default_name, host or gethostname())


def host_format(name: str, host: str | None = None) -> str:
    """``name`` with Celery's ``%h`` (host), ``%n`` (host name) and ``%d`` (domain) expanded."""
    host = host or gethostname()
    short, _, domain = host.partition(".")
    return name.replace("%h", host).replace("%n", short).replace("%d", domain)


def anon_nodename(hostname: str | None = None, prefix: str = "gen") -> str:
    """The name of an anonymous node of this process: ``gen<pid>@<host>``. Embedded test
    workers take it, so a test can address the worker it started by name."""
    return nodename(f"{prefix}{os.getpid()}", hostname or gethostname())


__all__ = [
    "anon_nodename",
    "default_nodename",
    "gethostname",
    "host_format",
    "nodename",
    "nodesplit",
]
