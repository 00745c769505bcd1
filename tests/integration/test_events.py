"""Monitoring events from real workers (``-E``) on a real redis-server: each task's events
arrive in order with Celery's fields (the client's task-sent first), workers announce
themselves, heartbeat and sign off, and ``minicelery events`` dumps them or shows them live."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import pty
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from minicelery import Celery
from minicelery.events import EventReceiver
from minicelery.worker.controller import expand_hostname
from tests.helpers import (
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    minicelery_argv,
    pointed_at,
    wait_until,
)
from tests.integration.apps.events_app import add, die, fail, flaky, lingering_retry, nap, progress
from tests.integration.apps.events_app import app as events_app

APP = "tests.integration.apps.events_app"
Events = list[dict[str, Any]]


class EventLog:
    """Everything a receiver has seen since the test began, read on demand (blocking reads,
    no sleeps)."""

    def __init__(self, receiver: EventReceiver) -> None:
        self.receiver = receiver
        self.seen: Events = []

    def until(self, predicate: Callable[[Events], Any], timeout: float = 20.0) -> Events:
        deadline = time.monotonic() + timeout
        while not predicate(self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(e["type"], e.get("uuid")) for e in self.seen]
                raise AssertionError(f"events not seen within {timeout}s; saw {kinds}")
            self.seen.extend(self.receiver.poll(min(left, 0.5)))
        return self.seen

    def of(self, uuid: str) -> Events:
        return [event for event in self.seen if event.get("uuid") == uuid]

    def types_of(self, uuid: str) -> list[str]:
        return [event["type"] for event in self.of(uuid)]

    def finished(self, uuid: str, last: str = "task-succeeded") -> Callable[[Events], bool]:
        return lambda seen: last in self.types_of(uuid)

    def from_worker(self, hostname: str, kind: str) -> Events:
        return [e for e in self.seen if e["type"] == kind and e["hostname"] == hostname]


@pytest.fixture
def eapp(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(events_app, redis_server, key_prefix) as pointed:
        yield pointed


@pytest.fixture
def log(eapp: Celery) -> EventLog:
    return EventLog(eapp.events.Receiver())


def start_worker(factory: WorkerFactory, name: str, *args: str, pool: str = "prefork") -> str:
    factory(app_module=APP, name=f"{name}@%h", pool=pool, extra_args=args)
    return expand_hostname(f"{name}@%h")


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_each_task_s_events_arrive_in_order_with_celery_s_fields(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory, pool: str
) -> None:
    hostname = start_worker(worker_factory, "ev1", "-E", pool=pool)
    log.until(lambda seen: log.from_worker(hostname, "worker-online"))

    ok, bad, retried = add.delay(2, 3), fail.delay("boom"), flaky.delay()
    assert ok.get(timeout=20) == 5 and retried.get(timeout=20) == "ok"
    log.until(log.finished(ok.id))
    log.until(log.finished(bad.id, "task-failed"))
    log.until(log.finished(retried.id))

    assert log.types_of(ok.id) == ["task-sent", "task-received", "task-started", "task-succeeded"]
    sent, received, started, succeeded = log.of(ok.id)
    assert sent["hostname"].startswith("gen") and sent["queue"] == "celery"
    assert (sent["name"], sent["args"], sent["kwargs"]) == (add.name, "(2, 3)", "{}")
    assert (received["name"], received["args"], received["retries"]) == (add.name, "(2, 3)", 0)
    assert received["root_id"] == ok.id and received["parent_id"] is None
    assert {received["hostname"], started["hostname"], succeeded["hostname"]} == {hostname}
    assert started["pid"] > 0 and (pool == "prefork") == (started["pid"] != received["pid"])
    assert succeeded["result"] == "5" and 0 <= succeeded["runtime"] < 5
    assert received["clock"] < started["clock"] < succeeded["clock"]
    assert sent["timestamp"] <= received["timestamp"] <= succeeded["timestamp"]

    assert log.types_of(bad.id) == ["task-sent", "task-received", "task-started", "task-failed"]
    failed = log.of(bad.id)[-1]
    assert failed["exception"] == "ValueError('boom')" and "ValueError: boom" in failed["traceback"]

    # The retry's task-sent comes from the pool process that retried it, before task-retried.
    assert log.types_of(retried.id) == [
        "task-sent", "task-received", "task-started", "task-sent", "task-retried",
        "task-received", "task-started", "task-succeeded",
    ]  # fmt: skip
    again = log.of(retried.id)
    assert again[4]["exception"] == "KeyError('not yet')" and "Retry" in again[4]["traceback"]
    assert (again[3]["retries"], again[5]["retries"], again[-1]["result"]) == (1, 1, "'ok'")


def test_a_retry_that_arrives_early_is_received_after_its_last_attempt_ends(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory
) -> None:
    """The retry reaches a free pool process while the attempt that sent it still runs: it
    waits for that attempt, and so does its task-received (logged, signalled, sent)."""
    worker = worker_factory(app_module=APP, name="ev4@%h", extra_args=["-E"], concurrency=2)
    result = lingering_retry.delay(0.5)
    assert result.get(timeout=20) == "ok"
    log.until(log.finished(result.id))

    assert log.types_of(result.id) == [
        "task-sent", "task-received", "task-started", "task-sent", "task-retried",
        "task-received", "task-started", "task-succeeded",
    ]  # fmt: skip
    retried, received = log.of(result.id)[4:6]
    assert received["timestamp"] >= retried["timestamp"]
    # The worker's log says the same, in the same order.
    marker = f"[{result.id}] "
    wait_until(lambda: f"{marker}succeeded" in worker.output(), timeout=10)
    words = [
        line.split(marker, 1)[1].split(" ", 1)[0]
        for line in worker.output().splitlines()
        if marker in line
    ]
    assert words == ["received", "retry:", "received", "succeeded"], words


def test_workers_announce_themselves_heartbeat_and_sign_off(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(app_module=APP, name="ev2@%h", extra_args=["-E"])
    hostname = expand_hostname("ev2@%h")
    add.delay(1, 1).get(timeout=20)
    log.until(lambda seen: len(log.from_worker(hostname, "worker-heartbeat")) >= 2)
    worker.stop()
    log.until(lambda seen: log.from_worker(hostname, "worker-offline"))

    mine = [e for e in log.seen if e["hostname"] == hostname]
    assert mine[0]["type"] == "worker-online" and mine[-1]["type"] == "worker-offline"
    online, beat = mine[0], log.from_worker(hostname, "worker-heartbeat")[-1]
    assert (online["sw_ident"], online["freq"]) == ("py-minicelery", 0.5)
    assert online["sw_ver"] and online["sw_sys"] == os.uname().sysname
    assert beat["processed"] == 1 and beat["active"] == 0 and len(beat["loadavg"]) == 3
    beats = [e["timestamp"] for e in log.from_worker(hostname, "worker-heartbeat")]
    assert all(0.2 < b - a < 3 for a, b in itertools.pairwise(beats))  # every 0.5 s, roughly
    assert [e["clock"] for e in mine] == sorted(e["clock"] for e in mine)

    state = eapp.events.State()
    for event in log.seen:
        state.event(event)
    assert not state.workers[hostname].alive
    assert state.workers[hostname].processed == 1


def test_revoked_terminated_and_expired_tasks(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, "ev3", "-E")
    later = add.apply_async((1, 2), countdown=1.0)
    eapp.control.revoke(later.id)
    running = nap.delay(30)
    log.until(lambda seen: "task-started" in log.types_of(running.id))
    eapp.control.revoke(running.id, terminate=True)
    expired = add.apply_async((3, 4), expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(1))
    log.until(log.finished(later.id, "task-revoked"))
    log.until(log.finished(running.id, "task-revoked"))
    log.until(log.finished(expired.id, "task-revoked"))

    assert log.types_of(later.id) == ["task-sent", "task-received", "task-revoked"]
    revoked = log.of(later.id)[-1]
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (False, None, False)
    assert log.types_of(running.id) == [
        "task-sent", "task-received", "task-started", "task-revoked"
    ]  # fmt: skip
    killed = log.of(running.id)[-1]
    assert (killed["terminated"], killed["signum"]) == (True, signal.SIGTERM)
    assert log.of(expired.id)[-1]["expired"] is True


def test_a_task_whose_process_dies_fails_with_worker_lost(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory
) -> None:
    start_worker(worker_factory, "ev8", "-E")
    lost = die.delay()
    log.until(log.finished(lost.id, "task-failed"))
    assert log.types_of(lost.id) == ["task-sent", "task-received", "task-started", "task-failed"]
    failed = log.of(lost.id)[-1]
    assert (
        failed["exception"].startswith("WorkerLostError(") and "exitcode 17" in failed["exception"]
    )
    assert add.delay(1, 1).get(timeout=20) == 2  # the replaced process runs the next task


def test_no_events_from_a_worker_without_E_and_custom_events_with_it(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory
) -> None:
    quiet = start_worker(worker_factory, "ev4")
    result = add.delay(1, 2)
    assert result.get(timeout=20) == 3
    log.until(lambda seen: seen, timeout=5)  # the client's own task-sent
    log.seen.extend(log.receiver.poll(1.0))
    assert [e["type"] for e in log.seen] == ["task-sent"]
    assert not [e for e in log.seen if e["hostname"] == quiet]

    loud = start_worker(worker_factory, "ev5", "-E", "-Q", "loud")
    steps = progress.apply_async((3,), queue="loud")
    log.until(log.finished(steps.id))
    progress_events = [e for e in log.of(steps.id) if e["type"] == "task-progress"]
    assert [(e["current"], e["total"]) for e in progress_events] == [(1, 3), (2, 3), (3, 3)]
    assert {e["hostname"] for e in progress_events} == {loud}


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_task_events_are_switched_on_and_off_at_runtime(
    eapp: Celery, log: EventLog, worker_factory: WorkerFactory, pool: str
) -> None:
    """``control.enable_events()`` on a worker started without -E: it comes online and sends
    task events with their fields (its pool processes were forked before); after
    ``disable_events()`` only its heartbeats go on."""
    hostname = start_worker(worker_factory, f"ev6{pool}", pool=pool)
    before = add.delay(1, 1)
    assert before.get(timeout=20) == 2

    replies = eapp.control.enable_events(destination=[hostname], reply=True, timeout=5)
    assert replies == [{hostname: {"ok": "task events enabled"}}]
    again = eapp.control.enable_events(destination=[hostname], reply=True, timeout=5)
    assert again == [{hostname: {"ok": "task events already enabled"}}]
    log.until(lambda seen: log.from_worker(hostname, "worker-online"))
    during = add.delay(2, 2)
    assert during.get(timeout=20) == 4
    log.until(log.finished(during.id))
    assert log.types_of(during.id) == [
        "task-sent", "task-received", "task-started", "task-succeeded",
    ]  # fmt: skip
    succeeded = log.of(during.id)[-1]
    assert succeeded["result"] == "4" and 0 <= succeeded["runtime"] < 5

    replies = eapp.control.disable_events(destination=[hostname], reply=True, timeout=5)
    assert replies == [{hostname: {"ok": "task events disabled"}}]
    after = add.delay(3, 3)
    assert after.get(timeout=20) == 6
    # Events leave a worker in order: two heartbeats later, any event of ``after`` is in.
    log.until(lambda seen: log.from_worker(hostname, "worker-heartbeat"))
    beats = len(log.from_worker(hostname, "worker-heartbeat"))
    log.until(lambda seen: len(log.from_worker(hostname, "worker-heartbeat")) >= beats + 2)
    assert log.types_of(after.id) == ["task-sent"]
    assert log.types_of(before.id) == ["task-sent"]


@pytest.mark.parametrize("args", [["--dump"], []], ids=["dump", "no-terminal"])
def test_events_dump_prints_each_event_as_it_comes(
    eapp: Celery, worker_factory: WorkerFactory, args: list[str]
) -> None:
    """``--dump``, and what the live view falls back to when its output is not a terminal."""
    dump = ManagedProcess(
        minicelery_argv("-A", APP, "events", *args), env=worker_factory.env(), label="dump"
    )
    try:
        dump.wait_for_line("starting capture", timeout=15)
        hostname = start_worker(worker_factory, "ev6", "-E")
        result = add.delay(20, 22)
        assert result.get(timeout=20) == 42
        line = dump.wait_for_line(f"task-succeeded: {add.name}[{result.id}]", timeout=20)
        assert line.startswith(f"{hostname} [") and "result=42" in line
        assert dump.wait_for_line(f"{hostname} [", timeout=5)
        kinds = [ln.split("] ", 1)[1].split(":", 1)[0] for ln in dump.lines if "] " in ln]
        assert kinds.index("worker-online") < kinds.index("task-sent") < kinds.index(
            "task-received"
        ) < kinds.index("task-started") < kinds.index("task-succeeded")  # fmt: skip
        assert f"task-sent: {add.name}[{result.id}] args=(20, 22)" in dump.output()
    finally:
        code = dump.stop()
    assert code == 0, dump.describe()


def test_the_live_view_draws_in_a_terminal_and_ends_on_ctrl_c(
    eapp: Celery, worker_factory: WorkerFactory
) -> None:
    hostname = start_worker(worker_factory, "ev7", "-E")
    screen = Terminal(minicelery_argv("-A", APP, "events", "-F", "0.2"), worker_factory.env())
    try:
        screen.wait_for("workers:")
        add.delay(1, 1).get(timeout=20)
        fail.delay().get(timeout=20, propagate=False)
        screen.wait_for(hostname)
        screen.wait_for("ONLINE")
        wait_until(lambda: _row(screen.text(), "SUCCESS") == ["SUCCESS", "1"], 20,
                   message=lambda: screen.text()[-3000:])  # fmt: skip
        wait_until(lambda: _row(screen.text(), "FAILURE") == ["FAILURE", "1"], 20)
        screen.proc.send_signal(signal.SIGINT)
        assert screen.proc.wait(10) == 0
    finally:
        screen.close()
    assert "\x1b[?1049h" in screen.text() and screen.text().rstrip().endswith("\x1b[?1049l")


def _row(text: str, state: str) -> list[str]:
    """The last drawn row of ``state`` in the tasks-per-state table (without its rate)."""
    rows = [line for line in text.split("\n") if line.startswith(f"{state} ")]
    return rows[-1].replace("\x1b[K", "").split()[:2] if rows else []


class Terminal:
    """A process on a pseudo-terminal, its output collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        env = {**env, "COLUMNS": "160", "LINES": "50"}
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        self.chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace").replace("\r", "")

    def wait_for(self, needle: str, timeout: float = 20) -> None:
        wait_until(lambda: needle in self.text(), timeout,
                   message=lambda: f"{needle!r} not drawn:\n{self.text()[-3000:]}")  # fmt: skip

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        os.close(self.master)
