"""A fork server started by exec, on demand, that leaves when it has nothing to do.

The forked fork server (:mod:`.forkserver`) is a copy of the main process made before its
first thread: it holds everything the main process had imported, for the worker's whole
life, and so does every child it forks. This one is a fresh interpreter
(:mod:`.forkboot`) that loads only what a child needs, from a description: the app's
import path and the settings the command line changed (:class:`.forkboot.AppSource`),
the children's kind and options, and the shared memory of consuming children as memory
files (:mod:`.sharing`). It forks the children it is asked for, lingers ``LINGER``
seconds after its last request (recycling one child per task must not start an
interpreter per task), then exits: an idle worker is its main process and its children.

Starting one takes a few tenths of a second; the main loop never waits for it. A request
made meanwhile waits in the pool (:mod:`.spawning`) until the server's socket says it is
ready. Exec from a threaded process is safe (``posix_spawn``: no Python runs between the
fork and the exec), unlike a fork.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any

from . import forkserver
from .forkboot import AppSource, recv_frame, send_frame
from .sharing import Shared

if TYPE_CHECKING:
    from ..app import Celery

# Seconds a server stays after its last request: recycling (one child per task with
# max_tasks_per_child=1), a restart or a burst of crashes forks through one server, while
# an idle worker is back to its main process and children soon. The variable is for tests,
# which cannot wait that long to see one leave.
LINGER = float(os.environ.get("MINICELERY_FORK_SERVER_LINGER", "20"))
BOOT_TIMEOUT = 60.0  # seconds the worker's start waits for its first server
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Ctrl-C is for the main process: the server ignores it from its first instruction.
BOOT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "sys.path[:] = {path!r}; from minicelery.worker.forkboot import main; main()")


def boot_argv(sock: int, fds: list[int]) -> list[str]:
    """The server's command line: this interpreter, with ``site`` (a ``.pth`` file's import
    hooks and ``sitecustomize`` apply in the children as they did in this process), then
    this process's ``sys.path``."""
    path = [_PACKAGE_ROOT, *(p for p in sys.path if p != _PACKAGE_ROOT)]
    return [sys.executable, "-c", BOOT.format(path=path), str(sock),
            ",".join(str(fd) for fd in fds)]  # fmt: skip


_sources: weakref.WeakKeyDictionary[Celery, AppSource] = weakref.WeakKeyDictionary()


def remember_source(app: Celery, source: AppSource) -> None:
    """How the command line loaded ``app``: its workers fork through exec'd servers."""
    _sources[app] = source


def source_of(app: Celery) -> AppSource | None:
    """How ``app`` can be loaded again by name (None: a worker started from code)."""
    return _sources.get(app)


class BootFailed(OSError):
    """The server could not load what the children need (its reason is the message)."""


class ServerGone(OSError):
    """The server left (it lingered long enough, or was killed): start another one."""


class ExecForkServer(forkserver.ForkServer):
    """The main process's handle on one exec'd server: ``begin`` starts it, ``readable``
    follows it (ready, or gone), ``spawn`` and ``load`` as the forked server's."""

    def __init__(self, source: AppSource, plan: bytes, shared: Shared, modules: list[str]) -> None:
        super().__init__(lambda sock, index: 1)  # the children's life is the server's
        self.source, self.plan, self.shared, self.modules = source, plan, shared, modules
        self.ready = False

    def begin(self) -> None:
        """Start the server (returns at once: see :meth:`readable`)."""
        ours, theirs = socket.socketpair()
        passed = [theirs.fileno(), *self.shared.fds]
        argv = boot_argv(theirs.fileno(), self.shared.fds)
        for fd in passed:
            os.set_inheritable(fd, True)
        try:
            self.pid = os.posix_spawn(sys.executable, argv, os.environ, setsigmask=())
        finally:
            for fd in self.shared.fds:
                os.set_inheritable(fd, False)
            theirs.close()
        self._sock, self.ready = ours, False
        header = {"source": self.source, "modules": self.modules, "linger": LINGER,
                  "sizes": self.shared.sizes, "sems": self.shared.sems}  # fmt: skip
        with contextlib.suppress(OSError):  # it died at once: readable() says so
            send_frame(ours, pickle.dumps(header))
            send_frame(ours, self.plan)

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def readable(self) -> None:
        """Its socket is readable: it is ready (BootFailed if it could not be), or it
        left (ServerGone); either way it is reaped."""
        assert self._sock is not None
        if self.ready:
            self.stop()
            raise ServerGone(f"the fork server (pid {self.pid}) left")
        try:
            reply: dict[str, Any] = pickle.loads(recv_frame(self._sock))
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            reply = {"error": f"it exited ({exc})"}
        if "error" in reply:
            self.stop()
            raise BootFailed(reply["error"])
        self.ready = True

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Block until the server is ready (the worker's start, before the main loop)."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fileno()], [], [], left)[0]:
                self.stop()
                raise BootFailed(f"not ready after {timeout} s")
            self.readable()

    def _request(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        try:
            return super()._request(request, fds)
        except OSError as exc:  # it left (lingered out) just before the request
            self.stop()
            raise ServerGone(str(exc)) from exc

    def stop(self) -> None:
        """Close its socket and reap it; one still starting is killed."""
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        if not self.ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.ready = False

    @property
    def running(self) -> bool:
        return self._sock is not None
