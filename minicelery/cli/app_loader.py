"""Find the app named by ``-A``: ``proj``, ``proj.celery``, ``proj:app``, as Celery does."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from ..app import Celery

ATTRIBUTE_NAMES = ("app", "celery")


class AppNotFound(Exception):
    """``-A`` names nothing that is, or holds, a minicelery app."""


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None  # the module itself is missing, not something it imports
        raise


def _app_in(module: ModuleType) -> Celery | None:
    for attr in ATTRIBUTE_NAMES:
        value = getattr(module, attr, None)
        if isinstance(value, Celery):
            return value
    found = [v for v in vars(module).values() if isinstance(v, Celery)]
    return found[0] if len(found) == 1 else None


def find_app(spec: str) -> Celery:
    """Import and return the app named by ``spec``; AppNotFound with a one-line reason."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if module is None and "." in module_name and not attr:
        parent, last = module_name.rsplit(".", 1)
        parent_module = _import(parent)
        if parent_module is not None and hasattr(parent_module, last):
            module, attr = parent_module, last
    if module is None:
        raise AppNotFound(
            f"Unable to load minicelery application. The module {module_name} was not found."
        )
    if attr:
        value: Any = module
        for part in attr.split("."):
            value = getattr(value, part, None)
        if not isinstance(value, Celery):
            raise AppNotFound(
                f"Unable to load minicelery application. {spec!r} is not a minicelery app."
            )
        return value
    app = _app_in(module)
    if app is None:
        submodule = _import(f"{module_name}.celery") if hasattr(module, "__path__") else None
        app = _app_in(submodule) if submodule is not None else None
    if app is None:
        raise AppNotFound(
            f"Unable to load minicelery application. Module {module_name!r} has no "
            "attribute 'app' or 'celery' holding an app."
        )
    return app


def configure(
    app: Celery, config: str | None = None, broker: str | None = None, backend: str | None = None
) -> Celery:
    """Apply the command line's ``--config``, ``--broker`` and ``--result-backend`` to
    ``app``: in the worker's main process and in every fork server it starts, alike."""
    if config:
        app.config_from_object(config)
    if broker:
        app.conf.broker_url = broker
    if backend:
        app.conf.result_backend = backend
    return app
