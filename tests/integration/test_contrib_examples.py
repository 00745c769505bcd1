"""The proj example's test suite (Celery's testing-guide patterns) passes as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJ = Path(__file__).resolve().parents[2] / "examples" / "proj"


def test_the_proj_examples_tests_pass() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "tests"],
        cwd=PROJ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
