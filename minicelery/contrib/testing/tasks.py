"""The task an embedded worker answers to prove it is up (Celery's ``celery.ping``)."""

from __future__ import annotations

from ...app import shared_task


@shared_task(name="celery.ping")  # type: ignore[untyped-decorator]
def ping() -> str:
    """Return ``'pong'``: :func:`~minicelery.contrib.testing.worker.start_worker` waits for
    it, so a test starts only once its worker really consumes."""
    return "pong"
