"""A Sentinel-watched Redis for the failover tests: one master, one replica and three
sentinels (``redis-server --sentinel``), all on loopback ports, configured to fail over in
about two seconds."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.helpers import LOOPBACK, RedisServer, free_port, wait_until

MASTER_NAME = "mymaster"


class Sentinels:
    """Three ``redis-server --sentinel`` processes watching ``master``."""

    def __init__(
        self, binary: str, workdir: Path, master: RedisServer, password: str | None = None
    ) -> None:
        self.password = password
        self.binary = binary
        self.workdir = workdir
        self.master = master
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://{LOOPBACK}:{port}/0" for port in self.ports)

    def start(self) -> None:
        for number in range(3):
            port = free_port()
            conf = self.workdir / f"sentinel-{number}.conf"
            conf.write_text(
                f"port {port}\nbind {LOOPBACK}\ndaemonize no\ndir {self.workdir}\n"
                f"sentinel monitor {MASTER_NAME} {LOOPBACK} {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 800\n"
                f"sentinel failover-timeout {MASTER_NAME} 3000\n"
                + (f"requirepass {self.password}\n" if self.password else "")
            )
            log = (self.workdir / f"sentinel-{number}.log").open("ab")
            with log:
                self.procs.append(
                    subprocess.Popen(
                        [self.binary, str(conf), "--sentinel"],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
            self.ports.append(port)
        wait_until(lambda: all(self.master_of(port) for port in self.ports), timeout=10)

    def master_of(self, port: int) -> tuple[str, int] | None:
        """The master the sentinel on ``port`` names now (None: it does not answer)."""
        client = redis.Redis(
            LOOPBACK, port, socket_timeout=1.0, socket_connect_timeout=1.0,
            decode_responses=True, password=self.password,
        )  # fmt: skip
        try:
            host, master_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return str(host), int(master_port)
        except (redis.RedisError, TypeError):
            return None
        finally:
            client.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def sentinel_set(
    binary: str, workdir: Path, password: str | None = None
) -> Iterator[tuple[RedisServer, RedisServer, Sentinels]]:
    """A master, its replica (in sync) and three sentinels; all stopped by PID at the end."""
    master = RedisServer(binary, workdir / "master")
    replica = RedisServer(binary, workdir / "replica")
    sentinels = Sentinels(binary, workdir, master, password)
    for part in (master.workdir, replica.workdir):
        part.mkdir()
    try:
        master.start()
        replica.start()
        with replica.client() as client:
            client.replicaof(LOOPBACK, master.port)
            wait_until(lambda: client.info("replication")["master_link_status"] == "up", 10)
        sentinels.start()
        wait_until(lambda: _sentinels_see_replica(sentinels), timeout=10)
        yield master, replica, sentinels
    finally:
        sentinels.stop()
        replica.stop()
        master.stop()


def _sentinels_see_replica(sentinels: Sentinels) -> bool:
    for port in sentinels.ports:
        client = redis.Redis(LOOPBACK, port, socket_timeout=1.0, password=sentinels.password)
        try:
            # Each knows the replica (to promote) and the two others (to vote).
            if not client.sentinel_slaves(MASTER_NAME):
                return False
            if len(client.sentinel_sentinels(MASTER_NAME)) < 2:
                return False
        finally:
            client.close()
    return True
