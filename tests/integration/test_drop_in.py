"""What a Celery user hits on day one, with real workers: a base class's ``__call__`` in
every pool, ``print()`` going to ``--logfile``, and the worker flags Celery users carry."""

from __future__ import annotations

import grp
import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from minicelery.cli.flags import drop_privileges
from tests.helpers import RedisServer, WorkerFactory, kill_pid, pid_alive, pointed_at, wait_until
from tests.integration.apps import compat
from tests.integration.conftest import CliRunner

COMPAT = "tests.integration.apps.compat"


@pytest.fixture
def compat_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(compat.app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_base_class_call_runs_in_every_pool(
    compat_app: Celery, worker_factory: WorkerFactory, pool: str
) -> None:
    worker_factory(COMPAT, concurrency=1, pool=pool)
    result = compat.in_context.delay(4)
    assert result.get(timeout=15) == ["inside", 4, result.id]
    wrapped = compat.in_super_context.delay()
    assert wrapped.get(timeout=15) == ["via-super", wrapped.id, False]


def test_print_in_a_task_goes_to_the_logfile(
    compat_app: Celery, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    logfile = tmp_path / "worker.log"
    worker = worker_factory(
        COMPAT, concurrency=1, pool="prefork", extra_args=["-f", str(logfile)], wait_ready=False
    )
    wait_until(lambda: logfile.exists() and "ready." in logfile.read_text(), timeout=15)
    assert compat.shout.delay("hello-log").get(timeout=15) == "hello-log"
    wait_until(lambda: "printed by the task: hello-log" in logfile.read_text(), timeout=10)
    line = next(line for line in logfile.read_text().splitlines() if "printed by the task" in line)
    assert "WARNING" in line  # worker_redirect_stdouts_level, as Celery
    assert "printed by the task" not in worker.output()


# --------------------------------------------------------------------------- worker flags

CELERY_FLAGS = [
    "-O", "fair", "--without-gossip", "--without-mingle", "--without-heartbeat",
    "-S", "/tmp/unused-statedb", "-s", "unused-schedule", "--scheduler", "x.y:Z",
    "--pool-start-method", "spawn",
]  # fmt: skip


def test_worker_accepts_celerys_flags_with_a_note_each(
    compat_app: Celery, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(COMPAT, concurrency=1, extra_args=CELERY_FLAGS)
    assert compat.shout.delay("flags").get(timeout=15) == "flags"
    notes = [line for line in worker.output().splitlines() if line.startswith("Note: ")]
    assert len(notes) == 8, worker.output()
    assert any(note.startswith("Note: -O fair:") for note in notes)


def test_worker_purge_drops_waiting_messages(
    compat_app: Celery, worker_factory: WorkerFactory
) -> None:
    stale = [compat.shout.delay(f"stale-{i}") for i in range(3)]
    worker = worker_factory(COMPAT, concurrency=1, extra_args=["--purge"])
    assert "purge: Erased 3 messages from queue celery." in worker.output()
    assert compat.shout.delay("fresh").get(timeout=15) == "fresh"
    assert [result.state for result in stale] == ["PENDING"] * 3


def test_worker_include_imports_modules(compat_app: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(COMPAT, concurrency=1, extra_args=["-I", "tests.integration.apps.compat_extra"])
    assert compat_app.send_task("compat_extra.loaded").get(timeout=15) == "loaded by -I"


def _ids(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line for line in status if line.startswith("Uid:")).split()[1]
    gid = next(line for line in status if line.startswith("Gid:")).split()[1]
    return int(uid), int(gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_worker_gid_drops_the_group(compat_app: Celery, worker_factory: WorkerFactory) -> None:
    # The group only: this interpreter may live where only root can read (a user's home).
    worker = worker_factory(COMPAT, concurrency=1, extra_args=["--gid", "nogroup"])
    nogroup = grp.getgrnam("nogroup").gr_gid
    assert _ids(worker.pid) == (0, nogroup)
    assert compat.shout.delay("as nogroup").get(timeout=15) == "as nogroup"
    assert all(_ids(child)[1] == nogroup for child in worker.children())


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_uid_and_gid_switch_user_in_a_forked_process() -> None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: switch, report, exit at once
        try:
            drop_privileges("nobody", None)
            os.write(write_fd, f"{os.getuid()} {os.getgid()} {os.getgroups()}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        report = os.read(read_fd, 200).decode()
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    nobody = pwd.getpwnam("nobody")
    uid, gid, _ = report.split(" ", 2)
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)


def test_uid_of_an_unknown_user_is_one_clear_line(cli: CliRunner) -> None:
    done = cli("-A", COMPAT, "worker", "--uid", "no-such-user-here")
    assert done.returncode != 0
    assert (done.stdout + done.stderr).strip() == "Error: --uid: no such user: no-such-user-here"


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_a_pool_we_do_not_have_is_one_clear_line(cli: CliRunner, pool: str) -> None:
    done = cli("-A", COMPAT, "worker", "-P", pool)
    text = done.stdout + done.stderr
    assert done.returncode != 0
    hint = "use -P threads for I/O-bound tasks"
    assert text.strip() == f"Error: the {pool} pool is not available in minicelery: {hint}"


def test_global_workdir(cli: CliRunner, tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "wdapp.py").write_text(
        "import os\nfrom minicelery import Celery\n"
        "app = Celery('wd', broker=os.environ['MC_TEST_REDIS_URL'],"
        " key_prefix=os.environ['MC_TEST_PREFIX'])\n"
        "@app.task(name='wd.hello')\ndef hello():\n    return 1\n"
    )
    done = cli("--workdir", str(tmp_path), "-A", "wdapp", "call", "wd.hello")
    assert done.returncode == 0, done.stderr
    missing = cli("--workdir", str(tmp_path / "nope"), "-A", "wdapp", "call", "wd.hello")
    assert missing.returncode != 0
    assert (missing.stdout + missing.stderr).strip().startswith("Error: cannot change to --workdir")


def test_beat_detach_daemonizes_and_takes_a_scheduler_flag(cli: CliRunner, tmp_path: Path) -> None:
    pidfile, logfile = tmp_path / "beat.pid", tmp_path / "beat.log"
    done = cli(
        "-A", COMPAT, "beat", "--detach", "-S", "x.y:Z",
        "--pidfile", str(pidfile), "-f", str(logfile),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10))
    try:
        assert pid_alive(pid)
        assert os.getsid(pid) != os.getsid(0)  # a session of its own: detached from ours
        wait_until(lambda: "--scheduler x.y:Z is ignored" in logfile.read_text(), timeout=10)
    finally:
        kill_pid(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), timeout=15)
    assert not pidfile.exists()
