"""``examples/progress``, run as its README says: a worker (``minicelery -A tasks worker``) and
the Flask app (``flask --app app run``) in the example's folder, on the test's redis-server.
The HTTP API is checked with plain requests, the page in a real headless Chromium: click the
button, watch the bar move through several progress values, then show the result."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ManagedProcess, RedisServer, wait_until
from tests.integration.examples_support import (
    CHROMEDRIVER,
    CHROMIUM,
    EXAMPLES,
    example_env,
    headless_chromium,
    http_request,
    require,
    require_modules,
    start_flask,
    start_worker,
)

FOLDER = EXAMPLES / "progress"
EXAMPLE_DB = 8  # the examples use the default key prefix: a database of this file's own
STEPS = 8
STEP_SECONDS = 0.3  # a task takes ~2.4 s: long enough to be seen moving, short for the suite
DONE = {"current": STEPS, "total": STEPS, "status": "Task completed!", "result": 42}


@dataclass
class Site:
    worker: ManagedProcess
    server: ManagedProcess
    url: str

    def status(self, location: str) -> dict[str, Any]:
        code, headers, body = http_request(self.url + location)
        assert code == 200, (code, body)
        assert headers["Content-Type"] == "application/json"
        report: dict[str, Any] = json.loads(body)
        return report


@pytest.fixture
def site(redis_server: RedisServer) -> Iterator[Site]:
    """The example's worker and Flask server, both stopped by their PIDs afterwards."""
    require_modules("flask")
    settings = {
        "FLASK_LONGTASK_TOTAL": str(STEPS),
        "FLASK_LONGTASK_STEP_SECONDS": str(STEP_SECONDS),
        "FLASK_STATUS_POLL_MS": "100",
    }
    with example_env(redis_server, EXAMPLE_DB, **settings) as env:
        worker = start_worker(FOLDER, "tasks", env)
        try:
            server, url = start_flask(FOLDER, env)
            try:
                yield Site(worker, server, url)
            finally:
                server.close()
                print(server.describe())
        finally:
            worker.close()
            print(worker.describe())


def test_api_reports_progress_then_the_result(site: Site) -> None:
    code, headers, body = http_request(site.url + "/longtask", method="POST")
    assert code == 202, body
    task_id = json.loads(body)["task_id"]
    location = headers["Location"]
    assert location.endswith(f"/status/{task_id}")

    reports: list[dict[str, Any]] = []

    def finished() -> bool:
        reports.append(site.status(location))
        return reports[-1]["state"] == "SUCCESS"

    wait_until(finished, timeout=30, interval=0.05, message=lambda: f"last report: {reports[-1]}")
    assert reports[-1] == {"state": "SUCCESS", **DONE}
    progress = [r for r in reports if r["state"] == "PROGRESS"]
    assert len({r["current"] for r in progress}) >= 2, reports
    for report in progress:
        assert set(report) == {"state", "current", "total", "status"}, report
        assert report["total"] == STEPS and 1 <= report["current"] <= STEPS, report
        assert report["status"].endswith("..."), report
    currents = [r["current"] for r in progress]
    assert currents == sorted(currents), f"progress went backwards: {currents}"
    assert all(r["state"] in ("PENDING", "PROGRESS", "SUCCESS") for r in reports), reports
    site.worker.wait_for_line(f"tasks.long_task[{task_id}] succeeded in")


def test_api_unknown_task_is_pending_and_page_is_self_contained(site: Site) -> None:
    assert site.status("/status/no-such-task") == {
        "state": "PENDING",
        "current": 0,
        "total": 1,
        "status": "Pending...",
    }
    code, _, body = http_request(site.url + "/")
    page = body.decode()
    assert code == 200
    assert 'id="start"' in page
    # Works offline: no script, style sheet or font from anywhere else.
    for external in ("<script src", "<link", "@import", "http://", "https://"):
        assert external not in page, external


# What the test reads from the page: the newest task's row (the page puts new rows first).
READ_ROW = """
const row = document.querySelector('#tasks .task');
if (!row) { return null; }
return {
  taskId: row.dataset.taskId || null,
  state: row.dataset.state,
  current: Number(row.dataset.current),
  total: Number(row.dataset.total),
  percent: row.querySelector('.percent').textContent,
  width: row.querySelector('.fill').style.width,
  status: row.querySelector('.status').textContent,
  result: row.querySelector('.result').hidden ? null : row.querySelector('.result').textContent,
};
"""


@pytest.mark.timeout(60)
def test_page_shows_progress_bars_moving_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    require_modules("selenium")
    require(
        Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(),
        f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)",
    )
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    with headless_chromium(tmp_path / "chromium-profile") as (browser, processes):
        browser.get(site.url + "/")
        assert browser.title == "Long tasks with progress"
        button = browser.find_element(By.ID, "start")
        assert button.text == "Start a long task"
        button.click()

        seen: list[dict[str, Any]] = []

        def done() -> bool:
            row = browser.execute_script(READ_ROW)
            if row is not None and (not seen or row != seen[-1]):
                seen.append(row)
            return row is not None and row["state"] in ("SUCCESS", "FAILURE")

        wait_until(done, timeout=30, interval=0.03, message=lambda: f"rows seen: {seen}")
        processes.record()
        assert processes.alive(), "the browser processes were not found"

    final = seen[-1]
    assert final["state"] == "SUCCESS", seen
    assert final["result"] == "Result: 42"
    assert (final["current"], final["total"]) == (STEPS, STEPS)
    assert (final["percent"], final["width"]) == ("100%", "100%")
    assert final["status"] == "Task completed!"

    progress = [row for row in seen if row["state"] == "PROGRESS"]
    values = sorted({row["current"] for row in progress})
    assert len(values) >= 2, f"fewer than two progress values shown: {seen}"
    assert all(0 < value < STEPS + 1 for value in values), values
    for row in progress:
        percent = int(100 * row["current"] / STEPS + 0.5)  # as JavaScript rounds
        assert (row["percent"], row["width"]) == (f"{percent}%", f"{percent}%"), row
    currents = [row["current"] for row in progress]
    assert currents == sorted(currents), f"the bar went backwards: {currents}"

    # The page followed a task the real worker ran, and left no browser process behind.
    assert final["taskId"]
    site.worker.wait_for_line(f"tasks.long_task[{final['taskId']}] succeeded in")
    assert not processes.alive()
    assert time.monotonic() - started < 20
