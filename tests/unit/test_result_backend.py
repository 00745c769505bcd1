"""The Redis result backend on memory://, AsyncResult, and GroupResult save/restore."""

from __future__ import annotations

import builtins
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from minicelery import AsyncResult, Celery, GroupResult, states
from minicelery.backend.redis import RedisBackend
from minicelery.exceptions import TaskRevokedError, TimeoutError
from minicelery.redislayer.keys import KeySchema
from minicelery.redislayer.memory import memory_client
from minicelery.result import result_from_tuple
from minicelery.serialization import exception_to_dict
from minicelery.worker.executor import build_meta


class DomainError(Exception):
    """An importable exception a task might raise."""


def success(task_id: str, value: Any) -> dict[str, Any]:
    return build_meta(task_id, states.SUCCESS, value)


def failure(task_id: str, exc: BaseException, traceback: str = "Traceback: ...") -> dict[str, Any]:
    return build_meta(task_id, states.FAILURE, exception_to_dict(exc), traceback=traceback)


def store_later(
    backend: Any, task_id: str, metas: list[dict[str, Any]], delay: float
) -> threading.Thread:
    """Store ``metas`` one after another from another thread, ``delay`` seconds apart."""

    def run() -> None:
        for meta in metas:
            time.sleep(delay)  # simulates the worker taking time; the test waits on pub/sub
            backend.store(task_id, meta)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def backend(app: Celery) -> RedisBackend:
    instance = app.backend
    assert isinstance(instance, RedisBackend)
    return instance


# --------------------------------------------------------------------------- backend


def test_store_get_meta_forget(backend: RedisBackend) -> None:
    pending = backend.get_meta("t1")
    assert pending["status"] == states.PENDING
    assert pending["result"] is None
    assert pending["task_id"] == "t1"
    assert backend.store("t1", success("t1", {"answer": 42})) is True
    meta = backend.get_meta("t1")
    assert meta["status"] == states.SUCCESS
    assert meta["result"] == {"answer": 42}
    assert meta["task_id"] == "t1"
    assert meta["date_done"] is not None
    backend.forget("t1")
    assert backend.get_meta("t1")["status"] == states.PENDING


def test_results_expire_after_result_expires(make_app: Callable[..., Celery]) -> None:
    app = make_app(result_expires=120)
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    backend.store("t1", success("t1", 1))
    ttl = backend.client.pttl(backend.key("t1"))
    assert 100_000 < ttl <= 120_000


def test_results_never_expire_when_result_expires_is_none(make_app: Callable[..., Celery]) -> None:
    app = make_app(result_expires=None)
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    backend.store("t1", success("t1", 1))
    assert backend.client.pttl(backend.key("t1")) == -1


@pytest.fixture(params=["json", "msgpack"])
def serializer_backend(
    request: pytest.FixtureRequest, memory_url: str, key_prefix: str
) -> Iterator[RedisBackend]:
    instance = RedisBackend(memory_client(memory_url), key_prefix, request.param, 3600)
    yield instance
    instance.close()


def test_success_is_not_overwritten_by_a_later_failure(serializer_backend: RedisBackend) -> None:
    assert serializer_backend.store("t1", success("t1", "first"))
    assert serializer_backend.store("t1", failure("t1", ValueError("late"))) is False
    assert serializer_backend.store("t1", build_meta("t1", states.STARTED, None)) is False
    assert serializer_backend.store("t1", success("t1", "second")) is False
    meta = serializer_backend.get_meta("t1")
    assert meta["status"] == states.SUCCESS
    assert meta["result"] == "first"


def test_success_with_many_fields_is_not_overwritten(serializer_backend: RedisBackend) -> None:
    meta = success("t1", "first")
    meta.update({f"extra_{i}": i for i in range(12)})  # a record of 18 fields
    assert serializer_backend.store("t1", meta)
    assert serializer_backend.store("t1", failure("t1", ValueError("late"))) is False
    assert serializer_backend.get_meta("t1")["status"] == states.SUCCESS


