"""The asyncio calls are typed like their sync twins: ``adelay`` takes the task's
parameters, and awaiting its result gives the task's return type. Runs mypy on a small
user module, as test_typing does for ``delay``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

USER_CODE = """
from typing import Any

from typing_extensions import assert_type

from minicelery import Celery
from minicelery.result import AsyncResult

app = Celery("proj", broker="memory://typing")


@app.task
def add(x: int, y: int) -> int:
    return x + y


async def main() -> None:
    result = await add.adelay(1, 2)
    assert_type(result, AsyncResult[int])
    assert_type(await result.aget(timeout=1), int)
    assert_type(await result, int)
    assert_type(await (await add.aapply_async((1, 2), countdown=1)), int)
    assert_type(await (await app.asend_task("add", (1, 2))).aget(), Any)
    await add.adelay("x", 2)  # line 24: one error
"""


@pytest.mark.timeout(120)
def test_mypy_types_adelay_and_aget_from_the_function(tmp_path: Path) -> None:
    module = tmp_path / "user_code_aio.py"
    module.write_text(USER_CODE)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(REPO_ROOT / ".mypy_cache"),
         str(module)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["24"], done.stdout
    assert 'Argument 1 to "adelay" of "Task" has incompatible type "str"' in errors[0]
