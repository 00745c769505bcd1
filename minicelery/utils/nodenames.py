"""Worker node names (``name@host``), under Celery's module path ``celery.utils.nodenames``."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping

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


def anon_nodename(hostname: str | None = None, prefix: str = "gen") -> str:
    """The name of an anonymous node of this process: ``gen<pid>@<host>``. Embedded test
    workers take it, so a test can address the worker it started by name."""
    return nodename(f"{prefix}{os.getpid()}", hostname or gethostname())


_FORMAT = re.compile(r"%([%\w])")

Expansion = str | Callable[[], str]


def simple_format(text: str, keys: Mapping[str, Expansion]) -> str:
    """Expand ``%x`` in ``text`` from ``keys`` (a value or a function giving one); ``%%`` is
    a ``%``. An unknown ``%x`` is a ValueError, as in Celery."""

    def resolve(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "%" and "%" not in keys:
            return "%"
        try:
            found = keys[key]
        except KeyError:
            raise ValueError(f"unknown format %{key} in {text!r}") from None
        return found() if callable(found) else found

    return _FORMAT.sub(resolve, text) if text else text


def process_index() -> int:
    """The pool process index of this process for ``%i``: file names are expanded, and log
    files opened, by a worker's main process (index 0; its pool's children log there)."""
    return 0


def _index() -> str:
    return str(process_index())


def _index_with_dash() -> str:
    index = process_index()
    return f"-{index}" if index else ""


def host_format(
    text: str, host: str | None = None, name: str | None = None, **extra: Expansion
) -> str:
    """Celery's ``%h`` (host), ``%n`` (name; the host's first label when not given), ``%d``
    (domain), ``%i`` (process index) and ``%I`` (``-index``, empty in the main process) in
    ``text``; ``extra`` adds or overrides keys."""
    host = host or gethostname()
    short, _, domain = host.partition(".")
    keys: dict[str, Expansion] = {
        "h": host, "n": name or short, "d": domain, "i": _index, "I": _index_with_dash,
    }  # fmt: skip
    keys.update(extra)
    return simple_format(text, keys)


def node_format(text: str, node: str, **extra: Expansion) -> str:
    """``host_format`` for worker ``node`` (``name@host``), with ``%p`` the full node name."""
    name, host = nodesplit(node)
    return host_format(text, host, name or NODENAME_DEFAULT, p=node, **extra)


__all__ = [
    "anon_nodename",
    "default_nodename",
    "gethostname",
    "host_format",
    "node_format",
    "nodename",
    "nodesplit",
    "process_index",
    "simple_format",
]
