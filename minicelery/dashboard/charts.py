"""The charts, drawn on the server as inline SVG (no script library to ship or load): tasks
per second by state, and the runtime distribution of each task."""

from __future__ import annotations

from dataclasses import dataclass

from .collector import RUNTIME_BUCKETS

COLORS = {
    "SUCCESS": "#2e7d32",
    "FAILURE": "#c62828",
    "STARTED": "#1565c0",
    "RECEIVED": "#6a1b9a",
    "RETRY": "#ef6c00",
    "REVOKED": "#616161",
    "REJECTED": "#795548",
    "PENDING": "#9e9e9e",
}
WIDTH, HEIGHT, PAD = 720, 220, 36


@dataclass
class Line:
    state: str
    color: str
    points: str
    total: int


@dataclass
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    count: int


def rate_lines(series: dict[str, list[int]]) -> tuple[list[Line], int]:
    """Polylines of tasks per second by state, and the y-axis maximum."""
    top = max([1, *(max(values) for values in series.values() if values)])
    lines = []
    for state in sorted(series):
        values = series[state]
        step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - (v / top) * (HEIGHT - 2 * PAD):.1f}"
            for i, v in enumerate(values)
        )
        lines.append(Line(state, COLORS.get(state, "#000"), points, sum(values)))
    return lines, top


def bucket_label(index: int) -> str:
    bound = RUNTIME_BUCKETS[index]
    if bound == float("inf"):
        return f">{_seconds(RUNTIME_BUCKETS[index - 1])}"
    return f"≤{_seconds(bound)}"


def _seconds(value: float) -> str:
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"


def runtime_bars(counts: list[int]) -> list[Bar]:
    """Bars of one task's runtime histogram (non-cumulative counts per bucket)."""
    top = max([1, *counts])
    width = (WIDTH - 2 * PAD) / len(counts)
    bars = []
    for index, count in enumerate(counts):
        height = (count / top) * (HEIGHT - 2 * PAD)
        bars.append(
            Bar(
                bucket_label(index),
                PAD + index * width + 2,
                HEIGHT - PAD - height,
                width - 4,
                height,
                count,
            )
        )
    return bars
