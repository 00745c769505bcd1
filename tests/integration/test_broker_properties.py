"""Properties of the Redis broker, observed end to end: real redis-server, real workers.

No loss when a worker dies, no false redelivery of long tasks, no polling latency,
priorities, countdown/eta (and scheduled messages living in Redis), expiry, key-prefix
isolation, and riding out a Redis restart.

Tasks record their executions into Redis lists (``tests.integration.apps.props``); a test
declares "exactly once" only after every queue, hold and the schedule of its prefix are
empty, so nothing could still run later.
"""

from __future__ import annotations

import collections
import datetime as dt
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from minicelery import Celery, states
from minicelery.broker import OutgoingMessage
from minicelery.exceptions import OperationalError, TaskRevokedError
from minicelery.redislayer.keys import KeySchema
from tests.helpers import (
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    kill_pid,
    pid_alive,
    pointed_at,
    prefixed_keys,
    wait_until,
)
from tests.integration.apps import props

PROPS = "tests.integration.apps.props"
QUEUE = "celery"
# Fast failure detection for the tests that need it: lost after 1 s of silence.
FAST_RECOVERY = {"MC_TEST_HEARTBEAT": "0.2", "MC_TEST_LOST_TIMEOUT": "1"}
# Commands a worker sends itself (the rest run inside its Lua scripts).
CLIENT_CALLS = ("evalsha", "eval", "blpop", "zrange")


# --------------------------------------------------------------------------- helpers


class Layout:
    """Read-only view of one prefix's broker keys (see minicelery/redislayer/keys.py)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = KeySchema(prefix)

    def queued(self, queue: str = QUEUE) -> int:
        return sum(int(self.client.llen(self.keys.queue(queue, p))) for p in range(10))

    def hold_keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=self.keys.hold("*"), count=1000))

    def held(self) -> int:
        return sum(int(self.client.hlen(key)) for key in self.hold_keys())

    def scheduled(self) -> int:
        return int(self.client.zcard(self.keys.scheduled))

    def pending(self) -> int:
        """Messages that could still run: queued, held by a consumer, or scheduled."""
        return self.queued() + self.held() + self.scheduled()

    def describe(self) -> str:
        return f"queued={self.queued()} held={self.held()} scheduled={self.scheduled()}"


def entries(client: redis.Redis, key: str) -> list[str]:
    items = client.lrange(key, 0, -1)
    return [item.decode() if isinstance(item, bytes) else str(item) for item in items]


def wait_drained(
    layout: Layout, workers: WorkerFactory, runs_key: str, timeout: float = 15.0
) -> None:
    """Wait until nothing of the prefix could still run (then ``runs_key`` is final)."""
    wait_until(
        lambda: layout.pending() == 0,
        timeout=timeout,
        message=lambda: (
            f"broker not drained: {layout.describe()}, "
            f"runs so far: {entries(layout.client, runs_key)}\n{workers.report(40)}"
        ),
    )


def client_calls(client: redis.Redis) -> int:
    """How many broker calls (scripts, BLPOPs, schedule reads) Redis has served so far."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in CLIENT_CALLS)


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def kill_worker_and_children(worker: ManagedProcess) -> list[int]:
    """SIGKILL a worker's main process and every descendant, by PID (a machine crash: the
    main process cannot requeue or ack anything). Returns the children's PIDs."""
    children = worker.record_children()
    assert children, f"worker has no pool children\n{worker.describe()}"
    start_times = dict(worker.recorded_children)
    worker.kill()  # the main process first, so it cannot react to its children dying
    for pid in children:
        kill_pid(pid, signal.SIGKILL, start_times[pid])
    worker.wait_exit(timeout=5)
    wait_until(
        lambda: not any(pid_alive(pid, start_times[pid]) for pid in children),
        timeout=5,
        message=f"children {children} survived SIGKILL",
    )
    return children


