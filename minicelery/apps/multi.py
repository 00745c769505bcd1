"""A node of ``minicelery multi`` as Celery's ``celery.apps.multi.Node`` describes one: its
options, and the worker command line they make, with ``%n``-style names expanded for it.

A node expands ``%n`` (its name), ``%h`` (its full node name), ``%d`` (its host), ``%p``
and ``%%`` (a ``%``) in its options, and leaves ``%i``/``%I`` for the worker, which expands
what it is given once more: ``--logfile=%%%%n.log`` reaches the worker as ``%%n.log`` and
names the file ``%n.log``, as with Celery.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from functools import partial

from ..utils.nodenames import node_format

DEFAULT_PIDFILE = "%n.pid"
DEFAULT_LOGFILE = "%n%I.log"
#: Options of the ``minicelery`` command itself: they go before ``worker``.
GLOBAL_OPTIONS = frozenset(
    {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir",
     "-C", "--no-color", "-q", "--quiet"}
)  # fmt: skip


def build_expander(nodename: str, shortname: str, hostname: str) -> Callable[[str], str]:
    """The expansion of a node's option values (see the module's docstring)."""
    return partial(node_format, node=nodename, N=shortname, d=hostname, h=nodename, i="%i", I="%I")


def format_opt(opt: str, value: str | None) -> str:
    """``--name=value``, ``-x value``, or the bare flag when it has no value."""
    if not value:
        return opt
    return f"{opt}={value}" if opt.startswith("--") else f"{opt} {value}"


class Node:
    """One worker node of a ``multi`` command: ``name`` is ``name@host``."""

    def __init__(
        self,
        name: str,
        cmd: str | None = None,
        append: str | None = None,
        options: Mapping[str, str] | None = None,
        extra_args: str | None = None,
    ) -> None:
        self.name = name
        self.cmd = cmd or "-m minicelery worker --detach"
        self.append = append
        self.extra_args = extra_args or ""
        self.options: dict[str, str] = dict(options or {})
        self.options["-n"] = name
        self._default(("--pidfile", "-p"), DEFAULT_PIDFILE)
        self._default(("--logfile", "-f"), DEFAULT_LOGFILE)
        self.executable = self.options.pop("--executable", sys.executable)
        shortname, _, hostname = name.partition("@")
        self.expander = build_expander(name, shortname, hostname)
        self.argv = self._argv()

    def _default(self, flags: tuple[str, ...], value: str) -> None:
        for flag in flags:
            if flag in self.options:
                self.options[flag] = os.path.expanduser(self.options[flag])
                return
        self.options[flags[0]] = value

    def _argv(self) -> tuple[str, ...]:
        command = self.expander(self.cmd).split(" ")
        at = command.index("minicelery") + 1 if "minicelery" in command else len(command)
        rest: list[str] = []
        for opt, value in self.options.items():
            expanded = self.expander(value) if isinstance(value, str) else value
            if opt in GLOBAL_OPTIONS:
                command.insert(at, format_opt(opt, expanded))
                at += 1
            else:
                rest.append(format_opt(opt, os.path.expanduser(expanded)))
        argv = (" ".join(command), *rest, self.extra_args)
        return (*argv, self.expander(self.append)) if self.append else argv

    def getopt(self, *alternatives: str) -> str:
        for opt in alternatives:
            if opt in self.options:
                return self.options[opt]
        raise KeyError(alternatives[0])

    @property
    def pidfile(self) -> str:
        return self.expander(self.getopt("--pidfile", "-p"))

    @property
    def logfile(self) -> str:
        return self.expander(self.getopt("--logfile", "-f"))

    @property
    def pid(self) -> int | None:
        """The PID in the node's pidfile, if it holds one."""
        with contextlib.suppress(OSError, ValueError), open(self.pidfile) as handle:
            return int(handle.read().strip())
        return None

    def send(self, signum: int) -> bool:
        """Send ``signum`` to the node's process; False when it is not running."""
        pid = self.pid
        if not pid:
            return False
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def alive(self) -> bool:
        return self.send(0)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


__all__ = ["Node", "build_expander", "format_opt"]
