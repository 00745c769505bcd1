"""``minicelery dashboard`` against a real worker (``-E``) and redis-server: Flower's HTTP API
answered with Flower's JSON, its metrics, basic auth, the history kept in Redis across a
restart (and shared by two dashboards), and the command's refusal to serve unguarded."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from minicelery import Celery
from tests.helpers import ManagedProcess, WorkerFactory, free_port, minicelery_argv, wait_until
from tests.integration.conftest import CliRunner

APP = "tests.integration.apps.basic"
ADD = f"{APP}.add"
AUTH = ("admin", "s3cret")


@dataclass
class Site:
    """A running dashboard and how to call it."""

    process: ManagedProcess
    url: str
    auth: tuple[str, str] | None = AUTH

    def call(self, path: str, method: str = "GET", body: Any = None,
             auth: tuple[str, str] | bool | None = True) -> tuple[int, Any]:  # fmt: skip
        """``(status, JSON or text)`` of a request; ``auth=False`` sends no credentials."""
        data = None  # a dict is sent as JSON, a string as a form
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        request = urllib.request.Request(self.url + path, method=method, data=data)
        credentials = self.auth if auth is True else (auth or None)
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, path: str, method: str = "GET", body: Any = None) -> Any:
        status, answer = self.call(path, method, body)
        assert status == 200, (path, status, answer, self.process.describe())
        return answer


def start_dashboard(factory: WorkerFactory, *args: str, auth: bool = True) -> Site:
    """``minicelery -A <app> dashboard`` on a free loopback port, once it answers."""
    port = free_port()
    guard = ["--basic-auth", ":".join(AUTH)] if auth else ["--unauthenticated-loopback"]
    argv = minicelery_argv("-A", APP, "dashboard", "--port", str(port), *guard, *args)
    process = ManagedProcess(argv, env=factory.env(), label=f"dashboard :{port}")
    prefix = args[args.index("--url-prefix") + 1] if "--url-prefix" in args else ""
    site = Site(process, f"http://127.0.0.1:{port}{prefix}", AUTH if auth else None)

    def answers() -> bool:
        assert process.is_alive(), process.describe()
        try:
            return site.call("/healthcheck")[0] == 200
        except OSError:
            return False

    try:
        wait_until(answers, timeout=15, interval=0.05, message=process.describe)
    except BaseException:
        process.close()
        raise
    return site


@pytest.fixture
def dashboards(worker_factory: WorkerFactory) -> Iterator[Callable[..., Site]]:
    """``dashboards(*args, auth=True)`` starts one; all are stopped by their PIDs after."""
    started: list[Site] = []

    def start(*args: str, auth: bool = True) -> Site:
        site = start_dashboard(worker_factory, *args, auth=auth)
        started.append(site)
        return site

    yield start
    for site in started:
        site.process.close()
        print(site.process.describe())


def finished(site: Site, task_id: str, state: str = "SUCCESS") -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        status, info = site.call(f"/api/task/info/{task_id}")
        return info if status == 200 and info["state"] == state else None

    found = wait_until(seen, timeout=10, message=f"task {task_id} never {state} in the history")
    assert found is not None
    return found


def test_flowers_api_against_a_real_worker(
    worker_factory: WorkerFactory, dashboards: Callable[..., Site], app: Celery
) -> None:
    worker = worker_factory(APP, extra_args=["-E"], name="dash1@%h")
    site = dashboards()
    name = wait_until(lambda: next(iter(site.ok("/api/workers?status=1")), None), timeout=10)
    assert site.ok("/api/workers?status=1") == {name: True}
    assert name.startswith("dash1@")

    sent = site.ok(f"/api/task/async-apply/{ADD}", "POST", {"args": [2, 3]})
    assert set(sent) == {"task-id", "state"}
    result = site.ok(f"/api/task/result/{sent['task-id']}?timeout=10")
    assert result == {"task-id": sent["task-id"], "state": "SUCCESS", "result": 5}
    info = finished(site, sent["task-id"])
    assert info["name"] == ADD and info["worker"] == name and info["args"] == "(2, 3)"
    assert info["received"] <= info["started"] <= info["succeeded"]
    tasks = site.ok(f"/api/tasks?limit=10&state=SUCCESS&workername={name}&taskname={ADD}")
    assert sent["task-id"] in tasks and tasks[sent["task-id"]]["result"] == "5"
    from minicelery import chain
    from tests.integration.apps.basic import add

    last = chain(add.s(1, 1), add.s(2))()
    assert last.get(timeout=10) == 4
    parent = finished(site, last.parent.id)  # type: ignore[union-attr]
    wait_until(lambda: site.ok(f"/api/task/info/{parent['uuid']}")["children"] == [last.id], 10)
    assert finished(site, last.id)["parent_id"] == parent["uuid"]
    page = site.call(f"/task/{parent['uuid']}")[1]
    assert f'href="/task/{last.id}"' in page
    applied = site.ok(f"/api/task/apply/{ADD}", "POST", {"args": [20, 22]})
    assert applied["result"] == 42 and applied["state"] == "SUCCESS"
    by_name = site.ok(f"/api/task/send-task/{ADD}", "POST", {"args": [1, 1], "countdown": 60})
    assert by_name["state"] == "PENDING"

    workers = site.ok("/api/workers?refresh=1")
    assert workers[name]["stats"]["pool"]["max-concurrency"] == 2
    assert {q["name"] for q in workers[name]["active_queues"]} == {"celery"}
    grow = site.ok(f"/api/worker/pool/grow/{name}?n=1", "POST")
    assert grow == {"message": f"Growing '{name}' worker's pool by 1"}
    shrink = site.ok(f"/api/worker/pool/shrink/{name}?n=1", "POST")
    assert shrink == {"message": f"Shrinking '{name}' worker's pool by 1"}
    added = site.ok(f"/api/worker/queue/add-consumer/{name}?queue=extra", "POST")
    assert "extra" in added["message"]
    assert site.ok(f"/api/worker/queue/cancel-consumer/{name}?queue=extra", "POST")["message"]
    limited = site.ok(f"/api/task/rate-limit/{ADD}", "POST", f"workername={name}&ratelimit=100/s")
    assert limited == {"message": "new rate limit set successfully"}
    timed = site.ok(f"/api/task/timeout/{ADD}?workername={name}&soft=5&hard=10", "POST")
    assert timed == {"message": "time limits set successfully"}
    assert site.call("/api/worker/pool/grow/nobody@nowhere", "POST")[0] == 404
    assert site.call("/api/task/async-apply/no.such.task", "POST", {})[0] == 404
    assert site.call("/api/task/info/not-a-task")[0] == 404

    revoked = site.ok(f"/api/task/revoke/{by_name['task-id']}", "POST")
    assert revoked == {"message": f"Revoked '{by_name['task-id']}'"}
    later = site.ok(f"/api/task/async-apply/{ADD}", "POST", {"args": [1, 2], "countdown": 60})
    assert site.ok(f"/api/task/abort/{later['task-id']}", "POST")["message"].startswith("Abort")
    assert site.ok(f"/api/task/result/{later['task-id']}")["state"] == "ABORTED"
    status, refused = site.call(f"/api/worker/pool/autoscale/{name}?min=1&max=3", "POST")
    assert status == 403 and "autoscale is not enabled" in refused  # the worker's own error
    assert site.call(f"/api/worker/pool/autoscale/{name}?min=1", "POST")[0] == 400

    lost = site.ok("/api/task/send-task/no.such.task", "POST", {"args": []})["task-id"]
    wait_until(lambda: any(d.task == "no.such.task" for d in app.broker.dead_letters()), 10)
    assert site.ok("/api/dead/replay", "POST")["replayed"] == 1
    assert lost
    lengths = site.ok("/api/queues/length")
    assert {"name": "celery", "messages": 0} in lengths["active_queues"]

    metrics = site.call("/metrics")[1]
    assert f'flower_events_total{{task="{ADD}",type="task-succeeded",worker="{name}"}}' in metrics
    assert f'flower_worker_online{{worker="{name}"}} 1.0' in metrics
    assert "minicelery_scheduled_tasks 2.0" in metrics  # the countdown task waits in Redis
    for path in ("/api/workers", "/metrics", "/tasks"):
        assert site.call(path, auth=False)[0] == 401
        assert site.call(path, auth=("admin", "wrong"))[0] == 401
    assert site.ok(f"/api/worker/shutdown/{name}", "POST") == {"message": "Shutting down!"}
    assert worker.wait_exit(timeout=15) == 0


def test_history_survives_a_restart_and_two_dashboards_show_the_same(
    worker_factory: WorkerFactory, dashboards: Callable[..., Site], app: Celery
) -> None:
    from tests.integration.apps.basic import add  # ``app`` points it at the test's prefix

    worker_factory(APP, extra_args=["-E"])
    first = dashboards("--url-prefix", "/flower")
    outside = Site(first.process, first.url.removesuffix("/flower"))
    assert outside.call("/workers")[0] == 404 and first.call("/workers")[0] == 200
    before = [first.ok(f"/api/task/async-apply/{ADD}", "POST", {"args": [i, i]})["task-id"]
              for i in range(3)]  # fmt: skip
    for task_id in before:
        finished(first, task_id)
    first.process.stop()

    # While no dashboard runs, tasks go on; their events wait in the stream.
    during = [add.apply_async((i, 1)).id for i in range(3)]
    second, third = dashboards(), dashboards()
    for site in (second, third):
        for task_id in before + during:
            finished(site, task_id)
    assert second.ok("/api/tasks") == third.ok("/api/tasks")


def test_the_command_refuses_to_serve_unguarded(cli: CliRunner) -> None:
    done = cli("-A", APP, "dashboard", "--port", str(free_port()))
    assert done.returncode != 0
    assert "--basic-auth" in done.stderr and "Traceback" not in done.stderr
    done = cli("-A", APP, "dashboard", "--address", "0.0.0.0", "--unauthenticated-loopback")
    assert done.returncode != 0 and "loopback" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
