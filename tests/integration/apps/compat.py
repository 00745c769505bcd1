"""Tasks for the drop-in checks: a base class overriding ``__call__`` (Celery's Flask guide
pattern) and a task that prints (``worker_redirect_stdouts``)."""

from __future__ import annotations

import contextvars
import os
from typing import Any

from minicelery import Celery, Task

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://compat")

app = Celery(
    "compat",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=0.5,
)

app_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("ctx", default=None)


class ContextTask(Task[Any, Any]):
    """Runs every task inside an "application context", as ``FlaskTask`` does."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = app_context.set("inside")
        try:
            return self.run(*args, **kwargs)
        finally:
            app_context.reset(token)


class SuperCallTask(Task[Any, Any]):
    """Wraps the base ``__call__`` instead of calling ``run`` itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = app_context.set("via-super")
        try:
            return super().__call__(*args, **kwargs)
        finally:
            app_context.reset(token)


@app.task(base=ContextTask, bind=True)
def in_context(self: Task[Any, Any], x: int) -> list[Any]:
    return [app_context.get(), x, self.request.id]


@app.task(base=SuperCallTask, bind=True)
def in_super_context(self: Task[Any, Any]) -> list[Any]:
    return [app_context.get(), self.request.id, bool(self.request.called_directly)]


@app.task
def shout(text: str) -> str:
    print(f"printed by the task: {text}")
    return text
