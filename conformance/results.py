"""Write ``conformance/RESULTS.md`` from the recorded runs (``conformance/results/*.json``):
the per-file table, and the tests Celery passes that minicelery does not, grouped by why.

    python -m conformance.results > conformance/RESULTS.md
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from . import report
from .reasons import reason_for

RECORDED = Path(__file__).resolve().parent / "results"


def _meta_line(name: str, meta: dict[str, object]) -> str:
    load = meta.get("loadavg")
    load_text = ", ".join(f"{x:.2f}" for x in load) if isinstance(load, (list, tuple)) else "?"
    files = meta.get("files")
    part = ", ".join(map(str, files)) if isinstance(files, list) and files else "all files"
    if meta.get("shard"):
        part += f", shard {meta['shard']}"
    if meta.get("k"):
        part += f", -k {meta['k']!r}"
    when, seconds, cap = meta.get("date", "?"), meta.get("seconds", "?"), meta.get("timeout", "?")
    return (
        f"- {name} ({part}): {when}, {seconds} s, load average {load_text} (1/5/15 min), "
        f"per-test cap {cap} s"
    )


def _merged(name: str) -> tuple[report.Results, list[dict[str, object]]]:
    """All the recorded parts of ``name``'s run (one file per shard), as one."""
    results: report.Results = {}
    metas: list[dict[str, object]] = []
    for path in sorted(RECORDED.glob(f"{name}*.json")):
        part, meta = report.load(path)
        results.update(part)
        metas.append(meta)
    return results, metas


def render() -> str:
    runs = {name: _merged(name) for name in ("minicelery", "celery")}
    ours, theirs = runs["minicelery"][0], runs["celery"][0]
    lines = ["# Celery 5.7's integration suite on minicelery", "",
             "`python -m conformance.celery_suite` (minicelery, through the `celery` import",
             "alias) and `--against celery` (Celery 5.7.0 itself), run the same way: one",
             "redis-server as broker and result backend, one session worker with the prefork",
             "pool, no reruns of flaky tests, each test capped in time.", ""]  # fmt: skip
    lines += [_meta_line(name, meta) for name, (_, metas) in runs.items() for meta in metas]
    lines += ["", report.table({"minicelery": ours, "celery": theirs}), ""]
    missing: dict[str, list[str]] = defaultdict(list)
    for test_id, outcome in sorted(theirs.items()):
        if outcome == "passed" and ours.get(test_id) != "passed":
            missing[reason_for(test_id)].append(test_id)
    total = sum(len(v) for v in missing.values())
    lines += [f"## Passing on Celery, not on minicelery ({total})", ""]
    for reason, tests in sorted(missing.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- **{len(tests)}** — {reason}:")
        lines.append("  " + ", ".join(f"`{t}`" for t in tests))
    return "\n".join(lines) + "\n"


def summary_table() -> str:
    """Just the per-file table (what the README shows)."""
    runs = {name: _merged(name)[0] for name in ("minicelery", "celery")}
    return report.table(runs) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summary_table() if "--table" in sys.argv[1:] else render())