def test_other_states_can_be_overwritten(serializer_backend: RedisBackend) -> None:
    assert serializer_backend.store("t1", build_meta("t1", states.STARTED, {"pid": 1}))
    assert serializer_backend.store("t1", failure("t1", ValueError("x")))
    assert serializer_backend.store("t1", success("t1", 5))
    assert serializer_backend.get_meta("t1")["result"] == 5


def test_success_not_overwritten_with_app_msgpack_result_serializer(
    make_app: Callable[..., Celery],
) -> None:
    app = make_app(result_serializer="msgpack")
    app.backend.store("t1", success("t1", b"\x00bytes"))
    app.backend.store("t1", failure("t1", ValueError("late")))
    result = app.AsyncResult("t1")
    assert result.state == states.SUCCESS
    assert result.get(timeout=1) == b"\x00bytes"


# --------------------------------------------------------------------------- AsyncResult.get


@pytest.fixture
def server_commands(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]]:
    """Every command the fake Redis servers execute during the test (from any connection,
    however the client sends it), as its list of fields."""
    from fakeredis._socket._base import BaseFakeSocket

    seen: list[list[bytes]] = []
    real = BaseFakeSocket._process_command

    def recording(self: Any, fields: list[bytes]) -> None:
        seen.append(list(fields))
        real(self, fields)

    monkeypatch.setattr(BaseFakeSocket, "_process_command", recording)
    return seen


def test_get_returns_when_another_thread_stores_the_result(
    app: Celery, backend: RedisBackend, server_commands: list[list[bytes]]
) -> None:
    result = app.AsyncResult("t1")
    started = time.monotonic()
    thread = store_later(
        backend, "t1", [build_meta("t1", states.STARTED, None), success("t1", 42)], 0.2
    )
    assert result.get(timeout=5) == 42
    elapsed = time.monotonic() - started
    thread.join(5)
    assert 0.35 <= elapsed < 1.5
    key = backend.key("t1").encode()
    reads = [c for c in server_commands if c[0].upper() in (b"GET", b"MGET") and key in c]
    blocking = [c for c in server_commands if c[0].upper() == b"XREAD"]
    # One read, then blocking reads that return with each stored record: a polling loop
    # would read again and again during the 0.4 s the result took.
    assert len(reads) <= 1, reads
    assert 1 <= len(blocking) <= 2, blocking


def test_get_reports_intermediate_states_to_on_message(app: Celery, backend: RedisBackend) -> None:
    seen: list[str] = []
    store_later(
        backend,
        "t1",
        [build_meta("t1", states.STARTED, None), success("t1", "ok")],
        0.05,
    )
    assert (
        app.AsyncResult("t1").get(timeout=5, on_message=lambda m: seen.append(m["status"])) == "ok"
    )
    assert seen == [states.STARTED, states.SUCCESS]


def test_get_of_an_already_stored_result_returns_at_once(
    app: Celery, backend: RedisBackend
) -> None:
    backend.store("t1", success("t1", [1, 2]))
    # No client waited when it was stored: no stream was written (it costs Redis ~4 KB).
    assert not backend.client.exists(backend.notify_key("t1"))
    started = time.monotonic()
    assert app.AsyncResult("t1").get(timeout=5) == [1, 2]
    assert time.monotonic() - started < 0.5


