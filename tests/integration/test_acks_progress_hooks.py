"""Task semantics as Celery 5 defines them, observed end to end: real redis-server, real
prefork workers of ``tests.integration.apps.semantics``.

Acknowledgement when a child is SIGKILLed mid-task (early ack, ``acks_late``,
``reject_on_worker_lost``), progress states (``update_state``, ``get(on_message=...)``,
``iter_states()``), ``track_started``, ``ignore_result``, ``result_extended``, the request
context of bound tasks, ``Task`` hooks, worker-side signals and task loggers.

Tasks, hooks and signal receivers record into Redis lists (JSON entries) named with the test's
key prefix. Everything synchronises by polling (``wait_until``, ``wait_for_line``,
``get(timeout=...)``); ``time.sleep`` happens only inside tasks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from minicelery import Celery, states
from minicelery.exceptions import WorkerLostError
from minicelery.redislayer.keys import KeySchema
from minicelery.result import AsyncResult
from tests.helpers import (
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    children_consume,
    kill_pid,
    pointed_at,
    wait_until,
)
from tests.integration.apps import semantics
from tests.integration.apps.semantics import (
    chatty,
    context,
    extended,
    hooked_fail,
    hooked_ok,
    ignored,
    ignored_failure,
    ignored_failure_stored,
    plain,
    progress,
    record,
    signalled,
    signalled_fail,
    slow_early,
    slow_late,
    slow_late_requeued,
    spawn,
    tracked,
    untracked,
)

SEMANTICS = "tests.integration.apps.semantics"
QUEUE = "celery"
# Heartbeat-based recovery far slower than any test here: a message that runs again within
# seconds was given back by the worker on purpose, not recovered after a timeout.
SLOW_RECOVERY = {"MC_TEST_LOST_TIMEOUT": "30"}
LONG = 30.0  # how long a task that is to be killed would run


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def semantics_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    """The ``semantics`` app, in this process, pointed at the test's Redis and key prefix
    (the same settings its workers get from the environment)."""
    with pointed_at(semantics.app, redis_server, key_prefix) as pointed:
        yield pointed


# --------------------------------------------------------------------------- helpers


def start_worker(
    worker_factory: WorkerFactory,
    concurrency: int = 1,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> ManagedProcess:
    return worker_factory(
        app_module=SEMANTICS,
        concurrency=concurrency,
        env={**SLOW_RECOVERY, **(env or {})},
        **kwargs,
    )


def entries(client: redis.Redis, key: str) -> list[Any]:
    """The JSON entries of the Redis list ``key``, oldest first."""
    return [json.loads(item) for item in client.lrange(key, 0, -1)]


def wait_entries(
    client: redis.Redis, key: str, count: int, worker: ManagedProcess, timeout: float = 10.0
) -> list[Any]:
    """Wait until ``key`` has ``count`` entries (at least); return them."""
    found: list[Any] = []

    def enough() -> bool:
        found[:] = entries(client, key)
        return len(found) >= count

    wait_until(
        enough,
        timeout=timeout,
        message=lambda: f"{key}: wanted {count} entries, have {found}\n{worker.describe()}",
    )
    return found


def fresh(app: Celery, task_id: str) -> AsyncResult:
    """A result handle without a cached state (``get()`` caches ready states)."""
    return app.AsyncResult(task_id)


def current_step(app: Celery, task_id: str) -> int | None:
    """The ``current`` of the task's PROGRESS meta; None in any other state."""
    meta = app.backend.get_meta(task_id)
    return int(meta["result"]["current"]) if meta["status"] == "PROGRESS" else None


def pending_messages(client: redis.Redis, prefix: str) -> int:
    """Messages of the prefix that could still run: queued, held by a consumer, scheduled."""
    keys = KeySchema(prefix)
    queued = sum(int(client.llen(key)) for key in client.scan_iter(match=keys.queue_pattern))
    held = sum(int(client.hlen(key)) for key in client.scan_iter(match=keys.hold("*")))
    return queued + held + int(client.zcard(keys.scheduled))


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def by_hook(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["hook"]: record for record in records}


# --------------------------------------------------------------------------- acks


