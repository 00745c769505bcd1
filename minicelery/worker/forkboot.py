"""The fork server started by exec: a fresh interpreter that rebuilds what a prefork child
needs from a description the worker's main process sends it, forks the children it is
asked for, and exits once it has had nothing to do for a while (see :mod:`.forkexec`).

It imports the app by the name the worker loaded it by, applies the settings the command
line changed, sets up logging as the worker did, maps the shared memory of consuming
children, and then serves as the forked fork server does (:func:`.forkserver.serve`).
Nothing here imports the command line (click) or the main process's machinery: the
children it forks hold only what a child needs.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celery
    from .forkserver import ChildMain

FRAME = struct.Struct("!I")


@dataclass
class AppSource:
    """How the worker's command line loaded its app, as data: enough for another
    interpreter to load the same app, configured the same way."""

    spec: str  # -A
    config: str | None = None  # --config
    broker: str | None = None  # -b
    backend: str | None = None  # --result-backend
    conf: dict[str, Any] = field(default_factory=dict)  # settings the worker command set
    loglevel: str = "WARNING"
    logfile: str | None = None
    path: list[str] = field(default_factory=list)  # sys.path


def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(FRAME.pack(len(data)) + data)


def recv_frame(sock: socket.socket) -> bytes:
    header = _recv_exactly(sock, FRAME.size)
    return _recv_exactly(sock, FRAME.unpack(header)[0])


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the main process closed the fork server's socket")
        data += chunk
    return bytes(data)


def load_app(source: AppSource) -> Celery:
    """The app as the worker's command line made it (see ``cli.main.State.app`` and the
    worker command)."""
    from ..cli.app_loader import configure, find_app  # the app package only, not click
    from ..utils.log import redirect_stdouts, setup_logging

    sys.path[:] = [*sys.path[:1], *(p for p in source.path if p != sys.path[0])]
    app = configure(find_app(source.spec), source.config, source.broker, source.backend)
    app.embedded_noticed_elsewhere()
    for key, value in source.conf.items():
        setattr(app.conf, key, value)
    setup_logging(source.loglevel, source.logfile, app.conf.worker_hijack_root_logger)
    app.import_modules()
    app.finalize()
    app.ensure_configured()
    if app.conf.worker_redirect_stdouts:
        redirect_stdouts(app.conf.worker_redirect_stdouts_level)
    return app


def child_entry(app: Celery, plan: tuple[Any, ...]) -> ChildMain:
    """What each forked child runs: a consuming child, or a classic one fed by the pool."""
    import multiprocessing  # noqa: F401  (each child names itself with it: shared, imported once)

    from .channel import Channel

    if plan[0] == "consume":
        from .consuming import consume_main

        settings, slots, buckets = plan[1:]
        return lambda sock, index: consume_main(app, Channel(sock), index, settings, slots,
                                                buckets)  # fmt: skip
    from .child import child_main
    from .executor import message_runner

    hostname, accept, max_memory = plan[1:]
    run = message_runner(app, hostname, accept)
    return lambda sock, index: child_main(app, Channel(sock), index, run, [], max_memory)


def _boot(sock: socket.socket, fds: list[int]) -> tuple[ChildMain, float]:
    from . import sharing

    header = pickle.loads(recv_frame(sock))
    app = load_app(header["source"])
    for name in header["modules"]:  # what pool_restart imported in the servers before
        importlib.import_module(name)
    shared = sharing.Shared(fds, header["sizes"], header["sems"])
    plan = sharing.load(recv_frame(sock), shared)
    shared.close_fds()
    return child_entry(app, plan), float(header["linger"])


def main() -> None:
    """``python -c 'from minicelery.worker.forkboot import main; main()' SOCKET FDS``."""
    from .forkserver import PROCESS_NAME, name_process, serve

    name_process(PROCESS_NAME)  # from the start: ``ps`` tells it from the pool's children
    sock = socket.socket(fileno=int(sys.argv[1]))
    fds = [int(fd) for fd in sys.argv[2].split(",") if fd]
    try:
        child_main, linger = _boot(sock, fds)
    except BaseException as exc:  # told to the main process, which forks without us
        try:
            send_frame(sock, pickle.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        finally:
            raise SystemExit(1) from None
    try:
        send_frame(sock, pickle.dumps({"ok": True}))
    except OSError:  # the main process left while this one started
        raise SystemExit(0) from None
    code = serve(sock, child_main, linger)
    # At once, without the interpreter's teardown: the main process reaps this one when
    # its socket closes, and must not wait for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
