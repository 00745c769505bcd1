"""Tasks are typed from the wrapped function: a user's type checker catches a wrong call to
``delay()`` (what Celery cannot do). Runs mypy on a small user module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

USER_CODE = """
from minicelery import Celery

app = Celery("proj", broker="memory://typing")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=5)
def bound(self: object, x: int) -> str:
    return str(x)


total: int = add(1, 2)
add.delay(1, 2)
add.apply_async((1, 2), countdown=1)
bound.delay(3)
add.delay("x", None)  # line 21: two errors
bound.delay("nope")  # line 22: one error
"""


@pytest.mark.timeout(120)
def test_mypy_checks_task_calls_against_the_function(tmp_path: Path) -> None:
    module = tmp_path / "user_code.py"
    module.write_text(USER_CODE)
    # The project's own mypy cache (the one ``mypy minicelery`` fills, with the same options):
    # mypy checks each cached module against its source, so a warm cache changes nothing but
    # the time (seconds instead of tens of seconds of CPU on a busy machine).
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(REPO_ROOT / ".mypy_cache"),
         str(module)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["21", "21", "22"], done.stdout
    assert (
        'Argument 1 to "delay" of "Task" has incompatible type "str"; expected "int"' in (errors[0])
    )
