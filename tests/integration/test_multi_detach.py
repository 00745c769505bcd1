"""Workers in the background: ``worker --detach --pidfile --logfile`` and ``minicelery multi
start|stop|stopwait|restart|kill|show|names``, run as a user would against a real
redis-server, with Celery's semantics (a pidfile refuses a live owner and replaces a stale
one, ``%n``/``%h``/``%I`` in file names, ``3`` for three nodes, ``-c:w1 2`` for one node).

Detached workers are not our children: every test registers the pidfiles it makes, and the
``daemons`` fixture stops whatever they name, plus any process still carrying the test's
unique key prefix in its environment, by PID, whatever the test's outcome.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery, states
from tests.helpers import (
    RedisServer,
    WorkerFactory,
    descendant_pids,
    kill_pid,
    mode_args,
    pid_alive,
    pointed_at,
    pool_pids,
    proc_start_time,
    wait_until,
)
from tests.integration.apps.lifecycle import app as lifecycle_app
from tests.integration.apps.lifecycle import pid, say
from tests.integration.conftest import CliRunner

LIFECYCLE = "tests.integration.apps.lifecycle"
HOST = socket.gethostname()
TIMEOUT = 20.0


class Daemons:
    """Every detached process a test may have started, found by its pidfiles and by the
    test's key prefix in its environment, so that teardown can stop them all by PID."""

    def __init__(self, key_prefix: str) -> None:
        self.marker = f"MC_TEST_PREFIX={key_prefix}".encode()
        self.pidfiles: list[Path] = []

    def watch(self, *pidfiles: Path) -> None:
        self.pidfiles.extend(pidfiles)

    def marked(self) -> list[int]:
        """Live processes whose environment carries this test's key prefix."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if self.marker in environ and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        return found

    def running(self) -> list[int]:
        pids = set(self.marked())
        for path in self.pidfiles:
            recorded = read_pid(path)
            if recorded is not None and pid_alive(recorded):
                pids.add(recorded)
        return sorted(pids)

    def stop_all(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL whatever is left, children included."""
        doomed = {p: proc_start_time(p) for p in self.running()}
        for main in list(doomed):
            doomed.update({p: proc_start_time(p) for p in descendant_pids(main)})
        for target, started in doomed.items():
            kill_pid(target, signal.SIGTERM, started)
        try:
            wait_until(lambda: not any(pid_alive(p, s) for p, s in doomed.items()), timeout=10)
        except AssertionError:
            for target, started in doomed.items():
                kill_pid(target, signal.SIGKILL, started)
            wait_until(lambda: not any(pid_alive(p, s) for p, s in doomed.items()), timeout=5)


@pytest.fixture
def daemons(key_prefix: str) -> Iterator[Daemons]:
    tracker = Daemons(key_prefix)
    try:
        yield tracker
    finally:
        tracker.stop_all()


@pytest.fixture
def app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(lifecycle_app, redis_server, key_prefix) as pointed:
        yield pointed


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(path: Path) -> int:
    """Wait for ``path`` to name a live process; its PID."""
    return wait_until(
        lambda: (p := read_pid(path)) is not None and pid_alive(p) and p,
        timeout=TIMEOUT,
        message=f"no live process in {path}",
    )


