"""Where the prefork pool's children come from: an exec'd fork server started on demand
(:mod:`.forkexec`, when the worker's app can be imported by name), the forked resident
fork server otherwise (:mod:`.forkserver`: a worker started from code, or an app built in
``__main__``), or, on a platform without either, or once the server failed, a fork of the
main process itself.

With an exec'd server a request may have to wait for a server to start: it is kept as
*pending* and the pool's loop watches the server's socket, so nothing blocks the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import forkserver
from .channel import Channel
from .forkexec import BootFailed, ExecForkServer, ServerGone

logger = logging.getLogger(__name__)


@dataclass
class Pending:
    """A child asked for while no server was ready."""

    index: int
    parent_conn: Channel
    child_conn: Channel


ForkHere = Callable[[int, Channel, Channel], int]  # forks from this process; the child's PID
Born = tuple[int, int, Channel]  # a new child's index, PID and channel


class Spawner:
    """The pool's source of children (see the module docstring)."""

    def __init__(
        self,
        child_main: forkserver.ChildMain,
        fork_here: ForkHere,
        booted: ExecForkServer | None = None,
    ) -> None:
        self.child_main = child_main
        self.fork_here = fork_here
        self.booted = booted  # an exec'd server (running or not), when the app allows one
        self.forks: forkserver.ForkServer | None = None  # the resident forked server
        self.pending: list[Pending] = []
        self.on_watch: Callable[[int | None, int | None], None] = lambda new, old: None

    def start(self) -> None:
        """Before the worker starts any thread: the first server, ready."""
        if not forkserver.supported():
            return
        forkserver.become_subreaper()
        if self.booted is not None:
            try:
                if not self.booted.running:
                    self.booted.begin()
                self.booted.wait_ready()
                self.on_watch(self.booted.fileno(), None)
                return
            except (OSError, BootFailed) as exc:
                logger.warning("The fork server could not start by exec (%s): the worker "
                               "keeps one forked from its main process", exc)  # fmt: skip
                self.booted = None
        self.forks = forkserver.ForkServer(self.child_main)
        self.forks.start()

    def spawn(self, index: int) -> list[Born]:
        """Ask for child ``index``: the children born now (none while it waits for a
        server: :meth:`readable` hands it over; more than one when those waiting could
        not wait any more)."""
        parent_conn, child_conn = Channel.pair()
        if self.booted is not None:
            self.pending.append(Pending(index, parent_conn, child_conn))
            return self._flush()
        if self.forks is not None:
            try:
                pid = self.forks.spawn(index, child_conn.sock)
            except (OSError, forkserver.ForkRefused) as exc:
                self._lose_fork_server(exc)
            else:
                child_conn.close()
                return [(index, pid, parent_conn)]
        return [(index, self.fork_here(index, parent_conn, child_conn), parent_conn)]

    def _flush(self) -> list[Born]:
        """Send the pending requests to a ready server (starting one if none runs)."""
        done: list[Born] = []
        while self.pending and self.booted is not None:
            server = self.booted
            if not server.running:
                server.begin()
                self.on_watch(server.fileno(), None)
            if not server.ready:
                break
            first = self.pending[0]
            fd = server.fileno()
            try:
                pid = server.spawn(first.index, first.child_conn.sock)
            except ServerGone:
                self.on_watch(None, fd)
                continue  # it lingered out just now: the next turn starts another
            except (OSError, forkserver.ForkRefused) as exc:
                self.on_watch(None, fd)
                self._lose_booted(exc)
                break
            self.pending.pop(0)
            first.child_conn.close()
            done.append((first.index, pid, first.parent_conn))
        if self.booted is None:  # no server any more: fork what waits from here
            done.extend(self._fork_pending_here())
        return done

    def readable(self) -> list[Born]:
        """The exec'd server's socket is readable: it became ready (the waiting children
        are forked now), or it left. Returns the new children: index, PID, channel."""
        server = self.booted
        if server is None or not server.running:
            return []
        fd = server.fileno()
        try:
            server.readable()
        except ServerGone:
            self.on_watch(None, fd)
        except BootFailed as exc:
            self.on_watch(None, fd)
            self._lose_booted(exc)
        return self._flush() if self.pending else []

    def _fork_pending_here(self) -> list[Born]:
        done = []
        for waiting in self.pending:
            pid = self.fork_here(waiting.index, waiting.parent_conn, waiting.child_conn)
            done.append((waiting.index, pid, waiting.parent_conn))
        self.pending = []
        return done

    def _lose_booted(self, exc: BaseException) -> None:
        logger.error("The fork server could not start (%s): children are forked from the "
                     "main process from now on; restart the worker to have one again",
                     exc)  # fmt: skip
        if self.booted is not None:
            self.booted.stop()
        self.booted = None

    def _lose_fork_server(self, exc: BaseException) -> None:
        """The fork server died (killed, out of memory) or refused: the pool goes on,
        forking from this process as it did before there was one, rather than stop."""
        logger.error(
            "The fork server (pid %d) is gone (%s): children are forked from the main "
            "process from now on; restart the worker to have one again",
            self.forks.pid if self.forks else 0,
            exc,
        )
        if self.forks is not None:
            self.forks.stop()
        self.forks = None

    def load(self, modules: list[str], reload: bool) -> None:
        """``pool_restart``: import ``modules`` where children are forked from now on."""
        if self.forks is not None:
            self.forks.load(modules, reload)
        if self.booted is not None:
            self.booted.modules.extend(m for m in modules if m not in self.booted.modules)
            if self.booted.running:
                fd = self.booted.fileno()
                self.on_watch(None, fd)
                self.booted.stop()  # the next child comes from a server that imports them anew

    def cancel(self, n: int) -> None:
        """No longer ask for the last ``n`` children still waiting (the pool shrank)."""
        for waiting in self.pending[len(self.pending) - max(0, n):]:
            waiting.parent_conn.close()
            waiting.child_conn.close()
            self.pending.remove(waiting)

    def drop(self) -> None:
        """Fork nothing more (the worker shuts down): drop what waits, and stop the exec'd
        server (one still starting is killed)."""
        for waiting in self.pending:
            waiting.parent_conn.close()
            waiting.child_conn.close()
        self.pending = []
        if self.booted is not None and self.booted.running:
            self.on_watch(None, self.booted.fileno())
            self.booted.stop()

    def stop(self) -> None:
        """The pool stops: :meth:`drop`, stop the forked server, and give the process back
        as it was."""
        self.drop()
        if self.forks is not None:
            self.forks.stop()
        forkserver.restore_subreaper()
