"""The canvas app with one planted crash: the first process to complete a chord dies right
after claiming it, before it sends the body (``os._exit``, as a kill -9 would leave it).
The crash happens once per test prefix, recorded in Redis, so whoever asks again goes on."""

from __future__ import annotations

import os
from typing import Any

from minicelery.canvas import callbacks
from tests.integration.apps import canvas_tasks
from tests.integration.apps.canvas_tasks import REDIS_URL
from tests.integration.apps.common import redis_client

app = canvas_tasks.app
CRASHED_KEY = os.environ.get("MC_TEST_PREFIX", "minicelery") + ":planted-crash"
_send_body = callbacks._call_body


def _die_once_then_send(*args: Any, **kwargs: Any) -> None:
    if redis_client(REDIS_URL).set(CRASHED_KEY, os.getpid(), nx=True):
        os._exit(1)
    _send_body(*args, **kwargs)


callbacks._call_body = _die_once_then_send
