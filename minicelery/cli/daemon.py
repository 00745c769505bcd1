"""Running a worker in the background, as Celery's ``--detach``/``--pidfile``/``--logfile``
do: node-name expansion in file names, pidfiles that refuse a live owner and replace a stale
one, and the double fork that leaves a daemon with its output in its log file."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

DEV_NULL = "/dev/null"


def expand_path(template: str, nodename: str, index: int | None = 0) -> str:
    """Celery's file-name expansions for node ``name@host``: ``%p`` the node name, ``%n``
    its name part, ``%h`` the host, ``%d`` the host's domain, ``%i`` the pool process index
    (0 for the main process) and ``%I`` the same with a ``-`` in front (empty for the main
    process); ``%%`` is a ``%``. With ``index=None`` the last two are kept, for a process
    that expands the name again later (``multi`` for its workers, as Celery's does: so
    ``%%%%n`` reaches the worker as ``%%n`` and names a file ``%n``)."""
    name, _, host = nodename.partition("@")
    values = {"p": nodename, "n": name, "h": host, "d": host.partition(".")[2]}
    if index is not None:
        values.update(i=str(index), I=f"-{index}" if index else "")
    out: list[str] = []
    pos = 0
    while pos < len(template):
        char = template[pos]
        code = template[pos + 1 : pos + 2]
        if char == "%" and code in values:
            out.append(values[code])
        elif char == "%" and code == "%":
            out.append("%")
        else:
            out.append(char)
            pos += 1
            continue
        pos += 2
    return "".join(out)


def parse_umask(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--umask`` in octal, as a shell's ``umask`` reads it (``022``, ``0o022``)."""
    if value is None:
        return None
    try:
        mask = int(value, 8)
    except ValueError as exc:
        raise click.BadParameter("an octal number, e.g. 022", ctx, param) from exc
    if not 0 <= mask <= 0o777:
        raise click.BadParameter("between 0 and 777 (octal)", ctx, param)
    return mask


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie is not: nobody has reaped it yet,
    but it runs nothing and holds nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X")


class Pidfile:
    """A file holding one process's PID while it runs: created exclusively, refused while
    its recorded process is alive, replaced when that process is gone (a stale file left
    by a crash), removed by its owner at exit."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> int | None:
        """The recorded PID; None when there is no file or no number in it."""
        try:
            text = Path(self.path).read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise click.ClickException(
                f"cannot read pidfile {self.path}: {exc.strerror}"
            ) from exc
        first = text.strip().split("\n", 1)[0].strip()
        return int(first) if first.isdigit() else None

    def check(self) -> None:
        """Fail if a live process other than this one owns the file or its directory is
        missing; remove a stale file."""
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise click.ClickException(
                f"cannot create pidfile {self.path}: directory {directory} does not exist"
            )
        pid = self.read()
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            raise click.ClickException(
                f"pidfile {self.path} exists and its process {pid} is alive: "
                "is this worker already running?"
            )
        if os.path.lexists(self.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def acquire(self) -> None:
        """Write this process's PID, and remove the file when this process exits."""
        self.check()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            # Another start won the race between our check and our create.
            raise click.ClickException(
                f"pidfile {self.path} was just created by another process: "
                "is this worker already running?"
            ) from None
        except OSError as exc:
            raise click.ClickException(
                f"cannot create pidfile {self.path}: {exc.strerror}"
            ) from exc
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        atexit.register(self.release, os.getpid())

    def release(self, owner: int) -> None:
        """Remove the file if it still records ``owner`` and this is that process (a
        forked child running exit handlers must not remove its parent's file)."""
        if os.getpid() == owner and self.read() == owner:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


@dataclass
class NodeFiles:
    """Where one worker node keeps its PID and writes its log (paths already expanded)."""

    nodename: str
    pidfile: Pidfile | None
    logfile: str | None


def prepare(
    nodename: str, pidfile: str | None, logfile: str | None, workdir: str | None
) -> NodeFiles:
    """Change to ``workdir`` (before the app is imported, as Celery does) and resolve the
    file names there, so they stay right whatever directory the worker is in later."""
    if workdir:
        try:
            os.chdir(workdir)
        except OSError as exc:
            raise click.ClickException(
                f"cannot change to --workdir {workdir}: {exc.strerror}"
            ) from exc
    return NodeFiles(
        nodename,
        Pidfile(os.path.abspath(expand_path(pidfile, nodename))) if pidfile else None,
        os.path.abspath(expand_path(logfile, nodename)) if logfile else None,
    )


def start(files: NodeFiles, detach: bool, umask: int | None) -> None:
    """Claim the pidfile, detaching first when asked: with ``detach`` this returns only in
    the daemon, and the process the user started exits 0 once the daemon holds its pidfile
    and log file (or 1 with the daemon's error)."""
    if umask is not None:
        os.umask(umask)
    if files.logfile:
        _open_log(files.logfile).close()  # an unwritable log file fails here, on the terminal
    if files.pidfile:
        files.pidfile.check()
    if detach:
        _daemonize(files)
    elif files.pidfile:
        files.pidfile.acquire()


def _open_log(path: str) -> io.FileIO:
    try:
        return io.FileIO(path, "a")
    except OSError as exc:
        raise click.ClickException(f"cannot open log file {path}: {exc.strerror}") from exc


def _daemonize(files: NodeFiles) -> None:
    """Fork, start a new session, fork again (so the daemon can never regain a terminal),
    and report back to the first process over a pipe."""
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(write_fd)
        _wait_for_daemon(first, read_fd)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    try:
        if files.pidfile:
            files.pidfile.acquire()
        _redirect_output(files.logfile)
    except click.ClickException as exc:
        os.write(write_fd, b"-" + exc.format_message().encode())
        os._exit(1)
    os.write(write_fd, b"+")
    os.close(write_fd)


def _wait_for_daemon(first: int, read_fd: int) -> None:
    """In the process the user started: reap the intermediate child, wait until the daemon
    speaks (or dies), then exit."""
    os.waitpid(first, 0)
    chunks = []
    while chunk := os.read(read_fd, 4096):
        chunks.append(chunk)
    os.close(read_fd)
    report = b"".join(chunks)
    if report == b"+":
        sys.exit(0)
    reason = report[1:].decode(errors="replace") or "the worker exited before it started"
    raise click.ClickException(reason)


def _redirect_output(logfile: str | None) -> None:
    """Standard input from /dev/null; standard output and error (the banner, ``print`` in
    tasks, anything a library writes) to the log file, or to /dev/null without one."""
    with open(DEV_NULL, "rb") as null_in:
        os.dup2(null_in.fileno(), 0)
    out = _open_log(logfile if logfile else DEV_NULL)
    with out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
