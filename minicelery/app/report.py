"""``app.bugreport()``: versions, platform and settings, secrets masked, laid out as Celery's
(``software ->``, ``platform ->``, ``settings ->``, then the settings the user gave)."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import TYPE_CHECKING

from ..config_table import mask_url

if TYPE_CHECKING:
    from .base import Celery

__all__ = ["bug_report", "mask_url"]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def bug_report(app: Celery) -> str:
    """What people paste into an issue: versions, platform, transport and the settings.
    Celery's first line names the implementation of its API in the ``celery:`` slot."""
    transport = (app.conf.broker_url or "embedded").split(":", 1)[0]
    results = mask_url(app.conf.result_backend or "disabled")
    arch = ", ".join(part for part in platform.architecture() if part)
    lines = [
        f"software -> celery:minicelery-{_version('minicelery')} "
        f"redis-py:{_version('redis')} py:{platform.python_version()}",
        f"            msgpack:{_version('msgpack')} click:{_version('click')}",
        f"platform -> system:{platform.system()} arch:{arch}",
        f"            kernel version:{platform.release()} imp:{platform.python_implementation()}",
        f"app      -> {app.main or '__main__'}",
        f"settings -> transport:{transport} results:{results}",
        "",
        app.conf.humanize(),
    ]
    return "\n".join(lines)
