"""The dashboard without processes: records merged from events in Flower's shape, the history
in Redis (bounds, cursor, children), the collector resuming after a restart, the metrics'
names, Flower's task filters over HTTP, and who may reach it (basic auth, loopback only)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from minicelery import Celery
from minicelery.dashboard import check_exposure, parse_credentials
from minicelery.dashboard.collector import Collector
from minicelery.dashboard.history import History
from minicelery.dashboard.records import FLOWER_FIELDS, flower_dict, merge, to_record
from minicelery.dashboard.service import Dashboard
from minicelery.dashboard.web import create_app
from minicelery.events.event import encode_batch
from minicelery.events.state import Task
from minicelery.events.stream import event_stream
from minicelery.exceptions import ImproperlyConfigured

NAME = "proj.add"


def task_events(uuid: str, worker: str = "w1@host", name: str = NAME, **end: Any) -> list[dict]:
    now = time.time()
    base = {"uuid": uuid, "hostname": worker}
    return [
        {**base, "type": "task-received", "timestamp": now, "name": name, "args": "(2, 2)",
         "kwargs": "{}", "retries": 0, "clock": 1},
        {**base, "type": "task-started", "timestamp": now + 0.01, "pid": 42, "clock": 2},
        {**base, "type": "task-succeeded", "timestamp": now + 0.02, "result": "4",
         "runtime": 0.01, "clock": 3, **end},
    ]  # fmt: skip


def heartbeat(worker: str = "w1@host", kind: str = "worker-heartbeat") -> dict[str, Any]:
    return {"type": kind, "hostname": worker, "timestamp": time.time(), "freq": 2.0,
            "active": 1, "processed": 7, "loadavg": [0.1, 0.2, 0.3]}  # fmt: skip


@pytest.fixture
def dashboard(app: Celery) -> Iterator[Dashboard]:
    board = Dashboard(app, enable_events=False)  # threads not started: tests feed events
    yield board
    board.stop()


# -- records ----------------------------------------------------------------------------------
def test_a_record_has_every_flower_field_and_keeps_the_latest_state() -> None:
    task = Task("t1")
    received, started, succeeded = task_events("t1")
    for event in (received, succeeded, started):  # started arrives late: SUCCESS stays
        merge(task, event)
    shown = flower_dict(to_record(task), ["child"])
    assert list(shown) == list(FLOWER_FIELDS)
    assert shown["state"] == "SUCCESS"
    assert shown["worker"] == "w1@host"
    assert shown["result"] == "4" and shown["runtime"] == 0.01
    assert shown["received"] == received["timestamp"]
    assert shown["started"] == started["timestamp"]
    assert shown["clock"] == 3 and shown["children"] == ["child"]
    assert shown["failed"] is None and shown["retries"] == 0


# -- history ----------------------------------------------------------------------------------
def test_history_is_bounded_by_count_and_by_age(app: Celery) -> None:
    history = History.for_broker(app.broker, max_tasks=3, max_age=100)
    now = time.time()
    records = {f"t{i}": {"uuid": f"t{i}", "state": "SUCCESS"} for i in range(6)}
    seen = {"t0": now - 500, **{f"t{i}": now - 10 + i for i in range(1, 6)}}
    history.save(records, seen, {"t5": ["t4"]}, b"5-0")
    assert history.count() == 6
    assert history.trim(now) == 3  # t0 too old, then t1 and t2 beyond the count
    assert [r["uuid"] for r in history.newest()] == ["t5", "t4", "t3"]
    assert history.get("t0") is None and history.get("t3") is not None
    assert history.children("t5") == ["t4"]
    assert history.cursor() == b"5-0"


def test_first_seen_time_is_kept_when_a_task_is_written_again(app: Celery) -> None:
    history = History.for_broker(app.broker)
    history.save({"a": {"uuid": "a"}}, {"a": 1.0}, {}, None)
    history.save({"b": {"uuid": "b"}}, {"b": 2.0}, {}, None)
    history.save({"a": {"uuid": "a", "state": "SUCCESS"}}, {"a": 3.0}, {}, None)
    assert [r["uuid"] for r in history.newest()] == ["b", "a"]
    assert history.get("a") == {"uuid": "a", "state": "SUCCESS"}


# -- collector --------------------------------------------------------------------------------
def test_a_restarted_collector_resumes_from_the_cursor_and_completes_the_task(
    app: Celery,
) -> None:
    stream = event_stream(app.broker)
    received, started, succeeded = task_events("t1")
    first = Collector(app, History.for_broker(app.broker), Dashboard(app).metrics, None, False)
    receiver = first._open()
    stream.append([encode_batch([heartbeat(), received])])
    first.apply(receiver.poll(1.0), receiver.position)
    assert History.for_broker(app.broker).get("t1")["state"] == "RECEIVED"  # type: ignore[index]

    # Stopped here; meanwhile the task runs. A new collector starts at the stored cursor.
    stream.append([encode_batch([started]), encode_batch([succeeded])])
    second = Collector(app, History.for_broker(app.broker), Dashboard(app).metrics, None, False)
    receiver = second._open()
    events = receiver.poll(1.0)
    assert [e["type"] for e in events] == ["task-started", "task-succeeded"]
    second.apply(events, receiver.position)
    record = History.for_broker(app.broker).get("t1")
    assert record is not None
    shown = flower_dict(record)
    assert shown["state"] == "SUCCESS"
    assert shown["args"] == "(2, 2)"  # merged with what the first collector stored
    assert shown["received"] and shown["started"] and shown["succeeded"]


def test_metrics_have_flowers_names_and_labels(dashboard: Dashboard) -> None:
    dashboard.collector.apply([heartbeat(), *task_events("t1")], None)
    dashboard.collector.poll_queues()
    text = dashboard.metrics.exposition().decode()
    labels = f'task="{NAME}",type="task-succeeded",worker="w1@host"'
    assert f"flower_events_total{{{labels}}} 1.0" in text
    assert f'flower_task_runtime_seconds_count{{task="{NAME}",worker="w1@host"}} 1.0' in text
    assert f'flower_task_prefetch_time_seconds{{task="{NAME}",worker="w1@host"}}' in text
    assert f'flower_worker_prefetched_tasks{{task="{NAME}",worker="w1@host"}} 0.0' in text
    assert 'flower_worker_online{worker="w1@host"} 1.0' in text
    assert 'flower_worker_number_of_currently_executing_tasks{worker="w1@host"} 1.0' in text
    assert 'minicelery_queue_length{queue="celery"} 0.0' in text
    dashboard.collector.apply([heartbeat(kind="worker-offline")], None)
    assert 'flower_worker_online{worker="w1@host"} 0.0' in dashboard.metrics.exposition().decode()


# -- HTTP -------------------------------------------------------------------------------------
def test_api_tasks_filters_as_flower_does(dashboard: Dashboard) -> None:
    events = [*task_events("a", "w1@host"), *task_events("b", "w2@host", name="proj.mul")]
    events += task_events("c", "w1@host")[:2]  # still running
    dashboard.collector.apply(events, None)
    client = TestClient(create_app(dashboard))
    every = client.get("/api/tasks").json()
    assert set(every) == {"a", "b", "c"}
    assert every["a"]["worker"] == "w1@host" and every["a"]["state"] == "SUCCESS"
    assert set(client.get("/api/tasks", params={"state": "STARTED"}).json()) == {"c"}
    assert set(client.get("/api/tasks", params={"taskname": "proj.mul"}).json()) == {"b"}
    by_worker = client.get("/api/tasks", params={"workername": "w1@host", "state": "All"})
    assert set(by_worker.json()) == {"a", "c"}
    assert len(client.get("/api/tasks", params={"limit": 1}).json()) == 1
    assert client.get("/api/tasks", params={"received_start": "2000-01-01 00:00"}).json()
    assert not client.get("/api/tasks", params={"received_end": "2000-01-01 00:00"}).json()
    names = [
        t["name"] for t in client.get("/api/tasks", params={"sort_by": "-name"}).json().values()
    ]
    assert names == ["proj.mul", NAME, NAME]
    assert client.get("/api/task/info/b").json()["name"] == "proj.mul"
    assert client.get("/api/task/info/nope").status_code == 404
    assert client.get("/api/queues/length").json() == {
        "active_queues": [{"name": "celery", "messages": 0}]
    }
    page = client.get("/tasks", params={"state": "SUCCESS"})
    assert page.status_code == 200 and 'data-task="a"' in page.text
    assert 'data-task="c"' not in page.text


def test_basic_auth_guards_pages_api_and_metrics(dashboard: Dashboard) -> None:
    client = TestClient(create_app(dashboard, ["alice:secret", "bob:pw"], "/flower"))
    for path in ("/flower/workers", "/flower/api/workers", "/flower/metrics"):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"alice:nope").decode()
    assert (
        client.get("/flower/metrics", headers={"Authorization": f"Basic {wrong}"}).status_code
        == 401
    )
    assert client.get("/flower/metrics", auth=("bob", "pw")).status_code == 200
    assert client.get("/flower/healthcheck").status_code == 200  # open, for load balancers
    page = client.get("/flower/workers", auth=("alice", "secret"))
    assert page.status_code == 200 and 'href="/flower/tasks"' in page.text


def test_serving_without_auth_needs_the_switch_and_a_loopback_address() -> None:
    assert parse_credentials(["a:1,b:2", "c:3"]) == ["a:1", "b:2", "c:3"]
    with pytest.raises(ImproperlyConfigured):
        parse_credentials(["nopassword"])
    check_exposure("0.0.0.0", ["a:1"], False)
    check_exposure("127.0.0.1", [], True)
    check_exposure("::1", [], True)
    with pytest.raises(ImproperlyConfigured, match="basic-auth"):
        check_exposure("127.0.0.1", [], False)
    with pytest.raises(ImproperlyConfigured, match="loopback"):
        check_exposure("0.0.0.0", [], True)
