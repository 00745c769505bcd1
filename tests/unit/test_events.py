"""Monitoring events on ``memory://``: the dispatcher and receiver over the event stream,
the client's task-sent events, the worker's batching dispatcher, the State built from
events, and the text the ``events`` command shows."""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from minicelery import Celery, group, states
from minicelery.events import BatchingDispatcher, Event, EventReceiver, State
from minicelery.events.dumper import Dumper
from minicelery.events.event import decode_batch, encode, encode_batch
from minicelery.events.view import Monitor
from minicelery.events.worker import WorkerEvents, outcome_fields
from minicelery.exceptions import OperationalError, Retry
from minicelery.message import build_message
from tests.helpers import wait_until


def collect(receiver: EventReceiver, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    return list(receiver.itercapture(limit=count, timeout=timeout))


def test_events_arrive_in_order_signed_by_their_sender(app: Celery) -> None:
    seen: list[dict[str, Any]] = []
    receiver = app.events.Receiver(handlers={"*": seen.append})
    dispatcher = app.events.Dispatcher(hostname="w1@host")
    for kind in ("task-received", "task-started", "task-succeeded"):
        dispatcher.send(kind, uuid="id-1", runtime=0.5)

    receiver.capture(limit=3, timeout=5)

    assert [e["type"] for e in seen] == ["task-received", "task-started", "task-succeeded"]
    assert [e["clock"] for e in seen] == [1, 2, 3]
    for event in seen:
        assert event["hostname"] == "w1@host"
        assert event["uuid"] == "id-1"
        assert event["pid"] == os.getpid()
        assert isinstance(event["utcoffset"], int)
        assert event["timestamp"] <= event["local_received"] <= time.time()
    assert receiver.clock.value > 3  # the receiver's logical clock moved past the sender's


def test_a_receiver_starts_now_unless_asked_to_replay(app: Celery) -> None:
    dispatcher = app.events.Dispatcher()
    dispatcher.send("worker-online")
    late = app.events.Receiver()
    replay = app.events.Receiver(from_start=True)
    dispatcher.send("worker-offline")

    assert [e["type"] for e in collect(late, 1)] == ["worker-offline"]
    assert [e["type"] for e in collect(replay, 2)] == ["worker-online", "worker-offline"]
    assert dispatcher.hostname == f"gen{os.getpid()}@{os.uname().nodename}"


def test_handlers_by_type_fall_back_to_star(app: Celery) -> None:
    failed: list[str] = []
    other: list[str] = []
    receiver = app.events.Receiver(
        handlers={
            "task-failed": lambda e: failed.append(e["uuid"]),
            "*": lambda e: other.append(e["type"]),
        }
    )
    dispatcher = app.events.Dispatcher()
    dispatcher.send("task-failed", uuid="a", exception="ValueError()")
    dispatcher.send("task-succeeded", uuid="b")
    receiver.capture(limit=2, timeout=5)
    assert failed == ["a"]
    assert other == ["task-succeeded"]


def test_capture_times_out_and_a_limit_leaves_the_rest_unread(app: Celery) -> None:
    receiver = app.events.Receiver()
    started = time.monotonic()
    with pytest.raises(builtins.TimeoutError):
        receiver.capture(timeout=0.2)
    assert 0.15 <= time.monotonic() - started < 3

    dispatcher = app.events.Dispatcher()
    for number in range(5):
        dispatcher.send("custom-event", number=number)
    assert [e["number"] for e in collect(receiver, 2)] == [0, 1]
    assert [e["number"] for e in collect(receiver, 3)] == [2, 3, 4]


def test_should_stop_ends_a_capture(app: Celery) -> None:
    receiver = app.events.Receiver()
    receiver.handlers["*"] = lambda event: setattr(receiver, "should_stop", True)
    dispatcher = app.events.Dispatcher()
    dispatcher.send("worker-heartbeat")
    dispatcher.send("worker-heartbeat")
    assert len(list(receiver.itercapture(timeout=5))) == 1


def test_disabled_dispatchers_and_other_groups_send_nothing(app: Celery) -> None:
    receiver = app.events.Receiver()
    assert app.events.Dispatcher(enabled=False).send("task-sent", uuid="x") is None
    only_workers = app.events.Dispatcher(groups=["worker"])
    assert only_workers.send("task-received", uuid="x") is None
    assert only_workers.send("worker-heartbeat") is not None
    assert [e["type"] for e in receiver.poll(0.5)] == ["worker-heartbeat"]


def test_celery_event_helper_and_connection_stand_in(app: Celery) -> None:
    event = Event("task-sent", {"uuid": "x"}, name="t")
    assert event["type"] == "task-sent" and event["uuid"] == "x" and event["name"] == "t"
    assert abs(event["timestamp"] - time.time()) < 5
    with app.connection() as connection:
        receiver = app.events.Receiver(connection, handlers={})
        assert receiver.poll(0) == []


# -- task-sent ---------------------------------------------------------------------------
def test_task_sent_events_carry_celerys_fields_before_the_message(
    make_app: Callable[..., Celery],
) -> None:
    app = make_app(task_send_sent_event=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    receiver = app.events.Receiver()
    result = add.apply_async((2, 3), countdown=60, expires=120, queue="q1")
    (event,) = collect(receiver, 1)
    assert event["type"] == "task-sent"
    assert event["uuid"] == result.id
    assert event["name"] == add.name
    assert event["args"] == "(2, 3)"
    assert event["kwargs"] == "{}"
    assert event["retries"] == 0
    assert event["eta"] and event["expires"]
    assert (event["queue"], event["exchange"], event["routing_key"]) == ("q1", "", "q1")
    assert event["root_id"] == result.id
    assert event["parent_id"] is None
    assert event["hostname"].startswith("gen")

    group(add.s(i, i) for i in range(3)).apply_async()
    assert [e["args"] for e in collect(receiver, 3)] == ["(0, 0)", "(1, 1)", "(2, 2)"]


def test_no_events_unless_asked_for(app: Celery) -> None:
    @app.task
    def noop() -> None:
        return None

    receiver = app.events.Receiver(from_start=True)
    noop.delay()
    assert receiver.poll(0.1) == []


# -- the worker's dispatcher -------------------------------------------------------------
class FlakyStream:
    """A stream that refuses the first ``failures`` batches, then keeps what it is sent."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[list[bytes]] = []

    def append(self, payloads: Sequence[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("Redis is unreachable")
        self.batches.append(list(payloads))

    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for entry in batch for event in decode_batch(entry)]


def test_batching_dispatcher_sends_in_order_and_in_few_round_trips() -> None:
    stream = FlakyStream()
    dispatcher = BatchingDispatcher(hostname="w@h", stream=stream, window=0.05)  # type: ignore[arg-type]
    dispatcher.start()
    for number in range(100):
        dispatcher.send("task-received", uuid=str(number))
    wait_until(lambda: len(stream.events()) == 100, 5)
    dispatcher.stop()
    assert [int(event["uuid"]) for event in stream.events()] == list(range(100))
    assert len(stream.batches) <= 3  # round trips
    assert sum(map(len, stream.batches)) <= 3  # stream entries: a batch is one entry


def test_batching_dispatcher_keeps_events_through_an_outage() -> None:
    stream = FlakyStream(failures=2)
    dispatcher = BatchingDispatcher(hostname="w@h", stream=stream, window=0.001)  # type: ignore[arg-type]
    dispatcher.start()
    dispatcher.send("worker-online")
    dispatcher.send("task-received", uuid="a")
    wait_until(lambda: stream.batches, 5)
    dispatcher.send("task-started", uuid="a")
    dispatcher.stop()  # sends what is queued before returning
    types = [event["type"] for event in stream.events()]
    assert types == ["worker-online", "task-received", "task-started"]


def test_worker_events_heartbeat_with_stats(app: Celery) -> None:
    receiver = app.events.Receiver()
    calls = threading.Event()

    def stats() -> tuple[int, int]:
        calls.set()
        return 2, 7

    events = WorkerEvents(app, "w9@host", 0.05, stats)
    events.start()
    try:
        online, heartbeat = collect(receiver, 2)
    finally:
        events.stop()
    rest = receiver.poll(0.5)
    offline = [e for e in rest if e["type"] == "worker-offline"]
    assert rest[-1]["type"] == "worker-offline"  # the last event of a worker
    assert online["type"] == "worker-online" and heartbeat["type"] == "worker-heartbeat"
    assert (heartbeat["active"], heartbeat["processed"], heartbeat["freq"]) == (2, 7, 0.05)
    assert online["sw_ident"] == "py-minicelery" and online["sw_sys"] == os.uname().sysname
    assert len(heartbeat["loadavg"]) == 3
    assert offline and offline[0]["hostname"] == "w9@host"


def test_worker_task_events_from_a_message(app: Celery) -> None:
    from minicelery.message import MessageOptions

    message = build_message("t.add", (1, 2), {"z": 3}, MessageOptions("id-9", "celery", retries=1))
    receiver = app.events.Receiver()
    events = WorkerEvents(app, "w@h", 10, lambda: (0, 0))
    events.received(message)
    events.started(message, 4242)
    info = outcome_fields(states.SUCCESS, 0.25, {"a": [1, 2]}, None, None)
    events.finished(message, states.SUCCESS, info)
    events.finished(message, states.REJECTED, None, requeue=True)
    events.revoked(message, 15)
    events.dispatcher.flush()
    received, started, succeeded, rejected, revoked = collect(receiver, 5)
    assert received["type"] == "task-received"
    assert (received["name"], received["args"], received["kwargs"]) == (
        "t.add",
        "(1, 2)",
        "{'z': 3}",
    )
    assert received["retries"] == 1 and received["root_id"] == "id-9"
    assert (started["type"], started["pid"]) == ("task-started", 4242)
    assert succeeded["result"] == "{'a': [1, 2]}" and succeeded["runtime"] == 0.25
    assert (rejected["type"], rejected["requeue"]) == ("task-rejected", True)
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (True, 15, False)


def test_outcome_fields_are_celerys() -> None:
    error = ValueError("boom")
    failed = outcome_fields(states.FAILURE, 0.1, None, error, "Traceback ...")
    assert failed == {
        "exception": "ValueError('boom')",
        "traceback": "Traceback ...",
        "runtime": 0.1,
    }
    retried = outcome_fields(states.RETRY, 0.1, None, Retry(exc=KeyError("k")), "tb")
    assert retried is not None and retried["exception"] == "KeyError('k')"
    assert outcome_fields(states.REVOKED, 0, None, Exception("expired"), None) == {"expired": True}
    big = outcome_fields(states.SUCCESS, 0, "x" * 100_000, None, None)
    assert big is not None and len(big["result"]) <= 1024
    assert outcome_fields(states.IGNORED, 0, None, None, None) is None


def test_custom_events_from_a_task(app: Celery) -> None:
    @app.task(bind=True)
    def progress(self: Any) -> None:
        self.send_event("task-progress", current=5, total=10)

    receiver = app.events.Receiver()
    progress.apply()
    (event,) = collect(receiver, 1)
    assert (event["type"], event["current"], event["total"]) == ("task-progress", 5, 10)


def test_batches_mix_events_and_relayed_ones_and_bad_entries_are_skipped(app: Celery) -> None:
    relayed = encode({"type": "task-progress", "uuid": "u", "current": 1})
    batch = encode_batch([{"type": "task-started", "uuid": "u"}, relayed, {"type": "x", "v": {1}}])
    assert [e["type"] for e in decode_batch(batch)] == ["task-started", "task-progress", "x"]
    assert decode_batch(batch)[2]["v"] == "{1}"  # what msgpack cannot hold goes as its repr

    receiver = app.events.Receiver()
    stream = receiver.stream
    stream.append([b"garbage", encode_batch([{"type": "after"}]), encode_batch([{"no": "type"}])])
    assert [e["type"] for e in receiver.poll(1)] == ["after"]


def test_a_pool_process_relays_its_events_into_the_worker_s_queue(app: Celery) -> None:
    stream = FlakyStream()
    worker = BatchingDispatcher(hostname="w@h", stream=stream)  # type: ignore[arg-type]
    app.events.relay_to(worker.relay)
    try:
        worker.send("task-started", uuid="u")
        app.events.client_dispatcher("w@h").send("task-progress", uuid="u", current=1)
        worker.send("task-succeeded", uuid="u")
        worker.flush()
    finally:
        app.events.relay_to(None)
    assert [e["type"] for e in stream.events()] == [
        "task-started",
        "task-progress",
        "task-succeeded",
    ]


# -- state, dump and view ----------------------------------------------------------------
def lifecycle(uuid: str, *kinds: str, **fields: Any) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {"type": kind, "uuid": uuid, "hostname": "w1@h", "timestamp": now + i, "clock": i, **fields}
        for i, kind in enumerate(kinds)
    ]


def test_state_follows_tasks_and_workers() -> None:
    state = State()
    state.event({"type": "worker-online", "hostname": "w1@h", "timestamp": time.time(), "freq": 2})
    for event in lifecycle("a", "task-received", "task-started", "task-succeeded", name="t.add"):
        state.event(event)
    # A late task-sent from the client merges its fields but does not undo SUCCESS.
    state.event({**lifecycle("a", "task-sent")[0], "hostname": "gen1@h", "queue": "q1"})
    for event in lifecycle("b", "task-received", "task-started", "task-retried", "task-received"):
        state.event(event)

    task = state.tasks["a"]
    assert (task.state, task.name, task.worker, task.client) == (
        "SUCCESS",
        "t.add",
        "w1@h",
        "gen1@h",
    )
    assert task.queue == "q1" and task.ready and task.succeeded and task.result is None
    assert state.tasks["b"].state == states.RECEIVED  # a retried task runs again
    assert state.tasks_by_state() == {"SUCCESS": 1, "RECEIVED": 1}
    assert state.event_count == 9 and state.task_count == 2
    worker = state.workers["w1@h"]
    assert worker.alive
    state.event({"type": "worker-offline", "hostname": "w1@h", "timestamp": time.time()})
    assert not worker.alive and state.alive_workers() == []


def test_state_forgets_the_oldest_tasks_beyond_its_limit() -> None:
    state = State(max_tasks_in_memory=3)
    for number in range(5):
        state.event(lifecycle(str(number), "task-received")[0])
    assert list(state.tasks) == ["2", "3", "4"]


def test_dump_lines() -> None:
    lines: list[str] = []
    dumper = Dumper(lines.append)
    stamp = 1_700_000_000.5
    dumper.on_event(
        {
            "type": "task-received",
            "uuid": "u1",
            "name": "t.add",
            "args": "(1, 2)",
            "kwargs": "{}",
            "hostname": "w1@h",
            "timestamp": stamp,
            "pid": 3,
            "clock": 1,
        }
    )
    dumper.on_event(
        {
            "type": "task-succeeded",
            "uuid": "u1",
            "result": "3",
            "runtime": 0.1,
            "hostname": "w1@h",
            "timestamp": stamp,
            "pid": 3,
            "clock": 2,
        }
    )
    dumper.on_event(
        {
            "type": "worker-heartbeat",
            "hostname": "w1@h",
            "timestamp": stamp,
            "active": 0,
            "processed": 1,
        }
    )
    assert lines == [
        "w1@h [2023-11-14 22:13:20.500000] task-received: t.add[u1] args=(1, 2), kwargs={}",
        "w1@h [2023-11-14 22:13:20.500000] task-succeeded: t.add[u1] result=3, runtime=0.1",
        "w1@h [2023-11-14 22:13:20.500000] worker-heartbeat: active=0, processed=1",
    ]
    as_json: list[str] = []
    Dumper(as_json.append, as_json=True).on_event({"type": "x", "timestamp": 1.0})
    assert as_json == ['{"type": "x", "timestamp": 1.0}']


def test_live_view_shows_workers_counts_and_rates() -> None:
    now = [100.0]
    monitor = Monitor(window=5.0, clock=lambda: now[0])
    monitor.on_event(
        {
            "type": "worker-heartbeat",
            "hostname": "w1@h",
            "timestamp": time.time(),
            "freq": 2.0,
            "active": 1,
            "processed": 9,
            "loadavg": [0.5, 0.25, 0.0],
        }
    )
    for number in range(10):
        for event in lifecycle(f"t{number}", "task-received", "task-succeeded", name="t.add"):
            monitor.on_event({**event, "result": "3", "runtime": 0.01})
    now[0] += 5.0
    text = "\n".join(monitor.render(width=160, height=40))
    assert "workers: 1 online" in text
    assert "w1@h" in text and "ONLINE" in text and "0.50 0.25 0.00" in text
    success_row = next(line for line in text.splitlines() if line.startswith("SUCCESS"))
    assert success_row.split() == ["SUCCESS", "10", "2.0"]  # 10 in the last 5 seconds
    assert "t9" in text and "3 in 0.010s" in text
    assert all(len(line) <= 40 for line in monitor.render(width=40, height=10))
    assert len(monitor.render(width=40, height=10)) <= 10
