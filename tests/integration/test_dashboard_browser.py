"""The dashboard's pages in a real headless Chromium (Debian's, as the progress example's test
uses): a task sent after the page loaded appears and finishes on it without a reload, an
action asks for its argument and a confirmation and shows the worker's reply, and every page
renders. With ``MC_DASHBOARD_SCREENSHOTS=<folder>`` it also saves a screenshot of each page
there (how the README's pictures are made)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minicelery import Celery
from tests.helpers import WorkerFactory, wait_until
from tests.integration.examples_support import (
    CHROMEDRIVER,
    CHROMIUM,
    headless_chromium,
    require,
)
from tests.integration.test_dashboard import Site, dashboards  # noqa: F401 - a fixture

SCREENSHOTS = os.environ.get("MC_DASHBOARD_SCREENSHOTS")


def rows(driver: Any, selector: str) -> int:
    """How many elements match (asked in one script: the live part may be replaced at any
    moment, so no element is held across calls)."""
    return int(driver.execute_script(f"return document.querySelectorAll({selector!r}).length;"))


def text_of(driver: Any, selector: str) -> str:
    found = driver.execute_script(
        f"var e = document.querySelector({selector!r}); return e ? e.textContent : '';"
    )
    return str(found)


def click(driver: Any, selector: str) -> None:
    driver.execute_script(f"document.querySelector({selector!r}).click();")


def test_pages_update_live_and_actions_report_replies(
    worker_factory: WorkerFactory,
    dashboards: Callable[..., Site],  # noqa: F811
    app: Celery,
    tmp_path: Path,
) -> None:
    require(os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK),
            "Debian's chromium and chromium-driver are needed")  # fmt: skip
    from tests.integration.apps.basic import add, fail, sleep

    worker_factory(extra_args=["-E"], name="web1@%h")
    site = dashboards(auth=False)
    first = add.delay(1, 1)
    first.get(timeout=10)
    failed = fail.delay("for the screenshot")
    with headless_chromium(tmp_path / "profile") as (driver, _):
        driver.set_window_size(1280, 860)
        driver.get(site.url + "/tasks")
        wait_until(lambda: rows(driver, f'tr[data-task="{first.id}"]'), timeout=10)
        driver.execute_script("window.notReloaded = true;")

        later = sleep.delay(1.5, "done")  # sent after the page loaded
        wait_until(lambda: rows(driver, f'tr[data-task="{later.id}"] .STARTED'), timeout=10)
        wait_until(lambda: rows(driver, f'tr[data-task="{later.id}"] .SUCCESS'), timeout=10)
        assert driver.execute_script("return window.notReloaded === true;")

        driver.get(site.url + "/workers")
        wait_until(lambda: "online" in text_of(driver, 'tr[data-worker^="web1@"]'), timeout=10)
        click(driver, 'tr[data-worker^="web1@"] button[data-action*="/pool/grow/"]')
        driver.switch_to.alert.send_keys("1")  # how many processes
        driver.switch_to.alert.accept()
        driver.switch_to.alert.accept()  # the confirmation
        wait_until(lambda: "Growing" in text_of(driver, "#flash"), timeout=10)
        assert "by 1" in text_of(driver, "#flash")

        failed.get(timeout=10, propagate=False)
        driver.get(site.url + f"/task/{failed.id}")
        wait_until(lambda: text_of(driver, "#task-state") == "FAILURE", timeout=10)
        assert "ValueError" in text_of(driver, "#task-info")
        assert "started" in text_of(driver, "#timeline")

        for page, selector in (("/queues", "#queues"), ("/charts", "#rates")):
            driver.get(site.url + page)
            wait_until(lambda selector=selector: rows(driver, selector), timeout=10)
        if SCREENSHOTS:
            take_screenshots(driver, site, Path(SCREENSHOTS), failed.id)


def take_screenshots(driver: Any, site: Site, folder: Path, task_id: str) -> None:
    """A busier picture than the test needs: a few hundred tasks over some seconds, some
    failing, some waiting for a countdown, one dead letter; then each page."""
    from tests.integration.apps.basic import add, app, fail, mul, sleep

    folder.mkdir(parents=True, exist_ok=True)
    for round_ in range(12):  # each round lasts its longest sleep: a few seconds of rates
        results = [add.delay(i, round_) for i in range(20 * (1 + round_ % 4))]
        results += [mul.delay(i, 2) for i in range(15)]
        results += [fail.delay(f"bad input {round_}") for _ in range(round_ % 3)]
        results += [sleep.delay(seconds) for seconds in (0.02, 0.05, 0.1, 0.2, 0.4)]
        for result in results:
            result.get(timeout=20, propagate=False)
    for i in range(5):
        add.apply_async((i, i), countdown=600)
    app.send_task("proj.not_registered", args=(1,))
    sleep.delay(3)
    pages = {
        "workers": "/workers",
        "tasks": "/tasks",
        "task": f"/task/{task_id}",
        "queues": "/queues",
        "charts": "/charts",
    }
    for name, path in pages.items():
        driver.get(site.url + path)
        wait_until(lambda: rows(driver, "#live"), timeout=10)
        driver.save_screenshot(str(folder / f"{name}.png"))
