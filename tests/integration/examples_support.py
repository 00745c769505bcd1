"""Running the documented examples for real: a worker started through the CLI in the example's
folder, the example's own client code in a fresh interpreter, its Flask server on a free
loopback port and a headless Chromium driven by Selenium. Everything started here is stopped
by its PID, also when the test fails."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    descendant_pids,
    free_port,
    kill_pid,
    minicelery_argv,
    mode_args,
    pid_alive,
    proc_start_time,
    wait_until,
)

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

EXAMPLES = REPO_ROOT / "examples"
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium and chromium-driver (.ci/run installs them)
CHROMEDRIVER = "/usr/bin/chromedriver"
# No network here: nothing may phone home, update itself or sync; a fresh profile every time.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=900,700",
)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, reason: str) -> None:
    """Skip a test whose tools are missing on a developer's machine; fail it in CI."""
    if available:
        return
    if running_in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_modules(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    require(not missing, f"not installed: {', '.join(missing)} (pip install -e '.[test]')")


@contextlib.contextmanager
def example_env(server: RedisServer, db: int, **extra: str) -> Iterator[dict[str, str]]:
    """The environment an example runs in: both URLs on ``db`` of the test's redis-server
    (the examples use the default key prefix, so each test file keeps a database of its own),
    flushed before and after."""
    url = f"redis://{LOOPBACK}:{server.port}/{db}"
    with server.client(db=db) as client:
        client.flushdb()
    try:
        yield {
            **os.environ,
            "MINICELERY_BROKER_URL": url,
            "MINICELERY_RESULT_BACKEND": url,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    finally:
        server.ensure_running()
        with server.client(db=db) as client:
            client.flushdb()


def start_worker(folder: Path, app: str, env: Mapping[str, str], *args: str) -> ManagedProcess:
    """``minicelery -A <app> worker -l INFO -c 2 <args>`` in ``folder``, once it is ready."""
    worker = ManagedProcess(
        minicelery_argv("-A", app, "worker", "-l", "INFO", "-c", "2", *mode_args(), *args),
        cwd=folder,
        env=env,
        label=f"worker of {folder.name}",
    )
    try:
        worker.wait_ready(timeout=30)
    except BaseException:
        worker.close()
        raise
    return worker


def run_python(code: str, folder: Path, env: Mapping[str, str], timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter in ``folder`` (as a user's shell would); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# --------------------------------------------------------------------------- flask


def http_request(
    url: str, method: str = "GET", timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of an HTTP request (an error status is returned, not raised)."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _answers(url: str) -> bool:
    try:
        return http_request(url, timeout=2.0)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def start_flask(
    folder: Path, env: Mapping[str, str], app: str = "app"
) -> tuple[ManagedProcess, str]:
    """``flask --app <app> run`` in ``folder`` on a free loopback port, once ``/`` answers.

    Returns the server and its base URL. The port is found free just before the server binds
    it, so a server that lost that race is started again on another one.
    """
    for _attempt in range(3):
        port = free_port()
        server = ManagedProcess(
            [sys.executable, "-m", "flask", "--app", app, "run", "--host", LOOPBACK,
             "--port", str(port), "--no-reload", "--no-debugger"],
            cwd=folder,
            env=env,
            label=f"flask {folder.name}:{port}",
        )  # fmt: skip
        base_url = f"http://{LOOPBACK}:{port}"
        try:
            _wait_serving(server, base_url)
        except BaseException:
            server.close()
            raise
        if server.is_alive():
            return server, base_url
        server.close()
        if "already in use" not in server.output():
            break
    raise AssertionError(f"the Flask server did not start\n{server.describe()}")


def _wait_serving(server: ManagedProcess, base_url: str) -> None:
    """Until ``/`` answers 200 or the server exits."""
    wait_until(
        lambda: _answers(base_url + "/") or not server.is_alive(),
        timeout=30,
        interval=0.05,
        message=server.describe,
    )


# --------------------------------------------------------------------------- chromium


class BrowserProcesses:
    """The PIDs (and start times) of chromedriver and every Chromium process under it, so
    they can all be killed after ``quit()`` even if the driver could not clean up."""

    def __init__(self, driver_pid: int) -> None:
        self.driver_pid = driver_pid
        self.seen: dict[int, int] = {}
        self.record()

    def record(self) -> None:
        for pid in [self.driver_pid, *descendant_pids(self.driver_pid)]:
            start_time = proc_start_time(pid)
            if start_time is not None:
                self.seen.setdefault(pid, start_time)

    def alive(self) -> list[int]:
        return [pid for pid, start in self.seen.items() if pid_alive(pid, start)]

    def kill_all(self) -> None:
        for pid, start in self.seen.items():
            kill_pid(pid, signal.SIGKILL, start)
        wait_until(
            lambda: not self.alive(),
            timeout=10,
            message=lambda: f"browser processes survived SIGKILL: {self.alive()}",
        )


@contextlib.contextmanager
def headless_chromium(profile_dir: Path) -> Iterator[tuple[WebDriver, BrowserProcesses]]:
    """Debian's Chromium, headless, through Debian's chromedriver (Selenium never looks for or
    downloads a driver or a browser: both paths are given). Everything is killed at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    process: Any = service.process
    processes = BrowserProcesses(process.pid)
    try:
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(10)
        yield driver, processes
    finally:
        processes.record()
        try:
            driver.quit()
        finally:
            processes.kill_all()
