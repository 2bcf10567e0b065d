"""Bar charts as inline SVG, computed on the server.

Only geometry is computed here; the template writes the SVG elements, so every
label passes through Jinja's autoescaping like the rest of the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

WIDTH = 640
HEIGHT = 200
LEFT = 44  # room for the axis labels
BOTTOM = 22
TOP = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the bucket, as shown in the tooltip and the table
    value: int
    extra: int | None  # a second figure for the tooltip (page views)


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    bars: list[Bar]
    top_value: int
    ticks: list[tuple[float, str, str]]  # x, label, text-anchor of a few buckets
    baseline: float
    left: int
    top: int
    unit_label: str
    extra_label: str | None

    @property
    def empty(self) -> bool:
        return not self.bars


def _nice_top(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above ``value``."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for mult in (1, 2, 5):
            if step * mult >= value:
                return step * mult
        step *= 10


def bucket_label(moment: datetime, unit: str) -> str:
    if unit == "day":
        return moment.strftime("%Y-%m-%d")
    if unit == "hour":
        return moment.strftime("%Y-%m-%d %H:00")
    return moment.strftime("%H:%M")


def bar_chart(
    title: str,
    rows: list[dict[str, Any]],
    unit: str,
    value_key: str,
    unit_label: str,
    extra_key: str | None = None,
    extra_label: str | None = None,
) -> Chart:
    """One bar per row (``row['bucket']`` a datetime) of ``row[value_key]``."""
    plot_w = WIDTH - LEFT - 4
    plot_h = HEIGHT - TOP - BOTTOM
    baseline = float(TOP + plot_h)
    top_value = _nice_top(max((int(r[value_key]) for r in rows), default=0))
    bars: list[Bar] = []
    slot = plot_w / max(len(rows), 1)
    gap = min(2.0, slot * 0.2)
    for n, row in enumerate(rows):
        value = int(row[value_key])
        height = plot_h * value / top_value
        bars.append(
            Bar(
                x=round(LEFT + n * slot + gap / 2, 2),
                y=round(baseline - height, 2),
                width=round(max(slot - gap, 0.5), 2),
                height=round(height, 2),
                label=bucket_label(row["bucket"], unit),
                value=value,
                extra=int(row[extra_key]) if extra_key else None,
            )
        )
    ticks: list[tuple[float, str, str]] = []
    if rows:
        # The first label starts at its bar and the last ends at its own, so
        # that neither is cut at the edges.
        last = len(rows) - 1
        ticks.append((bars[0].x, bars[0].label, "start"))
        if last >= 2:
            middle = last // 2
            x = round(LEFT + (middle + 0.5) * slot, 2)
            ticks.append((x, bars[middle].label, "middle"))
        if last >= 1:
            ticks.append((bars[last].x + bars[last].width, bars[last].label, "end"))
    return Chart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        top_value=top_value,
        ticks=ticks,
        baseline=baseline,
        left=LEFT,
        top=TOP,
        unit_label=unit_label,
        extra_label=extra_label,
    )
