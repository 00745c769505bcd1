"""``examples/canvas`` run as its README says: a worker started with ``minicelery -A tasks``
in the folder, then ``python workflows.py``, whose printed results are Celery's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import REPO_ROOT, ManagedProcess, RedisServer, minicelery_argv, mode_args

FOLDER = REPO_ROOT / "examples" / "canvas"
EXAMPLE_DB = 11  # the example uses the default key prefix: a database of its own

EXPECTED = {
    "add.s(2).delay(4).get()": "6",
    "~add.s(2, 2)": "4",
    "add.apply_async((2, 2), link=add.s(16)).get()": "4",
    "chain(add.s(2, 2), add.s(4), add.s(8))().get()": "16",
    "(add.s(2, 2) | add.s(4) | add.s(8))().get()": "16",
    "res.parent.parent.get()": "4",
    "(add.si(2, 2) | add.si(4, 4) | add.si(8, 8))().get()": "16",
    "(add.s(4) | mul.s(8))(16).get()": "160",
    "(add.s(4, 4) | group(add.si(i, i) for i in range(10)))().get()": repr(
        [i + i for i in range(10)]
    ),
    "group(add.s(2, 2), add.s(4, 4))().get()": "[4, 8]",
    "res.ready(), res.successful(), res.completed_count()": "(True, True, 10)",
    "chord((add.s(i, i) for i in range(10)), xsum.s())().get()": "90",
    "(group(add.s(i, i) for i in range(10)) | xsum.s())().get()": "90",
    "chord(header)(tsum.s()).get()": "9900",
    "~xsum.map([range(10), range(100)])": "[45, 4950]",
    "~add.starmap(zip(range(10), range(10)))": repr([i + i for i in range(10)]),
    "add.chunks(zip(range(100), range(100)), 10)().get()": repr(
        [[2 * i for i in range(p, p + 10)] for p in range(0, 100, 10)]
    ),
}


@pytest.fixture
def example_env(redis_server: RedisServer) -> Iterator[dict[str, str]]:
    url = f"redis://127.0.0.1:{redis_server.port}/{EXAMPLE_DB}"
    client = redis_server.client(db=EXAMPLE_DB)
    client.flushdb()
    try:
        yield {
            **os.environ,
            "MINICELERY_BROKER_URL": url,
            "MINICELERY_RESULT_BACKEND": url,
            "PYTHONUNBUFFERED": "1",
        }
    finally:
        client.flushdb()
        client.close()


def test_canvas_example_prints_the_guides_results(example_env: dict[str, str]) -> None:
    worker = ManagedProcess(
        minicelery_argv("-A", "tasks", "worker", "-l", "INFO", "-c", "2", *mode_args()),
        cwd=FOLDER,
        env=example_env,
        label="example canvas",
    )
    try:
        worker.wait_ready()
        done = subprocess.run(
            [sys.executable, "workflows.py"],
            cwd=FOLDER,
            env=example_env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        printed = dict(
            line.split("  ->  ", 1) for line in done.stdout.splitlines() if "  ->  " in line
        )
        assert {key: printed.get(key) for key in EXPECTED} == EXPECTED
        chord_error = printed["chord([add.s(4, 4), raising_task.s(), add.s(8, 8)], tsum.s())"]
        assert chord_error.startswith("ChordError('Dependency ") or chord_error.startswith(
            'ChordError("Dependency '
        )
        assert "raised ValueError('something something')" in chord_error
    finally:
        assert worker.stop() == 0, worker.describe()
