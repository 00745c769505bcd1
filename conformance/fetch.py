"""Fetch Celery's source distribution with pip and unpack its test suite: nothing of
Celery's is kept in this repository."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

CELERY_VERSION = "5.7.0"
PYTEST_INI = """\
[pytest]
# Celery's own settings for its suite: its test classes are lower-case ``test_*``.
python_classes = test_* Test*
xfail_strict = true
markers =
    flaky
    timeout
    amqp
    celery(**overrides): override celery configuration for a test case
"""


class FetchError(Exception):
    """The source distribution could not be downloaded or unpacked (no network, no pip)."""


def default_cache() -> Path:
    configured = os.environ.get("MINICELERY_CONFORMANCE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minicelery-conformance"


def download(cache: Path, version: str = CELERY_VERSION, timeout: float = 300) -> Path:
    """The ``celery-<version>.tar.gz`` sdist, downloaded with pip into ``cache`` once."""
    archive = cache / f"celery-{version}.tar.gz"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "-q",
        f"celery=={version}",
        "-d",
        str(cache),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"pip download of celery=={version} failed: {exc}") from exc
    if done.returncode != 0 or not archive.exists():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"pip download of celery=={version} failed: {last[0]}")
    return archive


def suite_dir(cache: Path, version: str = CELERY_VERSION) -> Path:
    """A directory holding Celery's ``t/`` package (integration tests and their helpers) and a
    ``pytest.ini`` with the suite's settings; fetched and unpacked on first use."""
    root = cache / f"celery-{version}-suite"
    if (root / "t" / "integration" / "conftest.py").exists():
        return root
    archive = download(cache, version)
    prefix = f"celery-{version}/t/"
    try:
        with tarfile.open(archive) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(prefix)
                and "/t/unit/" not in m.name
                and "/t/smoke/" not in m.name
            ]
            for member in members:
                member.name = member.name[len(f"celery-{version}/") :]
            tar.extractall(root, members=members, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise FetchError(f"cannot unpack {archive.name}: {exc}") from exc
    (root / "pytest.ini").write_text(PYTEST_INI)
    return root
