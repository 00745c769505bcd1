"""The conformance runner's own pieces, without fetching anything: the import alias, the
JUnit reading and the per-file table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conformance import report
from conformance.reasons import reason_for

REPO = Path(__file__).resolve().parents[2]

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
 <testcase classname="t.integration.test_tasks.test_tasks" name="test_simple_call"/>
 <testcase classname="t.integration.test_tasks.test_tasks" name="test_fail">
  <failure message="boom"/></testcase>
 <testcase classname="t.integration.test_tasks.test_tasks" name="test_fail">
  <error message="teardown"/></testcase>
 <testcase classname="t.integration.test_beat" name="test_tick"><skipped message="x"/></testcase>
 <testcase classname="" name="t.integration.test_inspect"><error message="import"/></testcase>
</testsuite></testsuites>
"""


def test_junit_outcomes_per_test_and_per_file(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_inspect.py").write_text(
        "def test_a():\n    pass\n\nclass test_Inspect:\n    def test_b(self):\n        pass\n"
    )
    (suite / "test_backend.py").write_text("def test_azure():\n    pass\n")
    results = report.expand(report.read_junit(junit), suite, ["test_backend.py"])
    assert results == {
        "test_tasks.py::test_tasks::test_simple_call": "passed",
        "test_tasks.py::test_tasks::test_fail": "failed",  # a failure outranks its teardown error
        "test_beat.py::test_tick": "skipped",
        "test_inspect.py::test_a": "error",
        "test_inspect.py::test_Inspect::test_b": "error",
        "test_backend.py::test_azure": "n/a",
    }
    table = report.table({"minicelery": results, "celery": {}})
    assert "| test_inspect |  |  |  | 2 |  |" in table
    assert table.startswith("| file | minicelery pass | fail | skip | err | n/a | celery pass |")
    assert "| **total** | 1 | 1 | 1 | 2 | 1 |" in table


def test_the_alias_serves_minicelery_under_celerys_name() -> None:
    code = (
        "import conformance.alias, celery, celery.canvas, minicelery\n"
        "from celery.contrib.pytest import celery_app\n"
        "assert celery is minicelery and celery.canvas is minicelery.canvas\n"
        "assert minicelery.__spec__.name == 'minicelery'\n"
        "try:\n    import celery.backends.azureblockblob\n"
        "except ModuleNotFoundError:\n    print('missing stays missing')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "missing stays missing"


def test_every_failure_group_has_a_reason() -> None:
    assert "redis" in reason_for("test_redis_backend.py::test_x").lower()
    assert reason_for("test_new.py::test_unknown") == "not analysed yet"
