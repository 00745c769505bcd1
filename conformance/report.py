"""Read a run's JUnit XML into per-test outcomes, and print the per-file comparison."""

from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

OUTCOMES = ("passed", "failed", "skipped", "error", "n/a")
Results = dict[str, str]  # test id -> outcome


def file_of(test_id: str) -> str:
    return test_id.split("::", 1)[0]


def read_junit(path: Path) -> Results:
    """``{"test_canvas.py::test_chain::test_simple_chain": "passed", ...}``; a file that did
    not import is one ``"<file>::<collection>": "error"`` entry."""
    results: Results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        parts = classname.split(".")
        if not classname:  # a collection error: the name is the module
            results[f"{name.split('.')[-1]}.py::<collection>"] = "error"
            continue
        module_index = next((i for i, p in enumerate(parts) if p.startswith("test_")), None)
        if module_index is None:
            continue
        file = parts[module_index] + ".py"
        test_id = "::".join([file, *parts[module_index + 1 :], name])
        results[test_id] = _worst(results.get(test_id), _outcome(case))
    return results


def _outcome(case: ET.Element) -> str:
    if case.find("error") is not None:
        return "error"
    if case.find("failure") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def _worst(old: str | None, new: str) -> str:
    # A test that failed and then errored in teardown appears twice: keep the failure.
    order = ["passed", "skipped", "error", "failed"]
    return new if old is None or order.index(new) > order.index(old) else old


def test_names(path: Path) -> list[str]:
    """The tests of a file by reading it (``test_x`` or ``test_class::test_x``): what a file
    left out as n/a, or one that could not be imported, would have run."""
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.lower().startswith("test"):
            names += [
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
            ]
    return names


def expand(results: Results, suite: Path, not_applicable: Iterable[str]) -> Results:
    """Count a file that could not be imported as an error for each of its tests, and each
    test of an n/a file as n/a."""
    expanded = {k: v for k, v in results.items() if not k.endswith("::<collection>")}
    for test_id in results:
        if test_id.endswith("::<collection>"):
            file = file_of(test_id)
            for name in test_names(suite / file) or ["<collection>"]:
                expanded[f"{file}::{name}"] = "error"
    for file in not_applicable:
        if (suite / file).exists():
            for name in test_names(suite / file):
                expanded[f"{file}::{name}"] = "n/a"
    return expanded


def per_file(results: Results) -> dict[str, Counter[str]]:
    table: dict[str, Counter[str]] = {}
    for test_id, outcome in results.items():
        table.setdefault(file_of(test_id), Counter())[outcome] += 1
    return table


def save(results: Results, path: Path, meta: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=1, sort_keys=True))


def load(path: Path) -> tuple[Results, dict[str, object]]:
    data = json.loads(path.read_text())
    return data["results"], data.get("meta", {})


def _cells(counts: Counter[str] | None) -> list[str]:
    if counts is None:
        return ["", "", "", "", ""]
    return [str(counts.get(outcome, 0) or "") for outcome in OUTCOMES]


def table(columns: dict[str, Results], files: Iterable[str] | None = None) -> str:
    """A Markdown table: one row per file, passed/failed/skipped/error/n/a for each column."""
    tables = {name: per_file(results) for name, results in columns.items()}
    names = sorted(set(files or ()) | {f for t in tables.values() for f in t})
    header = ["file"]
    for col in columns:
        header += [f"{col} pass", "fail", "skip", "err", "n/a"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    totals = {col: Counter[str]() for col in columns}
    for name in names:
        row = [name.removesuffix(".py")]
        for col in columns:
            counts = tables[col].get(name)
            if counts is not None:
                totals[col].update(counts)
            row += _cells(counts)
        lines.append("| " + " | ".join(row) + " |")
    total_row = ["**total**"] + [c for col in columns for c in _cells(totals[col])]
    lines.append("| " + " | ".join(total_row) + " |")
    return "\n".join(lines)
