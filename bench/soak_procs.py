"""The processes a chaos soak runs and disturbs: a durable redis-server (AOF, fsync on every
write) that can be restarted, killed and frozen on its port, and a set of workers started
through the CLI that can be killed and restarted. Every process is stopped by its own PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers import (
    ManagedProcess,
    RedisServer,
    minicelery_argv,
    wait_until,
)

APP_MODULE = "bench.soak_app"


class DurableRedis(RedisServer):
    """A ``redis-server`` with ``appendonly yes`` and ``appendfsync always``: whatever it
    acknowledged survives a SIGKILL, and a restart on the same port and directory reloads it."""

    def _spawn_and_wait(self, timeout: float) -> None:
        argv = [
            self.binary,
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--port", str(self.port),
            "--bind", self.host,
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self.wait_answering(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_answering(self, timeout: float) -> None:
        """Poll PING until the server answers (an AOF being loaded answers LOADING)."""
        proc = self._proc
        assert proc is not None
        probe = self.client(
            socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {proc.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(answers, timeout=timeout, interval=0.05, message="redis-server is mute")
        finally:
            probe.close()

    def crash(self, nosave: bool) -> None:
        """End the server abruptly: ``SHUTDOWN NOSAVE`` or SIGKILL; it stays down."""
        proc = self._proc
        if proc is None:
            return
        if nosave:
            no_retry = Retry(NoBackoff(), 0)  # a retry would wait for the dead server
            with contextlib.suppress(redis.RedisError), self.client(retry=no_retry) as c:
                c.shutdown(nosave=True)
        if proc.poll() is None and not nosave:
            proc.kill()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.is_running():
            os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        self.thaw()  # a frozen server would ignore SIGTERM
        super().stop(timeout)


class Workers:
    """``workers`` worker processes (prefork, ``concurrency`` children each), kept by slot so a
    killed one is replaced under the same node name. Every incarnation is kept for the final
    cleanup and its output."""

    def __init__(self, count: int, concurrency: int, env: Mapping[str, str], logdir: Path,
                 extra_args: Sequence[str] = ()) -> None:  # fmt: skip
        self.concurrency = concurrency
        self.extra_args = tuple(extra_args)  # worker options of the run's mode
        self.env = dict(env)
        self.logdir = logdir
        self.names = [f"soak{i + 1}@%h" for i in range(count)]
        self.current: list[ManagedProcess] = []
        self.every: list[ManagedProcess] = []
        self.stalls = 0  # times a worker's output stood still while work was under way

    def start_all(self, timeout: float = 60.0) -> None:
        self.current = [self._spawn(name) for name in self.names]
        for worker in self.current:
            worker.wait_ready(timeout)

    def _spawn(self, name: str) -> ManagedProcess:
        argv = minicelery_argv(
            "-A", APP_MODULE, "worker", "-l", "info",
            "-P", "prefork", "-c", str(self.concurrency), "-n", name, *self.extra_args,
        )  # fmt: skip
        worker = ManagedProcess(argv, env=self.env, label=f"worker {name}")
        self.every.append(worker)
        return worker

    def children(self, slot: int) -> list[int]:
        """The live processes of a worker's pool (not its fork server)."""
        return self.current[slot].children()

    def kill_main(self, slot: int) -> tuple[int, list[int]]:
        """SIGKILL a worker's main process; returns its PID and its orphaned children."""
        worker = self.current[slot]
        orphans = worker.record_children()
        worker.kill()
        worker.proc.wait()
        return worker.pid, orphans

    def restart(self, slot: int, timeout: float = 60.0) -> ManagedProcess:
        worker = self._spawn(self.names[slot])
        self.current[slot] = worker
        worker.wait_ready(timeout)
        return worker

    def watch_stalls(self, stop: threading.Event, quiet: float = 6.0) -> None:
        """Until ``stop``: a worker that has logged nothing for ``quiet`` seconds is asked
        for its stacks, once per silence (see :meth:`dump_stacks`), so a main loop stuck on
        Redis shows where. Only log records (lines starting with ``[``) end a silence."""
        state: dict[int, list[float]] = {}  # pid -> [lines scanned, last record, dumped]
        while not stop.wait(1.0):
            for worker in list(self.current):
                scanned, last, dumped = state.setdefault(worker.pid, [0, time.monotonic(), 0])
                lines = worker.lines
                fresh = any(line.startswith("[") for line in lines[int(scanned) :])
                state[worker.pid][0] = len(lines)
                if fresh:
                    state[worker.pid][1:] = [time.monotonic(), 0]
                elif not dumped and time.monotonic() - last > quiet and worker.is_alive():
                    self.stalls += 1
                    state[worker.pid][2] = 1
                    self._kernel_view(worker.pid)
                    worker.send_signal(signal.SIGUSR2)

    def dump_stacks(self) -> None:
        """Ask every live worker's main process for its threads' stacks (SIGUSR2, see
        ``bench.soak_app``); they land in its output."""
        for worker in self.current:
            if worker.is_alive():
                self._kernel_view(worker.pid)
                worker.send_signal(signal.SIGUSR2)

    def _kernel_view(self, pid: int) -> None:
        """What the kernel says each thread of ``pid`` waits in, and its signal masks: a
        process that cannot print its stacks still shows where it is stuck."""
        lines = []
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            lines += [line for line in status if line.startswith(("State", "Sig", "Threads"))]
        for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
            with contextlib.suppress(OSError):
                comm = (task / "comm").read_text().strip()
                wchan = (task / "wchan").read_text().strip()
                syscall = (task / "syscall").read_text().split()[:1]
                lines.append(f"thread {task.name} {comm}: wchan={wchan} syscall={syscall}")
        stamp = time.strftime("%H:%M:%S")
        with (self.logdir / f"threads-{pid}.txt").open("a") as out:
            out.write(f"--- {stamp}\n" + "\n".join(lines) + "\n")

    def dead_unexpectedly(self) -> list[ManagedProcess]:
        return [worker for worker in self.current if not worker.is_alive()]

    def stop_all(self, timeout: float = 20.0) -> None:
        """Warm shutdown of the current ones, then SIGKILL whatever is left of any."""
        for worker in self.current:
            worker.terminate()
        for worker in self.every:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout)
            worker.close(timeout=1.0)

    def save_logs(self) -> list[Path]:
        paths = []
        for number, worker in enumerate(self.every, 1):
            path = self.logdir / f"worker-{number}-{worker.pid}.log"
            path.write_text(f"{worker.label} pid={worker.pid}\n{worker.output()}\n")
            paths.append(path)
        return paths
