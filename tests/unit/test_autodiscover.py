"""``autodiscover_tasks``: lazy by default, immediate with ``force``, Django apps when no
packages are given; ``config_from_envvar``."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from minicelery.exceptions import ImproperlyConfigured


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``make_package(name)``: a package on sys.path whose ``tasks`` module defines a task
    named ``<name>.tasks.hello`` on the current app."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(name: str) -> str:
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "tasks.py").write_text(
            "from minicelery import shared_task\n\n@shared_task\ndef hello():\n    return 'hi'\n"
        )
        made.append(name)
        return name

    yield make
    for name in made:
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


def test_discovery_is_lazy_until_the_app_imports_its_modules(
    app: Celery, make_package: Callable[[str], str]
) -> None:
    name = make_package("lazypkg_a")
    app.autodiscover_tasks([name])
    assert f"{name}.tasks" not in sys.modules
    app.import_modules()
    assert f"{name}.tasks" in sys.modules
    assert f"{name}.tasks.hello" in app.tasks


def test_discovery_runs_on_finalize_and_accepts_a_callable(
    app: Celery, make_package: Callable[[str], str]
) -> None:
    name = make_package("lazypkg_b")
    app.autodiscover_tasks(lambda: [name, "no_such_package_here"][:1])
    app.finalize()
    assert f"{name}.tasks.hello" in app.tasks


def test_force_discovers_now(app: Celery, make_package: Callable[[str], str]) -> None:
    name = make_package("lazypkg_c")
    app.autodiscover_tasks([name], force=True)
    assert f"{name}.tasks" in sys.modules


def test_no_packages_means_the_installed_django_apps(
    app: Celery, make_package: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = make_package("djangoish_app")
    apps = types.SimpleNamespace(
        ready=True,
        get_app_configs=lambda: [types.SimpleNamespace(name=name)],
    )
    monkeypatch.setitem(sys.modules, "django", types.ModuleType("django"))
    monkeypatch.setitem(sys.modules, "django.apps", types.SimpleNamespace(apps=apps))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "proj.settings")
    app.autodiscover_tasks()
    assert f"{name}.tasks" not in sys.modules
    app.import_modules()
    assert f"{name}.tasks.hello" in app.tasks


def test_no_packages_without_django_discovers_nothing(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    app.autodiscover_tasks()
    app.import_modules()


def test_config_from_envvar(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("envvar_celeryconfig")
    module.task_default_queue = "from-env"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setenv("MY_CELERY_CONFIG", module.__name__)
    assert app.config_from_envvar("MY_CELERY_CONFIG") is True
    assert app.conf.task_default_queue == "from-env"
    monkeypatch.delenv("MY_CELERY_CONFIG")
    assert app.config_from_envvar("MY_CELERY_CONFIG", silent=True) is False
    with pytest.raises(ImproperlyConfigured, match="MY_CELERY_CONFIG"):
        app.config_from_envvar("MY_CELERY_CONFIG")