@pytest.mark.parametrize(
    ("task", "redelivered"),
    [(slow_early, False), (slow_late, False), (slow_late_requeued, True)],
    ids=["default", "acks_late", "acks_late+reject_on_worker_lost"],
)
def test_child_killed_mid_task(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    task: Any,
    redelivered: bool,
) -> None:
    """Celery: a task acknowledged early is lost with its process (FAILURE, WorkerLostError);
    so is an ``acks_late`` one, unless ``reject_on_worker_lost`` sends its message back."""
    worker = start_worker(worker_factory, concurrency=1)
    runs = f"{key_prefix}:runs"
    result = task.delay(runs, LONG)
    (victim,) = wait_entries(redis_client, runs, 1, worker)
    assert victim in worker.children(), f"the task ran in {victim}, not in a child of the worker"
    assert kill_pid(victim, signal.SIGKILL)

    if redelivered:
        assert result.get(timeout=15) == 2, "the requeued message ran again (2nd execution)"
        assert fresh(semantics_app, result.id).state == states.SUCCESS
        executions = entries(redis_client, runs)
        assert len(executions) == 2 and executions[1] != victim, executions
        assert executions[1] in worker.children()
    else:
        with pytest.raises(WorkerLostError):
            result.get(timeout=15)
        assert fresh(semantics_app, result.id).state == states.FAILURE
        # A marker on the same one-slot worker runs after anything the loss sent back.
        assert record.delay(runs, "marker").get(timeout=10) == 2
        wait_until(
            lambda: pending_messages(redis_client, key_prefix) == 0,
            message=lambda: f"messages left behind\n{worker.describe()}",
        )
        assert entries(redis_client, runs) == [victim, "marker"], "the lost task ran again"
    assert worker.is_alive()


@pytest.mark.parametrize(
    ("task", "runs_again"), [(slow_early, False), (slow_late, True)], ids=["default", "acks_late"]
)
def test_whole_worker_killed_mid_task(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    task: Any,
    runs_again: bool,
) -> None:
    """Celery: a message acknowledged as its task starts is gone with a worker killed whole
    (at most once); an ``acks_late`` one is delivered again to another worker."""
    quick_recovery = {"MC_TEST_LOST_TIMEOUT": "1"}
    first = start_worker(worker_factory, concurrency=1, env=quick_recovery)
    runs = f"{key_prefix}:runs"
    result = task.delay(runs, LONG)
    wait_entries(redis_client, runs, 1, first)
    if not runs_again and children_consume():
        # A consuming child's task is acknowledged by the main process once it has run a
        # few milliseconds (not by a command of its own as it starts): wait for that ack.
        wait_until(lambda: pending_messages(redis_client, key_prefix) == 0, timeout=5)
    children = first.children()
    first.kill()  # the main process: its children die with it
    first.wait_exit(timeout=10)
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children), timeout=10)
    second = start_worker(worker_factory, concurrency=1, env=quick_recovery)
    if runs_again:
        assert result.get(timeout=15) == 2, "the held message ran again (2nd execution)"
    # Recovered (after 1 s of silence) or not, nothing of the first worker is left.
    wait_until(
        lambda: pending_messages(redis_client, key_prefix) == 0,
        timeout=15,
        message=lambda: f"messages left behind\n{second.describe()}",
    )
    assert record.delay(runs, "marker").get(timeout=10) == (3 if runs_again else 2)
    assert (f"[{result.id}] received" in second.output()) is runs_again, second.describe()


# --------------------------------------------------------------------------- progress


def test_progress_state_and_info_visible_while_running(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, concurrency=1)
    result = progress.delay(5, 0.3)
    seen: dict[int, dict[str, Any]] = {}

    def two_steps_seen() -> bool:
        meta = semantics_app.backend.get_meta(result.id)  # state and info of one record
        state, info = meta["status"], meta["result"]
        assert state in (states.PENDING, "PROGRESS"), f"state {state} ({info}) before 2 steps"
        if state == "PROGRESS":
            seen[info["current"]] = info
        return len(seen) >= 2

    wait_until(two_steps_seen, timeout=10, message=lambda: f"progress seen: {seen}")
    assert all(info == {"current": n, "total": 5} for n, info in seen.items()), seen
    assert not fresh(semantics_app, result.id).ready()

    assert result.get(timeout=10) == 5
    done = fresh(semantics_app, result.id)
    assert (done.state, done.info) == (states.SUCCESS, 5)


