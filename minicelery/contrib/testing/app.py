"""Apps for tests: configured for an in-process broker unless told otherwise, and a context
that restores the current app afterwards (Celery's ``celery.contrib.testing.app``)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ... import _state
from ...app import Celery

#: Settings every test app starts from; a test's own configuration overrides them. The
#: ``memory://`` broker and backend are an in-process Redis, one per app (see ``TestApp``).
DEFAULT_TEST_CONFIG: dict[str, Any] = {
    "worker_hijack_root_logger": False,
    "worker_log_color": False,
    "accept_content": ["json"],
    "enable_utc": True,
    "timezone": "UTC",
    "broker_heartbeat": 0,
}

_memory_names = itertools.count(1)
_owned_memory: dict[int, str] = {}  # id(app) -> name of the memory:// server made for it


class Trap:
    """Stands in for the current app and raises on any use: code under test that falls back
    to the current app instead of the one it was given fails loudly."""

    def __getattr__(self, name: str) -> Any:
        if name in ("_is_coroutine", "__func__"):  # what unittest.mock probes for
            return None
        raise RuntimeError("Test depends on current_app")


def TestApp(  # Celery's name: a factory that reads like a class
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    enable_logging: bool = False,
    set_as_current: bool = False,
    backend: str | None = None,
    broker: str | None = None,
    **kwargs: Any,
) -> Celery:
    """A new app for one test. Without a ``broker_url`` it gets its own ``memory://``
    broker and result backend, so tests never see each other's messages."""
    from . import tasks  # noqa: F401 - registers celery.ping as a shared task

    settings = {**DEFAULT_TEST_CONFIG, **(config or {})}
    memory = None
    if broker is None and not settings.get("broker_url"):
        memory = f"minicelery-tests-{os.getpid()}-{next(_memory_names)}"
        settings["broker_url"] = f"memory://{memory}"
        if backend is None and "result_backend" not in settings:
            settings["result_backend"] = f"memory://{memory}"
    kwargs.pop("log", None)  # Celery's logging class: logging here is the CLI's business
    app = Celery(
        name or "celery.tests",
        broker=broker,
        backend=backend,
        set_as_current=set_as_current,
        **settings,
        **kwargs,
    )
    if memory is not None:
        _owned_memory[id(app)] = memory
    return app


TestApp.__test__ = False  # type: ignore[attr-defined]  # not a test, for pytest


@contextmanager
def set_trap(app: Celery) -> Iterator[None]:
    """Install a :class:`Trap` as the current app for the duration of the block."""
    previous = _state._current_app
    _state.set_current_app(Trap())  # type: ignore[arg-type]
    try:
        yield
    finally:
        _state._current_app = previous


@contextmanager
def setup_default_app(app: Celery, use_trap: bool = False) -> Iterator[None]:
    """Run the block with ``app`` available, then restore the current app as it was and
    close ``app``'s connections, so one test's app never leaks into the next."""
    previous = _state._current_app
    try:
        if use_trap:
            with set_trap(app):
                yield
        else:
            yield
    finally:
        _state._current_app = previous
        if app is not previous:
            app.close()
            _forget_memory(app)
            if app in _state._apps:
                _state._apps.remove(app)


def _forget_memory(app: Celery) -> None:
    """Free the in-process Redis made for ``app`` (each holds what its tests left)."""
    name = _owned_memory.pop(id(app), None)
    if name is not None:
        from ...redislayer.memory import forget_memory_server

        forget_memory_server(name)


__all__ = ["DEFAULT_TEST_CONFIG", "TestApp", "Trap", "set_trap", "setup_default_app"]