def test_get_times_out(app: Celery) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        app.AsyncResult("never").get(timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5
    assert isinstance(info.value, builtins.TimeoutError)


def test_builtin_timeout_error_catches_it(app: Celery) -> None:
    with pytest.raises(builtins.TimeoutError):
        app.AsyncResult("never").get(timeout=0.05)


def test_get_reraises_the_original_exception_with_its_traceback(
    app: Celery, backend: RedisBackend
) -> None:
    remote_tb = 'Traceback (most recent call last):\n  File "tasks.py", line 3\nDomainError: bad'
    backend.store("t1", failure("t1", DomainError("bad", 3), remote_tb))
    result = app.AsyncResult("t1")
    with pytest.raises(DomainError) as info:
        result.get(timeout=1)
    assert info.value.args == ("bad", 3)
    assert result.traceback == remote_tb
    assert any(remote_tb in note for note in getattr(info.value, "__notes__", []))


def test_get_with_propagate_false_returns_the_exception(app: Celery, backend: RedisBackend) -> None:
    backend.store("t1", failure("t1", KeyError("k")))
    value = app.AsyncResult("t1").get(timeout=1, propagate=False)
    assert isinstance(value, KeyError)
    assert value.args == ("k",)


def test_get_of_a_revoked_task_raises_task_revoked_error(
    app: Celery, backend: RedisBackend
) -> None:
    backend.store(
        "t1", build_meta("t1", states.REVOKED, exception_to_dict(TaskRevokedError("expired")))
    )
    with pytest.raises(TaskRevokedError, match="expired"):
        app.AsyncResult("t1").get(timeout=1)


# --------------------------------------------------------------------------- state properties


def test_pending_result_properties(app: Celery) -> None:
    result = app.AsyncResult("unknown")
    assert result.state == result.status == states.PENDING
    assert not result.ready() and not result.successful() and not result.failed()
    assert result.info is None and result.result is None
    assert result.date_done is None
    assert result.traceback is None


def test_started_result_properties(app: Celery, backend: RedisBackend) -> None:
    backend.store("t1", build_meta("t1", states.STARTED, {"pid": 7, "hostname": "w@h"}))
    result = app.AsyncResult("t1")
    assert result.state == states.STARTED
    assert not result.ready()
    assert result.info == {"pid": 7, "hostname": "w@h"}
    assert result.date_done is None


def test_success_result_properties(app: Celery, backend: RedisBackend) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    backend.store("t1", success("t1", {"v": 1}))
    result = app.AsyncResult("t1")
    assert result.state == states.SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == result.info == {"v": 1}
    done = result.date_done
    assert isinstance(done, dt.datetime)
    assert done.tzinfo is not None
    assert before - dt.timedelta(seconds=1) <= done <= dt.datetime.now(dt.timezone.utc)


def test_failure_result_properties(app: Celery, backend: RedisBackend) -> None:
    backend.store("t1", failure("t1", DomainError("no"), "tb text"))
    result = app.AsyncResult("t1")
    assert result.state == states.FAILURE
    assert result.ready() and result.failed() and not result.successful()
    assert isinstance(result.info, DomainError)
    assert result.traceback == "tb text"
    assert isinstance(result.date_done, dt.datetime)


def test_forget_through_the_result(app: Celery, backend: RedisBackend) -> None:
    backend.store("t1", success("t1", 1))
    result = app.AsyncResult("t1")
    assert result.state == states.SUCCESS
    result.forget()
    assert result.state == states.PENDING


def test_async_result_identity(app: Celery) -> None:
    one = app.AsyncResult("same")
    assert one == app.AsyncResult("same")
    assert one == "same"
    assert one != app.AsyncResult("other")
    assert hash(one) == hash(app.AsyncResult("same"))
    assert str(one) == "same"


# --------------------------------------------------------------------------- groups and tuples


def test_group_result_save_and_restore(app: Celery, backend: RedisBackend) -> None:
    group = app.GroupResult("g1", [app.AsyncResult("a"), app.AsyncResult("b")])
    assert group.save() is group
    restored = app.GroupResult.restore("g1")
    assert isinstance(restored, GroupResult)
    assert restored.id == "g1"
    assert [r.id for r in restored.results] == ["a", "b"]
    assert restored == group
    backend.store("a", success("a", 1))
    backend.store("b", success("b", 2))
    assert restored.get(timeout=2) == [1, 2]
    assert restored.ready() and restored.successful() and restored.completed_count() == 2


def test_group_result_restore_via_module_class_and_delete(app: Celery) -> None:
    GroupResult("g2", [AsyncResult("x", app=app)], app=app).save()
    restored = GroupResult.restore("g2", app=app)
    assert restored is not None and [r.id for r in restored] == ["x"]
    restored.delete()
    assert GroupResult.restore("g2", app=app) is None
    assert app.GroupResult.restore("never-saved") is None


def test_as_tuple_and_result_from_tuple(app: Celery) -> None:
    parent = AsyncResult("parent", app=app)
    child = AsyncResult("child", app=app, parent=parent)
    value = child.as_tuple()
    rebuilt = result_from_tuple(value, app)
    assert isinstance(rebuilt, AsyncResult)
    assert rebuilt.id == "child"
    assert isinstance(rebuilt.parent, AsyncResult)
    assert rebuilt.parent.id == "parent"
    assert rebuilt.parent.parent is None


def test_group_as_tuple_round_trip_through_json(app: Celery) -> None:
    import json

    group = GroupResult("g", [AsyncResult("a", app=app), AsyncResult("b", app=app)], app=app)
    value = json.loads(json.dumps(group.as_tuple()))
    rebuilt = result_from_tuple(value, app)
    assert isinstance(rebuilt, GroupResult)
    assert rebuilt.id == "g"
    assert [r.id for r in rebuilt.results] == ["a", "b"]


def test_group_join_timeout_is_for_the_whole_group(app: Celery, backend: RedisBackend) -> None:
    backend.store("a", success("a", 1))
    group = GroupResult("g", [app.AsyncResult("a"), app.AsyncResult("b")], app=app)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        group.get(timeout=0.2)
    assert time.monotonic() - started < 1.5


def _run_commands(backend: RedisBackend, commands: list[tuple[tuple[Any, ...], Any]]) -> list[Any]:
    for _, script in commands:
        backend.client.script_load(script.script)  # as a worker's lane does on NOSCRIPT
    return [backend.client.execute_command(*args) for args, _ in commands]


def test_a_worker_stores_its_results_and_acks_in_one_command(
    serializer_backend: RedisBackend, key_prefix: str
) -> None:
    client, hold = serializer_backend.client, KeySchema(key_prefix).hold("w1")
    client.hset(hold, mapping={"tag1": "m1", "tag2": "m2", "tag3": "m3"})
    client.set(KeySchema(key_prefix).result_waiting("t1"), 1)  # a client waits on t1
    assert serializer_backend.store("t0", success("t0", "kept"))
    records = [
        (task_id, serializer_backend.encode(success(task_id, task_id.upper())))
        for task_id in ("t0", "t1", "t2")
    ]
    commands = serializer_backend.store_commands(records, (hold, ["tag1", "tag2"]))
    assert len(commands) == 1
    assert _run_commands(serializer_backend, commands) == [2]  # t0's SUCCESS stays
    assert [serializer_backend.get_meta(t)["result"] for t in ("t0", "t1", "t2")] == [
        "kept",
        "T1",
        "T2",
    ]
    assert client.hkeys(hold) == [b"tag3"]
    # every waiter is told: the record is on the task's stream too; none waits on t2
    assert client.xlen(serializer_backend.notify_key("t1")) == 1
    assert not client.exists(serializer_backend.notify_key("t2"))


def test_acks_alone_and_results_alone(serializer_backend: RedisBackend, key_prefix: str) -> None:
    client, hold = serializer_backend.client, KeySchema(key_prefix).hold("w1")
    client.hset(hold, mapping={"tag1": "m1"})
    assert serializer_backend.store_commands([], (hold, [])) == []
    _run_commands(serializer_backend, serializer_backend.store_commands([], (hold, ["tag1"])))
    assert client.hlen(hold) == 0
    record = ("t1", serializer_backend.encode(success("t1", 1)))
    _run_commands(serializer_backend, serializer_backend.store_commands([record]))
    assert serializer_backend.get_meta("t1")["result"] == 1
