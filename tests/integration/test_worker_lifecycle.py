"""The worker's life, observed from outside: real ``minicelery worker`` processes on a real
redis-server. Prefork children, prefetch limits, children that die mid-task, warm and cold
shutdown, and messages that cannot be run (dead letters and the ``dead`` command).

Everything synchronises by polling (``wait_until``, ``wait_for_line``, ``get(timeout=...)``);
``time.sleep`` happens only inside tasks.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import time
from typing import Any

import msgpack
import pytest
import redis

from minicelery import Celery, states
from minicelery.exceptions import NotRegistered, WorkerLostError
from minicelery.redislayer.keys import KeySchema
from minicelery.result import AsyncResult
from tests.helpers import ManagedProcess, WorkerFactory, wait_until
from tests.integration.apps.basic import add, die, pid, sleep, sleep_late
from tests.integration.conftest import CliRunner

BASIC = "tests.integration.apps.basic"
EXTRA = "tests.integration.apps.extra"
ADD = f"{BASIC}.add"
QUEUE = "celery"
# Workers whose lost-worker recovery is too slow to explain a prompt redelivery: anything
# that runs within a few seconds was given back on purpose, not recovered after a timeout.
SLOW_RECOVERY = {"MC_TEST_LOST_TIMEOUT": "30"}
GARBAGE = b"\xc1\xc1 this is not a task message \xff\xfe"


# --------------------------------------------------------------------------- helpers


def queue_keys(prefix: str, queue: str = QUEUE) -> list[str]:
    return [KeySchema(prefix).queue(queue, priority) for priority in range(10)]


def queued(client: redis.Redis, prefix: str, queue: str = QUEUE) -> int:
    """Messages waiting on ``queue`` (all priorities)."""
    return sum(int(client.llen(key)) for key in queue_keys(prefix, queue))


def hold_sizes(client: redis.Redis, prefix: str, worker: ManagedProcess | None = None) -> int:
    """Messages reserved by ``worker`` (by every consumer when None), from their hold hashes."""
    # The consumer id is "<hostname>:<pid>:<random>"; the hold key is "{p}:hold:<consumer>".
    pattern = KeySchema(prefix).hold(f"*:{worker.pid}:*" if worker else "*")
    return sum(int(client.hlen(key)) for key in client.scan_iter(match=pattern, count=1000))


def push_raw(client: redis.Redis, prefix: str, data: bytes, queue: str = QUEUE) -> None:
    """What a broken producer would do: raw bytes on the queue, and a wake-up token."""
    client.rpush(KeySchema(prefix).queue(queue, 0), data)
    client.rpush(KeySchema(prefix).wake(queue), b"1")


def envelope_with(app: Celery, header: str, value: Any) -> bytes:
    """A well-formed ``add(1, 2)`` message, except that ``header`` is ``value`` (deleted
    when ``value`` is ``...``)."""
    message, _, _ = app.prepare_message(ADD, [1, 2], {}, None)
    if value is ...:
        del message.headers[header]
    else:
        message.headers[header] = value
    return message.encode()


def children_of(worker: ManagedProcess, count: int) -> list[int]:
    """Wait until the worker has exactly ``count`` live children; return their PIDs."""
    found: list[int] = []

    def settled() -> bool:
        found[:] = worker.children()
        return len(found) == count

    wait_until(
        settled,
        timeout=10,
        message=lambda: f"expected {count} children, have {found}\n{worker.describe()}",
    )
    return sorted(found)


def fresh(app: Celery, task_id: str) -> AsyncResult:
    """A result handle without a cached state (``get()`` caches ready states)."""
    return app.AsyncResult(task_id)


# --------------------------------------------------------------------------- prefork


def test_tasks_run_in_child_processes(app: Celery, worker_factory: WorkerFactory) -> None:
    worker = worker_factory(concurrency=3)
    children = children_of(worker, 3)
    assert len(set(children)) == 3
    assert worker.pid not in children

    ran_in = {pid.delay().get(timeout=10) for _ in range(6)}
    assert worker.pid not in ran_in
    assert ran_in <= set(children), f"tasks ran in {ran_in}, children are {children}"
    assert children_of(worker, 3) == children  # nobody was replaced


def test_three_children_run_three_tasks_at_once(app: Celery, worker_factory: WorkerFactory) -> None:
    from tests.integration.apps.extra import SLOW_PID

    worker = worker_factory(app_module=EXTRA, concurrency=3)
    children = children_of(worker, 3)
    results = [app.send_task(SLOW_PID, [1.5]) for _ in range(3)]
    ran_in = [result.get(timeout=15) for result in results]
    assert sorted(ran_in) == children, f"ran in {ran_in}, children are {children}"


def test_busy_child_does_not_hold_back_a_queued_task(
    app: Celery, worker_factory: WorkerFactory
) -> None:
    worker_factory(concurrency=2)
    slow = sleep.delay(3, "slow")
    quick = add.delay(1, 2)
    started = time.monotonic()
    assert quick.get(timeout=10) == 3
    waited = time.monotonic() - started
    assert not slow.ready(), "the quick task waited for the slow one"
    assert waited < 2.0, f"add took {waited:.2f}s next to a 3 s task"
    assert slow.get(timeout=10) == "slow"


@pytest.mark.single_server  # reads the hold keys of one server
@pytest.mark.parametrize("task", [sleep, sleep_late], ids=["acks-early", "acks-late"])
def test_reservations_never_exceed_concurrency_times_prefetch(
    app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    task: Any,
) -> None:
    worker = worker_factory(concurrency=1, extra_args=("--prefetch-multiplier", "2"))
    results = [task.delay(0.2, index) for index in range(10)]
    samples: list[tuple[int, int]] = []  # (held by the worker, waiting on the queue)

    def all_done() -> bool:
        samples.append(
            (hold_sizes(redis_client, key_prefix, worker), queued(redis_client, key_prefix))
        )
        return all(result.ready() for result in results)

    wait_until(all_done, timeout=30, message=lambda: worker.describe())
    assert [result.get(timeout=1) for result in results] == list(range(10))

    held = [h for h, _ in samples]
    assert max(held) <= 2, f"held up to {max(held)} messages with -c 1 x2: {samples}"
    assert max(held) >= 1, f"never saw the worker hold anything: {samples}"
    # While the first tasks ran, the others stayed on the queue (not in some hidden buffer).
    assert any(h >= 1 and w >= 7 for h, w in samples), samples
    assert all(h + w <= 10 for h, w in samples), samples


# --------------------------------------------------------------------------- lost children


@pytest.mark.parametrize(
    ("how", "described"),
    [("exit", "exitcode 17"), ("kill", "signal 9 (SIGKILL)"), ("segv", "signal 11 (SIGSEGV)")],
    ids=["exit", "kill", "segv"],
)
def test_child_dying_mid_task_is_replaced(
    app: Celery, worker_factory: WorkerFactory, how: str, described: str
) -> None:
    worker = worker_factory(concurrency=1)
    (original,) = children_of(worker, 1)
    doomed = die.delay(how)
    after = pid.delay()  # queued behind the doomed task: must survive the crash

    with pytest.raises(WorkerLostError) as lost:
        doomed.get(timeout=15)
    assert described in str(lost.value)
    assert doomed.state == states.FAILURE

    ran_in = after.get(timeout=15)
    assert ran_in not in (original, worker.pid)
    assert children_of(worker, 1) == [ran_in], "the replacement child runs the next task"
    assert add.delay(2, 2).get(timeout=10) == 4
    assert worker.is_alive()


# --------------------------------------------------------------------------- shutdown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_warm_shutdown_finishes_running_task_and_gives_back_reserved(
    app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    sig: signal.Signals,
) -> None:
    # Queued before the worker starts, so it reserves all four at once (-c 1 x4 prefetch).
    running = sleep.delay(2, "finished")
    reserved = [add.delay(n, n) for n in range(3)]
    first = worker_factory(concurrency=1, env=SLOW_RECOVERY)
    first.wait_for_line(f"sleep[{running.id}] received")
    wait_until(
        lambda: queued(redis_client, key_prefix) == 0,
        message=lambda: f"the worker did not reserve the adds\n{first.describe()}",
    )

    first.send_signal(sig)
    wait_until(
        lambda: queued(redis_client, key_prefix) == 3,
        timeout=10,
        message=lambda: f"reserved messages not given back\n{first.describe()}",
    )
    assert first.is_alive() and not running.ready(), "given back only once the task ended"

    second = worker_factory(concurrency=1, env=SLOW_RECOVERY)
    started = time.monotonic()
    assert [result.get(timeout=10) for result in reserved] == [0, 2, 4]
    assert time.monotonic() - started < 10
    for result in reserved:
        second.wait_for_line(f"add[{result.id}] succeeded")

    assert running.get(timeout=10) == "finished"
    assert running.state == states.SUCCESS
    assert first.wait_exit(timeout=15) == 0
    assert f"sleep[{running.id}] succeeded" in first.output()


@pytest.mark.parametrize("how", ["SIGTERM-twice", "SIGQUIT"])
def test_cold_shutdown_stops_running_tasks(
    app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    how: str,
) -> None:
    # Queued before the worker starts, so it reserves all four at once (-c 2 x4 prefetch).
    late = sleep_late.delay(2, "late")  # acks_late: its message goes back to the queue
    early = sleep.delay(30, "early")  # acked on receipt: it is lost, and says so
    reserved = [add.delay(n, 10) for n in range(2)]
    first = worker_factory(concurrency=2, env=SLOW_RECOVERY)
    first.wait_for_line(f"sleep_late[{late.id}] received")
    first.wait_for_line(f"sleep[{early.id}] received")
    wait_until(
        lambda: queued(redis_client, key_prefix) == 0,
        message=lambda: f"the worker did not reserve the adds\n{first.describe()}",
    )

    if how == "SIGQUIT":
        first.send_signal(signal.SIGQUIT)
    else:
        first.terminate()
        first.wait_for_line("Warm shutdown")
        first.terminate()
    stopped_at = time.monotonic()
    first.wait_exit(timeout=15)
    took = time.monotonic() - stopped_at
    assert took < 4.0, f"cold shutdown took {took:.1f}s"

    with pytest.raises(WorkerLostError):
        early.get(timeout=5)
    assert early.state == states.FAILURE
    assert not late.ready()
    assert f"sleep_late[{late.id}] succeeded" not in first.output()
    # The acks_late task and both reserved adds are back on the queue, nothing is held.
    assert queued(redis_client, key_prefix) == 3
    assert hold_sizes(redis_client, key_prefix) == 0

    second = worker_factory(concurrency=2, env=SLOW_RECOVERY)
    assert [result.get(timeout=10) for result in reserved] == [10, 11]
    assert late.get(timeout=10) == "late"
    second.wait_for_line(f"sleep_late[{late.id}] succeeded")


# --------------------------------------------------------------------------- bad input


def dead_lines(cli: CliRunner) -> list[str]:
    listing = cli("-A", BASIC, "dead", "list")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    return [line for line in listing.stdout.splitlines() if line.strip()]


def wait_for_dead_lines(cli: CliRunner, count: int) -> list[str]:
    """``dead list`` output once it has ``count`` lines (workers store letters async)."""
    seen: list[str] = []

    def listed() -> bool:
        seen[:] = dead_lines(cli)
        return len(seen) == count

    wait_until(listed, timeout=15, interval=0.2, message=lambda: f"dead list: {seen}")
    return list(seen)


WHEN = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")


def assert_recent(line: str) -> None:
    found = WHEN.search(line)
    assert found, f"no time in {line!r}"
    when = dt.datetime.fromisoformat(found.group(0))
    if when.tzinfo is None:  # shown in local time
        when = when.astimezone()
    age = abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds())
    assert age < 300, f"dead letter time {found.group(0)} is {age:.0f}s off"


def test_bad_messages_are_dead_lettered_listed_replayed_and_purged(
    app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    cli: CliRunner,
) -> None:
    worker = worker_factory(concurrency=1)

    unknown = app.send_task("no.such.task", [1, 2])
    with pytest.raises(NotRegistered):
        unknown.get(timeout=10)
    assert unknown.state == states.FAILURE
    assert "ERROR" in worker.wait_for_line("no.such.task")
    assert add.delay(1, 1).get(timeout=10) == 2

    mark = len(worker.lines)
    push_raw(redis_client, key_prefix, GARBAGE)
    assert "ERROR" in worker.wait_for_line("undecodable", start=mark)
    assert add.delay(2, 2).get(timeout=10) == 4

    mark = len(worker.lines)
    push_raw(redis_client, key_prefix, envelope_with(app, "id", ...))
    assert "ERROR" in worker.wait_for_line("malformed", start=mark)
    assert add.delay(3, 3).get(timeout=10) == 6
    assert worker.is_alive()

    # One line per letter: id, task, reason, when (oldest first).
    lines = wait_for_dead_lines(cli, 3)
    unknown_line, garbage_line, malformed_line = lines
    assert unknown.id in unknown_line and "no.such.task" in unknown_line
    assert "undecodable" in garbage_line
    assert "malformed" in malformed_line and "id" in malformed_line
    for line in lines:
        assert_recent(line)
    garbage_id = garbage_line.split()[0]

    # Replaying the garbage puts it back on the queue: it is dead-lettered again.
    mark = len(worker.lines)
    replayed = cli("-A", BASIC, "dead", "replay", garbage_id)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "Replayed 1" in replayed.stdout
    worker.wait_for_line("undecodable", start=mark)
    lines = wait_for_dead_lines(cli, 3)
    assert sum("undecodable" in line for line in lines) == 1
    assert garbage_line not in lines  # a new letter, dead-lettered again just now

    # Replayed to a worker whose app has the task, the unknown-task message runs.
    assert worker.stop() == 0
    worker_factory(app_module=EXTRA, concurrency=1)
    replayed = cli("-A", BASIC, "dead", "replay", unknown.id)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    wait_until(
        lambda: fresh(app, unknown.id).state == states.SUCCESS,
        timeout=15,
        message=lambda: f"replayed task did not run\n{worker_factory.report()}",
    )
    assert fresh(app, unknown.id).result == "ran with [1, 2] {}"
    assert len(dead_lines(cli)) == 2

    missing = cli("-A", BASIC, "dead", "replay", "no-such-letter")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stdout + missing.stderr

    purged = cli("-A", BASIC, "dead", "purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert "Purged 2" in purged.stdout
    assert dead_lines(cli) == []


@pytest.mark.parametrize(
    ("header", "value", "fragments"),
    [
        ("task", 42, ("task",)),
        ("expires", "not-a-date", ("expires", "not-a-date")),
        ("retries", "many", ("retries", "many")),
        ("timelimit", ["soon", "later"], ("timelimit", "soon")),
    ],
    ids=[
        "task-not-a-string",
        "expires-not-a-date",
        "retries-not-a-number",
        "timelimit-not-numbers",
    ],
)
def test_malformed_header_is_dead_lettered(
    app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    header: str,
    value: Any,
    fragments: tuple[str, ...],
) -> None:
    worker = worker_factory(concurrency=1)
    data = envelope_with(app, header, value)
    push_raw(redis_client, key_prefix, data)
    task_id = str(msgpack.unpackb(data)["h"]["id"])
    # Wait for an outcome of any kind, so a wrong one fails at once rather than at timeout.
    wait_until(
        lambda: app.broker.dead_letters() or fresh(app, task_id).ready() or not worker.is_alive(),
        timeout=10,
        message=lambda: f"the message had no outcome\n{worker.describe()}",
    )
    letters = wait_until(
        app.broker.dead_letters,
        timeout=1.5,
        message=lambda: (
            f"not dead-lettered (result: {fresh(app, task_id).state})\n{worker.describe()}"
        ),
    )
    assert len(letters) == 1
    reason = letters[0].reason
    assert any(fragment in reason for fragment in fragments), reason
    # The worker logs before it writes the letter, but its output reaches this test through a
    # pipe and a reader thread, possibly after the letter: wait for the line, don't peek.
    wait_until(
        lambda: any(reason in line and "ERROR" in line for line in worker.lines),
        timeout=10,
        message=worker.describe,
    )
    assert add.delay(2, 3).get(timeout=10) == 5
    assert worker.is_alive()
