"""A CI-sized slice of the conformance run: a few of Celery 5.7's own integration tests,
from its source distribution, pass on minicelery through the ``celery`` import alias.

Skipped when the source distribution cannot be fetched (no network); with ``CI`` set and
pip able to fetch it, it runs. The whole suite is ``python -m conformance.celery_suite``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.fetch import FetchError, default_cache, suite_dir
from tests.conftest import _running_in_ci
from tests.helpers import RedisServer, children_consume

REPO = Path(__file__).resolve().parents[2]
FILES = ["test_tasks.py", "test_inspect.py"]
SELECTION = "test_simple_call or test_basic_task or test_wrong_arguments or test_ping"


@pytest.mark.timeout(240)  # a first run also downloads and unpacks the sdist
def test_a_slice_of_celerys_integration_suite_passes(redis_server: RedisServer) -> None:
    # redis_server: the suite's own check for a usable redis-server (fails in CI without
    # one); the runner starts a private one the same way.
    if importlib.util.find_spec("pydantic") is None:
        reason = "Celery's suite imports pydantic: install the test extra"
        if _running_in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        suite_dir(default_cache())
    except FetchError as exc:
        pytest.skip(f"Celery's sdist could not be fetched (no network?): {exc}")
    mode = [] if children_consume() else ["--classic"]
    done = subprocess.run(
        [sys.executable, "-m", "conformance.celery_suite", "--quiet", "--timeout", "30",
         "-k", SELECTION, *mode, *FILES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| **total** | 4 |" in done.stdout, done.stdout
