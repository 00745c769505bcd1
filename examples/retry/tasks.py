"""A flaky remote call, retried automatically.

``autoretry_for`` names the errors worth another try, ``retry_backoff`` spaces the tries out
exponentially (about 1 s, 2 s, 4 s, ... with ``retry_jitter`` picking a random delay up to
that), and ``retry_kwargs`` caps how many there are. Any other error fails the task at once.

With no broker configured both the worker and the client use the embedded Redis; set
MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND (e.g. ``redis://localhost:6379/0``) in
both shells to use a Redis server.
"""

from __future__ import annotations

from typing import Any

from minicelery import Celery
from minicelery.utils.log import get_task_logger

app = Celery("tasks")
logger = get_task_logger(__name__)


class ServiceUnavailable(Exception):
    """The remote service answered ``503``: it may well answer next time."""


class NotFound(Exception):
    """The remote service answered ``404``: asking again will not help."""


def flaky_get(url: str, attempt: int, outage: int) -> dict[str, Any]:
    """A stand-in for ``requests.get(url).json()`` against a service that is down for its
    first ``outage`` attempts; a URL whose path contains ``missing`` does not exist."""
    if "missing" in url:
        raise NotFound(f"404 Not Found: {url}")
    if attempt < outage:
        raise ServiceUnavailable(f"503 Service Unavailable: {url} (attempt {attempt + 1})")
    return {"url": url, "status": 200, "attempts": attempt + 1}


@app.task(
    bind=True,
    autoretry_for=(ServiceUnavailable, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    retry_kwargs={"max_retries": 3},
)
def fetch(self: Any, url: str, outage: int = 2) -> dict[str, Any]:
    """GET ``url``; a 503 or a dropped connection is retried, up to three times."""
    logger.info("GET %s (attempt %d)", url, self.request.retries + 1)
    return flaky_get(url, self.request.retries, outage)