def parent_of(target: int) -> int:
    status = Path(f"/proc/{target}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    for needle in needles:
        assert needle in lines[0], text


def detach(
    cli: CliRunner, tmp_path: Path, *extra: str, name: str = "d1"
) -> subprocess.CompletedProcess[str]:
    """``worker --detach`` with its pidfile and log file in ``tmp_path``."""
    return cli(
        "-A", LIFECYCLE, "worker", "--detach", "-l", "info", "-c", "1", "-n", f"{name}@%h",
        "--pidfile", str(tmp_path / "%n.pid"), "--logfile", str(tmp_path / "%n%I.log"),
        *mode_args(), *extra,
        timeout=TIMEOUT,
    )  # fmt: skip


def stop_and_wait(target: int) -> None:
    os.kill(target, signal.SIGTERM)
    wait_until(lambda: not pid_alive(target), timeout=TIMEOUT, message=f"{target} still runs")


# --------------------------------------------------------------------------- worker --detach


def test_detach_runs_a_daemon_with_pidfile_and_log(
    app: Celery, cli: CliRunner, daemons: Daemons, tmp_path: Path
) -> None:
    pidfile, logfile = tmp_path / "d1.pid", tmp_path / "d1.log"
    daemons.watch(pidfile)

    done = detach(cli, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""  # the banner went to the log file
    daemon = running_pid(pidfile)
    # A daemon: not the command's child (reparented), not in our session, no terminal.
    assert parent_of(daemon) != os.getpid()
    assert os.getsid(daemon) not in (os.getsid(0), daemon)
    result = say.delay("hello from a task")
    assert result.get(timeout=TIMEOUT) == "hello from a task"
    assert parent_of(pid.delay().get(timeout=TIMEOUT)) == daemon  # a prefork child of it
    log = logfile.read_text()
    assert f"d1@{HOST}" in log and "ready." in log, log
    assert "hello from a task" in log, log  # a task's print lands in the log too

    stop_and_wait(daemon)

    assert not pidfile.exists()
    assert "Warm shutdown" in logfile.read_text()


def test_detach_refuses_a_live_pidfile_and_replaces_a_stale_one(
    app: Celery, cli: CliRunner, daemons: Daemons, tmp_path: Path
) -> None:
    pidfile = tmp_path / "d1.pid"
    daemons.watch(pidfile)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = int(gone.stdout)
    assert not pid_alive(stale)
    pidfile.write_text(f"{stale}\n")

    first = detach(cli, tmp_path)
    assert first.returncode == 0, first.stderr
    daemon = running_pid(pidfile)
    assert daemon != stale

    second = detach(cli, tmp_path)

    assert_one_line_error(second, str(pidfile), str(daemon), "already running")
    assert read_pid(pidfile) == daemon and pid_alive(daemon)
    leftovers = set(daemons.marked()) - {daemon, *descendant_pids(daemon)}
    assert not leftovers, "the refused start left a process behind"
    assert pid.delay().get(timeout=TIMEOUT)


def test_pidfile_without_detach(
    app: Celery, worker_factory: WorkerFactory, cli: CliRunner, tmp_path: Path
) -> None:
    pidfile = tmp_path / "fg.pid"
    worker = worker_factory(LIFECYCLE, concurrency=1, extra_args=["--pidfile", str(pidfile)])
    assert read_pid(pidfile) == worker.pid

    again = cli("-A", LIFECYCLE, "worker", "--pidfile", str(pidfile), timeout=TIMEOUT)

    assert_one_line_error(again, "already running")
    assert read_pid(pidfile) == worker.pid
    assert worker.stop() == 0
    assert not pidfile.exists()


def test_detach_errors_are_one_line_and_leave_nothing_running(
    cli: CliRunner, daemons: Daemons, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir"
    base = ("-A", LIFECYCLE, "worker", "--detach")
    cases = [
        ((*base, "--pidfile", f"{missing}/%n.pid"), ("directory", str(missing))),
        ((*base, "--logfile", f"{missing}/%n.log"), ("log file", str(missing))),
        ((*base, "--workdir", str(missing)), ("--workdir", str(missing))),
        ((*base, "--umask", "9x"), ("--umask",)),
    ]
    for args, needles in cases:
        done = cli(*args, timeout=TIMEOUT)
        if args[-2] == "--umask":  # a usage error: click's usage lines, then the reason
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert "octal" in done.stderr
            continue
        assert_one_line_error(done, *needles)
    assert daemons.marked() == []


def test_workdir_umask_and_relative_names(
    app: Celery, cli: CliRunner, daemons: Daemons, tmp_path: Path
) -> None:
    daemons.watch(tmp_path / "w-d1.pid")

    done = cli(
        "-A", LIFECYCLE, "worker", "--detach", "-c", "1", "-n", "d1@%h",
        "--workdir", str(tmp_path), "--umask", "077", *mode_args(),
        "--pidfile", "w-%n.pid", "--logfile", "%h-%n%I.log", timeout=TIMEOUT,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    daemon = running_pid(tmp_path / "w-d1.pid")
    assert Path(f"/proc/{daemon}/cwd").resolve() == tmp_path.resolve()
    logfile = tmp_path / f"{HOST}-d1.log"
    assert logfile.exists()
    assert logfile.stat().st_mode & 0o777 == 0o600
    assert pid.delay().get(timeout=TIMEOUT)
    stop_and_wait(daemon)
    assert not (tmp_path / "w-d1.pid").exists()


# --------------------------------------------------------------------------- multi


def multi_args(tmp_path: Path, *nodes: str) -> tuple[str, ...]:
    return (*nodes, "-A", LIFECYCLE, "-l", "info",
            f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n%I.log",
            *mode_args())  # fmt: skip


def test_multi_start_stopwait_with_per_node_options(
    app: Celery, cli: CliRunner, daemons: Daemons, tmp_path: Path
) -> None:
    daemons.watch(tmp_path / "w1.pid", tmp_path / "w2.pid")
    args = multi_args(tmp_path, "w1", "w2")

    started = cli("multi", "start", *args, "-c", "1", "-c:w2", "2", timeout=60)

    assert started.returncode == 0, started.stdout + started.stderr
    assert f"> w1@{HOST}: OK" in started.stdout and f"> w2@{HOST}: OK" in started.stdout
    w1, w2 = running_pid(tmp_path / "w1.pid"), running_pid(tmp_path / "w2.pid")
    wait_until(lambda: len(pool_pids(w1)) == 1 and len(pool_pids(w2)) == 2,
               timeout=TIMEOUT, message="-c 1 for w1, -c:w2 2 for w2")  # fmt: skip
    results = [pid.delay() for _ in range(6)]
    assert all(r.get(timeout=TIMEOUT) and r.state == states.SUCCESS for r in results)
    assert f"w2@{HOST}" in (tmp_path / "w2.log").read_text()

    again = cli("multi", "start", *args, timeout=60)
    assert again.returncode == 1
    assert f"> w1@{HOST}: FAILED: already running (pid {w1})" in again.stdout, again.stdout
    assert "Traceback" not in again.stdout + again.stderr

    stopped = cli("multi", "stopwait", *args, "--timeout", "30", timeout=60)

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"> w1@{HOST}: TERM -> {w1}" in stopped.stdout
    assert not pid_alive(w1) and not pid_alive(w2)
    assert not (tmp_path / "w1.pid").exists() and not (tmp_path / "w2.pid").exists()
    down = cli("multi", "stop", *args, timeout=60)
    assert down.returncode == 0 and f"> w1@{HOST}: DOWN" in down.stdout


def test_multi_restart_and_kill(
    app: Celery, cli: CliRunner, daemons: Daemons, tmp_path: Path
) -> None:
    pidfile = tmp_path / "r1.pid"
    daemons.watch(pidfile)
    args = multi_args(tmp_path, "r1")
    assert cli("multi", "start", *args, "-c", "1", timeout=60).returncode == 0
    before = running_pid(pidfile)
    children = wait_until(lambda: descendant_pids(before), timeout=TIMEOUT)

    restarted = cli("multi", "restart", *args, "-c", "1", timeout=60)

    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = running_pid(pidfile)
    assert after != before and not pid_alive(before)
    assert not any(pid_alive(child) for child in children)
    assert parent_of(pid.delay().get(timeout=TIMEOUT)) == after
    children = wait_until(lambda: descendant_pids(after), timeout=TIMEOUT)

    killed = cli("multi", "kill", *args, timeout=60)

    assert killed.returncode == 0 and f"KILL -> {after}" in killed.stdout, killed.stdout
    assert not pid_alive(after) and not pidfile.exists()
    # Its prefork children notice their parent is gone and leave by themselves.
    wait_until(lambda: not any(pid_alive(child) for child in children), timeout=TIMEOUT)


def test_multi_names_show_and_usage_errors(cli: CliRunner, tmp_path: Path) -> None:
    names = cli("multi", "names", "3", timeout=TIMEOUT)
    assert names.stdout.split() == [f"celery{i}@{HOST}" for i in (1, 2, 3)]

    shown = cli(
        "multi", "show", "3", "-A", "proj", "-c:1-2", "3", "-Q:celery3", "images",
        f"--pidfile={tmp_path}/%n.pid", "--", "--time-limit", "5", timeout=TIMEOUT,
    )  # fmt: skip

    lines = shown.stdout.splitlines()
    assert shown.returncode == 0 and len(lines) == 3, shown.stdout + shown.stderr
    assert f"-A proj worker --detach -n celery1@{HOST} --pidfile {tmp_path}/celery1.pid" in lines[0]
    assert "%I.log" in lines[0]  # the worker expands the process index itself
    assert "-c 3" in lines[0] and "-c 3" in lines[1] and "-c" not in lines[2].split()
    assert "-Q images" in lines[2] and "-Q" not in lines[0].split()
    assert all(line.endswith("--time-limit 5") for line in lines)

    for bad, needle in [
        (("start", "w1", "--frobnicate"), "no such worker option: --frobnicate"),
        (("start", "w1", "-c"), "option -c needs a value"),
        (("frobnicate", "w1"), "frobnicate"),
        (("start", "w1", "w1"), "twice"),
    ]:
        done = cli("multi", *bad, timeout=TIMEOUT)
        assert done.returncode == 2, done.stdout + done.stderr
        assert needle in done.stderr and "Traceback" not in done.stderr, done.stderr
