"""Finding task modules: ``<package>.tasks`` for each package given, or for each installed
Django app when none are given (Celery's Django fix-up)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

Packages = Iterable[str] | Callable[[], Iterable[str]] | None


def discover(packages: Packages, related_name: str | None = "tasks") -> list[ModuleType]:
    """Import ``<package>.<related_name>`` for each package that has such a module (the
    package itself when ``related_name`` is None); return the modules imported."""
    names = packages() if callable(packages) else packages
    if names is None:
        names = django_app_packages()
    found = (related_module(package, related_name) for package in names)
    return [module for module in found if module is not None]


def related_module(package: str, related_name: str | None) -> ModuleType | None:
    """``package.related_name``, or None when the package has no such module. An import
    error raised inside that module is not swallowed: it is the user's bug to see."""
    try:
        module = importlib.import_module(package)
        if not related_name:
            return module
    except ModuleNotFoundError:
        # Django lists an app by its AppConfig class path: try the package above it.
        package = package.rpartition(".")[0]
        if not package:
            raise
    name = f"{package}.{related_name}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def django_app_packages() -> list[str]:
    """The installed Django apps, when this process runs a Django project
    (``DJANGO_SETTINGS_MODULE`` set); else nothing."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return []
    try:
        django: Any = importlib.import_module("django")
        apps: Any = importlib.import_module("django.apps").apps
    except ImportError:
        return []
    if not apps.ready:
        django.setup()
    return [str(config.name) for config in apps.get_app_configs()]
