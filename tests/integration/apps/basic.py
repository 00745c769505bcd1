"""The app the integration tests run workers with; settings come from the environment the
test fixtures set (a per-test key prefix on the session's redis-server)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from minicelery import Celery
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://basic")

app = Celery(
    "basic",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task
def sleep(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


@app.task(acks_late=True)
def sleep_late(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def own_redis() -> Any:
    """This process's own Redis client (see ``common.redis_client``)."""
    return redis_client(REDIS_URL)


@app.task
def record(key: str, value: str) -> int:
    """Append ``value`` to a Redis list: lets tests count and order executions."""
    return int(own_redis().rpush(key, value))


@app.task(acks_late=True)
def record_late(key: str, value: str) -> int:
    return int(own_redis().rpush(key, value))


@app.task
def record_and_sleep(key: str, value: str, seconds: float) -> str:
    """Records that it started, then sleeps: a long task whose runs can be counted."""
    own_redis().rpush(key, value)
    time.sleep(seconds)
    return value


@app.task
def pid() -> int:
    return os.getpid()


@app.task
def die(how: str = "exit") -> None:
    if how == "exit":
        os._exit(17)
    os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGSEGV)


@app.task(acks_late=True)
def die_late() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True)
def whoami(self: Any) -> dict[str, Any]:
    return {
        "id": self.request.id,
        "hostname": self.request.hostname,
        "retries": self.request.retries,
        "queue": self.request.delivery_info["routing_key"],
    }


@app.task(acks_late=True, reject_on_worker_lost=True)
def die_rejected(key: str) -> None:
    """Counts its runs, then kills its own process: each loss requeues it, up to a limit."""
    own_redis().rpush(key, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
def unencodable() -> Any:
    """Returns a value no result serializer can encode (json, msgpack or pickle)."""
    return lambda: None


@app.task
def stop_process_then_sleep(pid: int, seconds: float) -> str:
    """SIGSTOPs ``pid`` (a test's own redis-server) as it starts, then sleeps: Redis hangs
    while this task runs, before the worker has acknowledged or stored anything of it."""
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    return "slept"