@pytest.fixture
def papp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    """The ``props`` app in this process, on the test's Redis and key prefix."""
    with pointed_at(props.app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.fixture
def layout(redis_client: redis.Redis, key_prefix: str) -> Layout:
    return Layout(redis_client, key_prefix)


# --------------------------------------------------------------------------- 1. no loss


def test_reserved_messages_of_a_killed_worker_run_elsewhere_exactly_once(
    papp: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    layout: Layout,
    key_prefix: str,
) -> None:
    hang_key, runs_key = f"{key_prefix}:hang", f"{key_prefix}:runs"
    # One pool slot and a prefetch window of four, the messages queued before A starts: A
    # reserves the long acks_late task and more that it cannot start while the slot runs it
    # (how many is A's business; a child that consumes by itself reserves only between
    # tasks, so they must be there when it takes the long one).
    hung = props.hang_once_late.delay(hang_key, "hang", 60)
    values = [f"r{i}" for i in range(6)]
    for value in values:
        props.record.delay(runs_key, value)
    worker_a = worker_factory(
        PROPS, concurrency=1, extra_args=["--prefetch-multiplier", "4"], env=FAST_RECOVERY
    )
    wait_until(lambda: redis_client.llen(hang_key) == 1, message=worker_a.describe)
    wait_until(
        lambda: layout.held() >= 2 and layout.held() + layout.queued() == 1 + len(values),
        message=lambda: f"{layout.describe()}\n{worker_a.describe()}",
    )

    kill_worker_and_children(worker_a)
    held = layout.held()
    assert held >= 2, f"A should have died holding unstarted messages: {layout.describe()}"
    assert redis_client.llen(runs_key) == 0, "A could not start any of them"

    worker_b = worker_factory(PROPS, concurrency=2, env=FAST_RECOVERY)
    # The redelivered acks_late task runs again (at least once), and returns at once now.
    assert hung.get(timeout=15) == 2
    worker_b.wait_for_line("held by lost worker(s)")
    wait_until(lambda: redis_client.llen(runs_key) >= len(values), message=worker_factory.report)
    wait_drained(layout, worker_factory, runs_key)

    runs = entries(redis_client, runs_key)
    assert sorted(runs) == sorted(values), f"each message exactly once, got {runs}"
    assert entries(redis_client, hang_key) == ["hang", "hang"]


# --------------------------------------------------------------------------- 2. no false redelivery


def test_long_task_on_live_worker_is_not_redelivered(
    papp: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    layout: Layout,
    key_prefix: str,
) -> None:
    runs_key = f"{key_prefix}:runs"
    # Recovery window: heartbeat 0.2 s + lost timeout 1 s = 1.2 s; the tasks run 4 s (> 3x).
    # One slot and one reserved message each: a busy worker has no room to reserve more, so
    # only its heartbeats tell the other worker it is alive.
    full = ["--prefetch-multiplier", "1"]
    worker_factory(PROPS, concurrency=1, extra_args=full, env=FAST_RECOVERY)
    worker_factory(PROPS, concurrency=1, extra_args=full, env=FAST_RECOVERY)
    late = props.record_sleep_late.delay(runs_key, "late", 4.0)
    wait_until(lambda: redis_client.llen(runs_key) == 1, message=worker_factory.report)
    early = props.record_sleep.delay(runs_key, "early", 4.0)  # goes to the other worker

    assert late.get(timeout=20) == "late"
    assert early.get(timeout=20) == "early"
    wait_drained(layout, worker_factory, runs_key)
    runs = entries(redis_client, runs_key)
    assert sorted(runs) == ["early", "late"], f"each task exactly once, got {runs}"
    for worker in worker_factory.workers:
        assert "held by lost worker(s)" not in worker.output(), worker.describe()


# --------------------------------------------------------------------------- 3. no polling


def test_idle_worker_starts_a_new_task_within_milliseconds(
    papp: Celery, worker_factory: WorkerFactory, redis_client: redis.Redis
) -> None:
    worker = worker_factory(PROPS, concurrency=1)
    props.started_at.delay().get(timeout=10)  # warm up the child and the connections

    # The idle period the property is about (not synchronisation): > 1 s without work.
    calls_before = client_calls(redis_client)
    idle_since = time.monotonic()
    wait_until(lambda: time.monotonic() - idle_since > 1.2, timeout=5, interval=0.05)
    calls_idle = client_calls(redis_client) - calls_before
    blocked = int(redis_client.info("clients")["blocked_clients"])

    latencies = []
    for _ in range(20):
        sent = time.time()
        started = props.started_at.delay().get(timeout=5)
        latencies.append(started - sent)

    shown = ", ".join(f"{lat * 1000:.1f}" for lat in latencies)
    assert latencies[0] < 0.1, f"first task after idling took {shown} ms\n{worker.describe()}"
    assert statistics.median(latencies) < 0.02, f"latencies (ms): {shown}"
    # Idle means parked in a blocking BLPOP, not sleeping and polling: a handful of calls a
    # second (heartbeats, 1 s blocking timeouts), where a 10 ms poller would make ~100.
    assert blocked >= 1, "an idle worker should block in Redis"
    assert calls_idle < 40, f"{calls_idle} broker calls in 1.2 s of idling"


# --------------------------------------------------------------------------- 4. priorities


def test_priority_9_first_then_fifo_within_a_priority(
    papp: Celery, worker_factory: WorkerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    runs_key = f"{key_prefix}:runs"
    priorities = [0, 5, 9, 3, 5, 0, 9, 7, 3, 1, 9, 0, 7, 5, 2, 8, 6, 4, 8, 0]
    sent: list[tuple[int, int, str]] = []
    for index, priority in enumerate(priorities):
        value = f"p{priority}-{index}"
        props.record.apply_async((runs_key, value), priority=priority)
        sent.append((priority, index, value))
    expected = [value for _, _, value in sorted(sent, key=lambda s: (-s[0], s[1]))]

    worker_factory(PROPS, concurrency=1, extra_args=["--prefetch-multiplier", "1"])
    wait_until(
        lambda: redis_client.llen(runs_key) >= len(sent),
        message=worker_factory.report,
    )
    assert entries(redis_client, runs_key) == expected


# --------------------------------------------------------------------------- 5. countdown / eta


def test_countdown_runs_on_time(papp: Celery, worker_factory: WorkerFactory) -> None:
    worker_factory(PROPS, concurrency=1)
    for countdown in (1.0, 1.5):
        sent = time.time()
        started = props.started_at.apply_async(countdown=countdown).get(timeout=10)
        late = started - (sent + countdown)
        assert late >= 0, f"ran {-late * 1000:.0f} ms before its countdown"
        assert late < 0.3, f"ran {late * 1000:.0f} ms after it was due"


def test_eta_tasks_due_together_run_exactly_once_with_two_workers(
    papp: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    layout: Layout,
    key_prefix: str,
) -> None:
    runs_key = f"{key_prefix}:runs"
    worker_factory(PROPS, concurrency=2)
    worker_factory(PROPS, concurrency=2)
    count = 200
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5)
    for index in range(count):
        props.record_time.apply_async((runs_key, str(index)), eta=eta)
    assert layout.scheduled() == count, "eta messages wait in the scheduled set"

    wait_until(
        lambda: redis_client.llen(runs_key) >= count, timeout=20, message=worker_factory.report
    )
    wait_drained(layout, worker_factory, runs_key)
    runs = [entry.split("@") for entry in entries(redis_client, runs_key)]
    counts = collections.Counter(value for value, _ in runs)
    assert set(counts) == {str(i) for i in range(count)}
    assert [v for v, n in counts.items() if n != 1] == [], "each eta task exactly once"
    earliest = min(float(started) for _, started in runs)
    assert earliest >= eta.timestamp(), f"ran {eta.timestamp() - earliest:.3f} s early"


def test_scheduled_messages_live_in_redis_not_in_worker_memory(
    papp: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    layout: Layout,
    key_prefix: str,
) -> None:
    count, batch = 20_000, 2_000
    worker = worker_factory(PROPS, concurrency=1)
    assert props.add.delay(1, 1).get(timeout=10) == 2  # warm up before measuring
    rss_before = vm_rss_kb(worker.pid)

    schedwake = layout.keys.schedule_wake
    messages: list[OutgoingMessage] = []
    for index in range(count):
        message, queue, priority = papp.prepare_message(
            props.record.name, [f"{key_prefix}:runs", str(index)], {}, props.record,
            countdown=3600,
        )  # fmt: skip
        messages.append(OutgoingMessage(queue, message.encode(), priority, time.time() + 3600))
        if len(messages) == batch:
            papp.broker.publish(messages)
            messages = []
    if messages:
        papp.broker.publish(messages)

    # The worker's scheduler has seen the change, and the worker still takes work.
    wait_until(lambda: redis_client.llen(schedwake) == 0, message=worker.describe)
    assert props.add.delay(2, 2).get(timeout=10) == 4
    rss_after = vm_rss_kb(worker.pid)

    assert layout.scheduled() == count
    assert layout.queued() == 0 and layout.held() == 0
    assert redis_client.llen(f"{key_prefix}:runs") == 0
    growth_mb = (rss_after - rss_before) / 1024
    assert growth_mb < 5, f"worker RSS grew {growth_mb:.1f} MB with {count} scheduled messages"


# --------------------------------------------------------------------------- 6. expires


def test_task_expired_before_it_starts_is_revoked_not_run(
    papp: Celery, worker_factory: WorkerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    block_key, runs_key = f"{key_prefix}:block", f"{key_prefix}:runs"
    worker = worker_factory(PROPS, concurrency=1)
    blocker = props.record_sleep.delay(block_key, "block", 1.0)
    wait_until(lambda: redis_client.llen(block_key) == 1, message=worker.describe)
    # Queued behind the blocker: due to start in ~1 s, but expiring after 0.3 s.
    expired = props.record.apply_async((runs_key, "expired"), expires=0.3)
    fresh = props.record.apply_async((runs_key, "fresh"), expires=60)

    with pytest.raises(TaskRevokedError):
        expired.get(timeout=10)
    assert expired.state == states.REVOKED
    assert fresh.get(timeout=10) == 1
    assert blocker.get(timeout=10) == "block"
    assert entries(redis_client, runs_key) == ["fresh"]
    worker.wait_for_line(f"Discarding revoked task: {props.record.name}[{expired.id}]")


# --------------------------------------------------------------------------- 7. key prefixes


def test_apps_with_different_key_prefixes_do_not_see_each_others_tasks(
    papp: Celery,
    worker_factory: WorkerFactory,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    with prefixed_keys(redis_server) as other_prefix:
        app_b = Celery(
            "props-b",
            broker=redis_server.url,
            backend=redis_server.url,
            key_prefix=other_prefix,
            set_as_current=False,
        )
        try:
            _check_prefix_isolation(
                papp, app_b, worker_factory, redis_client, key_prefix, other_prefix
            )
        finally:
            app_b.close()


def _check_prefix_isolation(
    app_a: Celery,
    app_b: Celery,
    worker_factory: WorkerFactory,
    client: redis.Redis,
    prefix_a: str,
    prefix_b: str,
) -> None:
    runs_key = f"{prefix_a}:{prefix_b}:runs"  # deleted with either prefix
    name = props.record_prefix.name
    layout_b = Layout(client, prefix_b)

    worker_factory(PROPS, concurrency=2)  # prefix A only
    from_b = app_b.send_task(name, (runs_key, "b1"))
    from_a = app_a.send_task(name, (runs_key, "a1"))
    assert from_a.get(timeout=10) == f"{prefix_a}/a1"
    # A second A task, sent after B's, also done: A's worker had every chance to take B's.
    assert app_a.send_task(name, (runs_key, "a2")).get(timeout=10) == f"{prefix_a}/a2"
    assert layout_b.queued() == 1, "B's message waits on B's queue"
    assert from_b.state == states.PENDING

    worker_factory(PROPS, concurrency=2, env={"MC_TEST_PREFIX": prefix_b})
    assert from_b.get(timeout=10) == f"{prefix_b}/b1"
    assert app_b.send_task(name, (runs_key, "b2")).get(timeout=10) == f"{prefix_b}/b2"
    assert app_a.send_task(name, (runs_key, "a3")).get(timeout=10) == f"{prefix_a}/a3"
    # Results are per prefix too.
    assert app_a.AsyncResult(from_b.id).state == states.PENDING
    assert app_b.AsyncResult(from_a.id).state == states.PENDING

    assert sorted(entries(client, runs_key)) == sorted(
        [f"{prefix_a}/a1", f"{prefix_a}/a2", f"{prefix_a}/a3", f"{prefix_b}/b1", f"{prefix_b}/b2"]
    )


# --------------------------------------------------------------------------- 8. Redis restart


def test_redis_down_then_restarted(
    papp: Celery, worker_factory: WorkerFactory, redis_server: RedisServer
) -> None:
    worker = worker_factory(PROPS, concurrency=1)
    assert props.add.delay(1, 2).get(timeout=10) == 3

    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(OperationalError):
        props.add.delay(3, 4)
    assert time.monotonic() - started < 15, "publishing with Redis down must fail in bounded time"
    mark = len(worker.lines)
    worker.wait_for_line("Redis is unreachable", timeout=15)

    redis_server.start()
    worker.wait_for_line("connection to Redis restored", timeout=20, start=mark)
    assert props.add.delay(20, 22).get(timeout=20) == 42
    assert worker.is_alive(), worker.describe()
