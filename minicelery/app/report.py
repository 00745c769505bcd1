"""``app.bugreport()``: versions, platform and settings, secrets masked, as Celery's."""

from __future__ import annotations

import importlib.metadata
import platform
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Celery

SECRET = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|DATABASE", re.IGNORECASE)
MASK = "********"


def mask_url(url: str) -> str:
    """``url`` with the password of each ``;``-separated part hidden; a password may hold
    ``@`` or ``,`` (the last ``@`` before the host ends it)."""
    return ";".join(_mask_one(part) for part in url.split(";"))


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@", 0, _host_end(rest))
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}://{user}:{MASK}{rest[at:]}" if colon else url


def _host_end(rest: str) -> int:
    """Where the network location ends: the first ``/`` after the last ``@`` ... or the
    end. Passwords may contain ``/`` rarely; hosts never contain ``@``."""
    last_at = rest.rfind("@")
    slash = rest.find("/", last_at + 1)
    return slash if slash >= 0 else len(rest)


def _masked(key: str, value: Any) -> str:
    if isinstance(value, str) and "://" in value:
        return repr(mask_url(value))
    if value and SECRET.search(key):
        return repr(MASK)
    return repr(value)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def bug_report(app: Celery) -> str:
    """What people paste into an issue: versions, platform, transport and the settings."""
    transport = (app.conf.broker_url or "embedded").split(":", 1)[0]
    results = (app.conf.result_backend or "disabled").split(":", 1)[0]
    lines = [
        f"software -> minicelery:{_version('minicelery')} redis-py:{_version('redis')} "
        f"msgpack:{_version('msgpack')} click:{_version('click')} "
        f"py:{platform.python_version()}",
        f"            {platform.python_implementation()}",
        f"platform -> system:{platform.system()} arch:{platform.machine()} "
        f"release:{platform.release()}",
        f"app -> {app.main or '__main__'}",
        f"settings -> transport:{transport} results:{results}",
        "",
        *(f"{key}: {_masked(key, value)}" for key, value in sorted(app.conf.items())),
    ]
    return "\n".join(lines)
