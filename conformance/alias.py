"""A pytest plugin that makes ``import celery.xyz`` give ``minicelery.xyz``: loaded with
``-p conformance.alias`` before any test module is imported, so Celery's test suite runs
unchanged against minicelery. A Celery module minicelery does not have stays missing
(``ModuleNotFoundError``), and the test file that needs it errors at collection."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

SOURCE, TARGET = "celery", "minicelery"


class CeleryAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``celery`` and ``celery.*`` as the same-named ``minicelery`` modules. The module
    object is shared (``celery.canvas is minicelery.canvas``), so identity checks, signals and
    registries behave as one."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != SOURCE and not fullname.startswith(SOURCE + "."):
            return None
        real_name = TARGET + fullname[len(SOURCE) :]
        try:
            real = importlib.util.find_spec(real_name)
        except (ImportError, ValueError):
            return None
        if real is None:
            return None
        is_package = real.submodule_search_locations is not None
        spec = importlib.machinery.ModuleSpec(fullname, self, is_package=is_package)
        spec.loader_state = real_name
        return spec

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(spec.loader_state)
        self._specs[module.__name__] = module.__spec__
        return module

    def get_code(self, fullname: str) -> Any:
        """The real module's code: what ``python -m celery ...`` (runpy) runs."""
        real = importlib.util.find_spec(TARGET + fullname[len(SOURCE) :])
        loader = getattr(real, "loader", None)
        return loader.get_code(real.name) if loader is not None and real else None

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias's spec on the shared module: put its own back.
        module.__spec__ = self._specs.get(module.__name__, module.__spec__)


def install() -> CeleryAlias:
    """Put the alias first on ``sys.meta_path`` (once) and forget any real Celery already
    imported, so every later ``import celery...`` resolves to minicelery."""
    for finder in sys.meta_path:
        if isinstance(finder, CeleryAlias):
            return finder
    for name in [m for m in sys.modules if m == SOURCE or m.startswith(SOURCE + ".")]:
        del sys.modules[name]
    finder = CeleryAlias()
    sys.meta_path.insert(0, finder)
    return finder


install()
