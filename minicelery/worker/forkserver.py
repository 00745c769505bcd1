"""The fork server: a process forked from the worker's main process before any thread
starts, which forks the pool's children on request for the worker's whole life.

A child forked beside running threads can inherit a lock another thread held (logging's,
an allocator's, redis-py's) and hang. The main process runs threads (consumer, remote
control, events, beat), so respawns, ``pool_grow``, ``pool_restart``, autoscaling and
recycling ask this single-threaded process to fork instead. It forks twice and the
middle process exits at once, so each child is re-parented to the main process (a Linux
"child subreaper"): the main process reaps it, signals it and sees it as its own child.
Elsewhere the pool forks directly, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PROCESS_NAME = "mc-forkserver"
_PID = struct.Struct("!q")
EXIT_ORPHANED = 5  # a child whose main process died before it started

# Run in the grandchild with the channel's socket and the child's index; returns its exit code.
ChildMain = Callable[[socket.socket, int], int]


class ForkRefused(RuntimeError):
    """The fork server found more than one thread in its process, and refused to fork."""


def _prctl(option: int, value: int | bytes) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _is_subreaper() -> bool:
    """Whether this process already adopts its orphaned descendants."""
    flag = ctypes.c_int(0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return bool(flag.value)


def name_process(name: str) -> None:
    """Set this process's name as ``ps`` and /proc show it (Linux; a no-op elsewhere)."""
    _prctl(PR_SET_NAME, name.encode()[:15])


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent (the worker's main process) dies: nothing would
    enforce its task's time limits any more. Exits at once if the parent is already gone."""
    if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != parent:
        os._exit(EXIT_ORPHANED)


_was_subreaper: bool | None = None  # before become_subreaper(), until restore_subreaper()


def become_subreaper() -> None:
    """Adopt this process's orphaned descendants: the children a fork server forks twice."""
    global _was_subreaper
    if _was_subreaper is None:
        _was_subreaper = _is_subreaper()
    if not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        raise OSError("cannot become a child subreaper")


def restore_subreaper() -> None:
    """A worker embedded in another program (a test's) leaves it as it was: else the
    program would adopt, and never reap, every orphan of its descendants."""
    global _was_subreaper
    if _was_subreaper is False:
        _prctl(PR_SET_CHILD_SUBREAPER, 0)
    _was_subreaper = None


def supported() -> bool:
    """Whether children can be re-parented to the main process (Linux 3.4+)."""
    return sys.platform.startswith("linux")


class ForkServer:
    """The main process's handle on the fork server."""

    def __init__(self, child_main: ChildMain) -> None:
        self.child_main = child_main
        self.pid = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # one request at a time (remote control, main loop)

    def start(self) -> None:
        """Fork the server; call before this process starts any thread."""
        become_subreaper()
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 1
            try:
                code = serve(theirs, self.child_main)
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self._sock = pid, ours

    def spawn(self, index: int, channel: socket.socket) -> int:
        """Fork child ``index`` talking over ``channel`` (whose other end the caller
        keeps); returns its PID."""
        reply = self._request({"op": "spawn", "index": index}, [channel.fileno()])
        if "error" in reply:
            raise ForkRefused(reply["error"])
        return int(reply["pid"])

    def load(self, modules: list[str], reload: bool) -> None:
        """Import ``modules`` (re-import with ``reload``) in the server, so children forked
        from now on run their new code (``pool_restart``)."""
        self._request({"op": "load", "modules": modules, "reload": reload}, [])

    def _request(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        assert self._sock is not None, "the fork server is not running"
        with self._lock:
            socket.send_fds(self._sock, [msgpack.packb(request)], fds)
            data = self._sock.recv(65536)
        if not data:
            raise OSError("the fork server exited")
        reply: dict[str, Any] = msgpack.unpackb(data)
        return reply

    def stop(self) -> None:
        """Close the server's socket (it exits when it reads the end) and reap it."""
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        restore_subreaper()


def serve(sock: socket.socket, child_main: ChildMain, linger: float | None = None) -> int:
    """The server's loop: one request, one reply, until the main process goes away or,
    with ``linger``, no request came for that many seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process
    for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    name_process(PROCESS_NAME)
    sock.settimeout(linger)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
        except OSError:  # the main process is gone, or nothing came for ``linger``
            return 0
        if not data:
            return 0
        request = msgpack.unpackb(data)
        try:
            reply = _handle(request, fds, sock, child_main)
        except Exception as exc:  # report it: the main process decides what to do
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        sock.sendall(msgpack.packb(reply))


def _handle(
    request: dict[str, object], fds: list[int], sock: socket.socket, child_main: ChildMain
) -> dict[str, object]:
    if request["op"] == "load":
        for name in request["modules"]:  # type: ignore[attr-defined]
            if request["reload"] and name in sys.modules:
                importlib.reload(sys.modules[name])
            elif name not in sys.modules:
                importlib.import_module(name)
        return {"ok": True}
    threads = threading.active_count()
    if threads != 1:
        raise ForkRefused(f"{threads} threads in the fork server: refusing to fork")
    return {"pid": _fork_twice(fds[0], int(request["index"]), sock, child_main)}  # type: ignore[call-overload]


def _fork_twice(fd: int, index: int, server: socket.socket, child_main: ChildMain) -> int:
    """Fork a middle process that forks the child and exits, so the child is re-parented
    to the subreaper (the main process); returns the child's PID."""
    read_end, write_end = os.pipe()  # the middle process tells the child's PID through it
    gate_read, gate_write = os.pipe()  # held open by the middle process until it exits
    main = os.getppid()
    middle = os.fork()
    if middle == 0:
        # Named before it forks the child, so the child never shows the server's name,
        # not even between its re-parenting and its first instruction.
        name_process(f"mc-child-{index}")
        os.close(read_end)
        code = 0
        try:
            middle_pid = os.getpid()
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                os.close(gate_write)
                server.close()
                os.read(gate_read, 1)  # end of file: the middle process is exiting
                os.close(gate_read)
                # It closes its files before the kernel re-parents its child: that takes
                # microseconds, with nothing to wait on but the parent's PID changing.
                while os.getppid() == middle_pid:
                    time.sleep(0.0002)
                die_with_parent(main)  # now the main process's child
                code = 1
                try:
                    code = child_main(socket.socket(fileno=fd), index)
                except BaseException:
                    logger.exception("child %d crashed", index)
                finally:
                    os._exit(code)
            os.write(write_end, _PID.pack(pid))
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(gate_read)
    os.close(gate_write)
    try:
        data = os.read(read_end, _PID.size)
    finally:
        os.close(read_end)
        os.waitpid(middle, 0)
    if len(data) != _PID.size:
        raise OSError("the child could not be forked")
    return int(_PID.unpack(data)[0])