def test_get_on_message_receives_progress_then_success(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, concurrency=1)
    result = progress.delay(4, 0.2)
    messages: list[dict[str, Any]] = []
    assert result.get(timeout=10, on_message=messages.append) == 4

    statuses = [m["status"] for m in messages]
    assert statuses[-1] == states.SUCCESS and messages[-1]["result"] == 4, messages
    assert set(statuses[:-1]) == {"PROGRESS"}, statuses
    metas = [m["result"] for m in messages[:-1]]
    assert len({meta["current"] for meta in metas}) >= 2, metas
    assert all(meta["total"] == 4 for meta in metas), metas
    assert all(m["task_id"] == result.id for m in messages), messages


def test_get_on_message_joined_mid_run_never_goes_back(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    """A client that starts waiting while the task runs sees its current state, then newer
    ones (Celery: the stored meta, then what is published after), never older ones."""
    start_worker(worker_factory, concurrency=1)
    result = progress.delay(6, 0.2)
    wait_until(lambda: (current_step(semantics_app, result.id) or 0) >= 2, timeout=10)
    messages: list[dict[str, Any]] = []
    assert result.get(timeout=10, on_message=messages.append) == 6

    currents = [m["result"]["current"] for m in messages if m["status"] == "PROGRESS"]
    assert currents and currents[0] >= 2, currents
    assert currents == sorted(currents), f"progress went back in time: {currents}"
    assert messages[-1]["status"] == states.SUCCESS


def test_every_waiter_receives_every_progress_state(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    """Two clients waiting on one task with ``on_message`` (a progress bar in two places)
    each receive every state from the moment they wait, as each subscriber does in Celery.
    (They wait from before the task is sent; only the steps after the first one a waiter
    saw are asserted, so this holds however late it actually started listening.)"""
    task_id = str(uuid.uuid4())
    received: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def wait(index: int) -> None:
        try:
            fresh(semantics_app, task_id).get(timeout=20, on_message=received[index].append)
        except BaseException as exc:
            errors.append(exc)

    waiters = [threading.Thread(target=wait, args=(i,), daemon=True) for i in received]
    for waiter in waiters:
        waiter.start()
    progress.apply_async((6, 0.1), task_id=task_id)
    start_worker(worker_factory, concurrency=1)
    for waiter in waiters:
        waiter.join(timeout=25)
    assert not errors, errors
    assert not any(waiter.is_alive() for waiter in waiters)

    steps = {
        index: [m["result"]["current"] for m in messages if m["status"] == "PROGRESS"]
        for index, messages in received.items()
    }
    assert all(messages[-1]["status"] == states.SUCCESS for messages in received.values())
    for seen in steps.values():
        assert len(seen) >= 2 and seen == list(range(seen[0], 6)), (
            f"each waiter should see every step from its first one on: {steps}"
        )


def test_iter_states_yields_progress_then_success(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, concurrency=1)
    result = progress.delay(4, 0.2)
    records = list(result.iter_states(timeout=10))

    assert [r["status"] for r in records][-1] == states.SUCCESS, records
    assert records[-1]["result"] == 4
    currents = [r["result"]["current"] for r in records if r["status"] == "PROGRESS"]
    assert len(set(currents)) >= 2, records
    assert currents == sorted(currents), currents


def test_iter_states_yields_each_state_while_the_task_runs(
    semantics_app: Celery, worker_factory: WorkerFactory, redis_client: redis.Redis
) -> None:
    """``iter_states()`` yields "each state record as the worker writes it": the first
    PROGRESS arrives while the task is still running, not after it ended."""
    start_worker(worker_factory, concurrency=1)
    result = progress.delay(5, 0.3)
    states_seen = result.iter_states(timeout=10)
    first = next(states_seen)
    ready_then = fresh(semantics_app, result.id).ready()
    rest = list(states_seen)

    assert first["status"] == "PROGRESS", first
    assert not ready_then, (
        f"the first state ({first}) was yielded only once the task had ended; "
        f"then came {[r['status'] for r in rest]}"
    )
    assert rest[-1]["status"] == states.SUCCESS


def test_custom_state_strings_pass_through(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, concurrency=1)
    custom = "Crunching-Numbers"
    result = progress.delay(3, 0.3, state=custom)
    wait_until(lambda: fresh(semantics_app, result.id).state == custom, timeout=10)
    handle = fresh(semantics_app, result.id)
    assert handle.info["total"] == 3 and not handle.ready()

    messages: list[dict[str, Any]] = []
    assert result.get(timeout=10, on_message=messages.append) == 3
    assert {m["status"] for m in messages} == {custom, states.SUCCESS}, messages


# --------------------------------------------------------------------------- result options


def test_track_started_task_option(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    name = unique("trk")
    worker = start_worker(worker_factory, concurrency=2, name=f"{name}@%h")
    quiet_key, tracked_key = f"{key_prefix}:untracked", f"{key_prefix}:tracked"
    quiet = untracked.delay(quiet_key, 1.5)
    loud = tracked.delay(tracked_key, 1.5)
    (quiet_pid,) = wait_entries(redis_client, quiet_key, 1, worker)
    (loud_pid,) = wait_entries(redis_client, tracked_key, 1, worker)

    wait_until(
        lambda: fresh(semantics_app, loud.id).state == states.STARTED,
        timeout=5,
        message=lambda: f"state {fresh(semantics_app, loud.id).state}\n{worker.describe()}",
    )
    started = fresh(semantics_app, loud.id)
    assert started.info["pid"] == loud_pid and started.info["pid"] != quiet_pid
    assert started.info["hostname"] == f"{name}@{socket.gethostname()}"
    assert fresh(semantics_app, quiet.id).state == states.PENDING, "tracked without the option"

    assert loud.get(timeout=10) == loud_pid
    assert quiet.get(timeout=10) == quiet_pid


def test_task_track_started_setting(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    worker = start_worker(worker_factory, env={"MC_TEST_TRACK_STARTED": "1"})
    key = f"{key_prefix}:untracked"
    result = untracked.delay(key, 1.5)
    (pid,) = wait_entries(redis_client, key, 1, worker)
    wait_until(
        lambda: fresh(semantics_app, result.id).state == states.STARTED,
        timeout=5,
        message=lambda: f"state {fresh(semantics_app, result.id).state}\n{worker.describe()}",
    )
    assert fresh(semantics_app, result.id).info["pid"] == pid
    assert result.get(timeout=10) == pid


def test_ignore_result_and_store_errors_even_if_ignored(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    worker = start_worker(worker_factory, concurrency=1)
    runs = f"{key_prefix}:runs"
    quiet = ignored.delay(runs)
    quiet_failure = ignored_failure.delay(runs)
    stored_failure = ignored_failure_stored.delay(runs)
    per_call = plain.apply_async((runs,), ignore_result=True)
    # The marker runs after the others on this one-slot worker, so their results (if any)
    # are stored by the time its own is.
    assert plain.delay(runs).get(timeout=10) == 7
    assert entries(redis_client, runs) == [
        "ignored ran",
        "ignored_failure ran",
        "ignored_failure_stored ran",
        "plain ran",
        "plain ran",
    ], worker.describe()

    assert fresh(semantics_app, quiet.id).state == states.PENDING
    assert fresh(semantics_app, quiet_failure.id).state == states.PENDING
    assert fresh(semantics_app, per_call.id).state == states.PENDING
    assert stored_failure.get(timeout=5) is None  # sent with ignore_result: nothing to wait for
    with pytest.raises(ValueError, match="ignored but stored"):
        fresh(semantics_app, stored_failure.id).get(timeout=5)
    assert fresh(semantics_app, stored_failure.id).state == states.FAILURE


def test_result_extended(semantics_app: Celery, worker_factory: WorkerFactory) -> None:
    name = unique("ext")
    start_worker(
        worker_factory,
        name=f"{name}@%h",
        env={"MC_TEST_RESULT_EXTENDED": "1"},
        extra_args=("-Q", f"{QUEUE},semantics-x"),
    )
    result = extended.apply_async((2, 3), {"retry": True, "flag": "on"}, queue="semantics-x")
    assert result.get(timeout=15) == 5

    done = fresh(semantics_app, result.id)
    assert done.state == states.SUCCESS
    assert done.name == extended.name
    assert done.args == [2, 3]
    assert done.kwargs == {"retry": True, "flag": "on"}
    assert done.worker == f"{name}@{socket.gethostname()}"
    assert done.retries == 1
    assert done.queue == "semantics-x"


# --------------------------------------------------------------------------- request context


def test_request_context_of_bound_task(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    name = unique("ctx")
    worker = start_worker(worker_factory, name=f"{name}@%h", extra_args=("-Q", f"{QUEUE},ctx-q"))
    hostname = f"{name}@{socket.gethostname()}"

    result = context.apply_async((1,), {"b": "two"})
    ctx = result.get(timeout=10)
    assert ctx["pid"] in worker.children()
    assert ctx["id"] == result.id
    assert (ctx["args"], ctx["kwargs"], ctx["retries"]) == ([1], {"b": "two"}, 0)
    assert ctx["hostname"] == hostname
    assert ctx["routing_key"] == QUEUE
    assert (ctx["root_id"], ctx["parent_id"]) == (result.id, None)
    assert ctx["correlation_id"] == result.id
    # Celery's origin is the sender's node name (``gen<pid>@<host>``).
    assert ctx["origin"].endswith(f"{os.getpid()}@{socket.gethostname()}"), ctx["origin"]
    assert ctx["is_eager"] is False

    retried = context.apply_async((3,), {"retry": True}, queue="ctx-q")
    ctx = retried.get(timeout=15)
    assert (ctx["id"], ctx["retries"]) == (retried.id, 1)
    assert (ctx["args"], ctx["kwargs"]) == ([3], {"retry": True})
    assert ctx["routing_key"] == "ctx-q"
    # (Celery's retry is sent from inside the task, so its parent_id becomes the task's own
    # id: send_task falls back to the running task's id. Not asserted either way.)
    assert ctx["root_id"] == retried.id


def test_root_and_parent_ids_of_tasks_sent_from_tasks(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, concurrency=2)
    top = spawn.delay(2)
    top_value = top.get(timeout=10)
    child_value = fresh(semantics_app, top_value["child"]).get(timeout=10)
    grandchild_value = fresh(semantics_app, child_value["child"]).get(timeout=10)

    top_ctx, child_ctx, grandchild_ctx = (
        top_value["context"],
        child_value["context"],
        grandchild_value["context"],
    )
    assert (top_ctx["root_id"], top_ctx["parent_id"]) == (top.id, None)
    assert child_ctx["id"] == top_value["child"]
    assert (child_ctx["root_id"], child_ctx["parent_id"]) == (top.id, top.id)
    assert grandchild_ctx["id"] == child_value["child"]
    assert (grandchild_ctx["root_id"], grandchild_ctx["parent_id"]) == (top.id, child_ctx["id"])
    assert grandchild_value["child"] is None


# --------------------------------------------------------------------------- hooks


def test_task_class_hooks_run_in_the_worker_with_celery_arguments(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    worker = start_worker(worker_factory, concurrency=1)
    ok_key, fail_key = f"{key_prefix}:hooks-ok", f"{key_prefix}:hooks-fail"
    ok = hooked_ok.delay(21, key=ok_key)
    fail = hooked_fail.delay(5, key=fail_key)
    assert ok.get(timeout=10) == 42
    with pytest.raises(ValueError, match="bad 5"):
        fail.get(timeout=10)
    children = worker.children()

    ok_records = wait_entries(redis_client, ok_key, 3, worker)
    assert [r["hook"] for r in ok_records] == ["before_start", "on_success", "after_return"]
    ok_hooks = by_hook(ok_records)
    common = {"task_id": ok.id, "args": [21], "kwargs": {"key": ok_key}}
    for record_ in ok_records:
        assert {k: record_[k] for k in common} == common, record_
        assert record_["pid"] in children and record_["pid"] != os.getpid()
    assert ok_hooks["on_success"]["retval"] == 42
    assert ok_hooks["after_return"]["status"] == states.SUCCESS
    assert ok_hooks["after_return"]["retval"] == 42
    assert ok_hooks["after_return"]["einfo_is_none"] is True

    fail_records = wait_entries(redis_client, fail_key, 3, worker)
    assert [r["hook"] for r in fail_records] == ["before_start", "on_failure", "after_return"]
    fail_hooks = by_hook(fail_records)
    common = {"task_id": fail.id, "args": [5], "kwargs": {"key": fail_key}}
    for record_ in fail_records:
        assert {k: record_[k] for k in common} == common, record_
        assert record_["pid"] in children
    on_failure = fail_hooks["on_failure"]
    assert on_failure["exc"] == ["ValueError", "bad 5"]
    assert on_failure["einfo"]["type"] == "ValueError"
    assert "bad 5" in on_failure["einfo"]["exception"]
    assert "Traceback" in on_failure["einfo"]["traceback"]
    assert "bad 5" in on_failure["einfo"]["traceback"]
    assert fail_hooks["after_return"]["status"] == states.FAILURE
    assert fail_hooks["after_return"]["retval"] == ["ValueError", "bad 5"]


def test_request_is_current_in_hooks_and_task_success(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    """Celery runs the hooks and the task_success/task_postrun signals while the task's
    request is still current: ``self.request.id`` in ``on_success``/``on_failure``/
    ``after_return``, and ``sender.request.id`` in a task_success receiver (the documented
    way to know which call succeeded), are the task's id."""
    worker = start_worker(worker_factory, concurrency=1)
    ok_key, fail_key = f"{key_prefix}:hooks-ok", f"{key_prefix}:hooks-fail"
    ok = hooked_ok.delay(1, key=ok_key)
    fail = hooked_fail.delay(2, key=fail_key)
    done = signalled.delay(10)
    assert ok.get(timeout=10) == 2
    with pytest.raises(ValueError):
        fail.get(timeout=10)
    assert done.get(timeout=10) == 11

    seen = {
        f"{r['hook']}({task_id[:8]})": (r["request_id"], task_id)
        for key, task_id in ((ok_key, ok.id), (fail_key, fail.id))
        for r in wait_entries(redis_client, key, 3, worker)
    }
    success_signal = [
        r
        for r in wait_entries(redis_client, semantics.signals_key(), 3, worker)
        if r["signal"] == "task_success"
    ]
    assert len(success_signal) == 1, success_signal
    seen[f"task_success({done.id[:8]})"] = (success_signal[0]["request_id"], done.id)
    wrong = {where: got for where, (got, want) in seen.items() if got != want}
    assert not wrong, f"task.request.id was not the task's id in: {wrong}"


# --------------------------------------------------------------------------- signals, logs


def test_worker_side_signals_fire_with_task_ids(
    semantics_app: Celery,
    worker_factory: WorkerFactory,
    redis_client: redis.Redis,
) -> None:
    worker = start_worker(worker_factory, concurrency=1)
    ok = signalled.delay(1)
    bad = signalled_fail.delay(2)
    assert ok.get(timeout=10) == 2
    with pytest.raises(KeyError, match="missing 2"):
        bad.get(timeout=10)
    children = worker.children()

    records = wait_entries(redis_client, semantics.signals_key(), 6, worker)
    assert all(r["pid"] in children for r in records), (records, children)
    ok_records = [r for r in records if r["task"] == signalled.name]
    bad_records = [r for r in records if r["task"] == signalled_fail.name]
    assert [r["signal"] for r in ok_records] == ["task_prerun", "task_success", "task_postrun"]
    assert [r["signal"] for r in bad_records] == ["task_prerun", "task_failure", "task_postrun"]

    prerun, success, postrun = ok_records
    assert (prerun["task_id"], prerun["args"]) == (ok.id, [1])
    assert success["result"] == 2
    assert (postrun["task_id"], postrun["state"], postrun["retval"]) == (ok.id, states.SUCCESS, 2)

    prerun, failure, postrun = bad_records
    assert (prerun["task_id"], prerun["args"]) == (bad.id, [2])
    assert (failure["task_id"], failure["args"]) == (bad.id, [2])
    assert failure["exception"][0] == "KeyError" and "missing 2" in failure["exception"][1]
    assert (postrun["task_id"], postrun["state"]) == (bad.id, states.FAILURE)
    assert "KeyError" in postrun["retval"]


def test_task_logger_lines_carry_task_name_and_id(
    semantics_app: Celery, worker_factory: WorkerFactory
) -> None:
    worker = start_worker(worker_factory, concurrency=1)
    result = chatty.delay("hello from the semantics tests")
    assert result.get(timeout=10) == "hello from the semantics tests"
    line = worker.wait_for_line(f"[{result.id}]: chatty says:")
    assert f"{chatty.name}[{result.id}]: chatty says: hello from the semantics tests" in line
    assert "INFO/ForkPoolWorker" in line, line
