"""Charts drawn on the server as inline SVG: no script, no library, readable in dark mode.

Pure functions from numbers to markup. Text takes the page's colour (currentColor); marks
take the page's CSS variables, with a fallback colour when drawn outside the dashboard.
Every chart is an image with a title for screen readers, and each bar or point carries
its exact value in a tooltip (<title>) and in a data-value attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape

WIDTH = 900
HEIGHT = 290
# Room for the title above, the y labels on the left, the x labels and axis title below.
TOP, RIGHT, BOTTOM, LEFT = 44, 24, 56, 70
FONT = 12
BAR_COLOUR = "var(--accent, #a4262c)"
LINE_COLOUR = "var(--accent, #a4262c)"
GRID_OPACITY = "0.18"
SEVERITY_COLOURS = {"warn": "var(--warn, #b7791f)", "bad": "var(--bad, #a4262c)"}


@dataclass(frozen=True)
class Bar:
    """One bar: its value (None: unknown), the text under it (if any) and its tooltip."""

    label: str
    value: float | None
    tick: str | None = None


@dataclass(frozen=True)
class Point:
    """One point of a line: None leaves a gap (nothing to measure that day)."""

    label: str
    value: float | None
    tick: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Threshold:
    """A horizontal line a value should stay under, labelled on the chart."""

    value: float
    label: str
    severity: Literal["warn", "bad"] = "warn"


def column_chart(
    *,
    title: str,
    bars: Sequence[Bar],
    x_label: str,
    y_label: str,
    unit: str = "",
) -> Markup:
    """Vertical bars over time (one per hour or day), counts on the y axis."""
    plot = _Plot(top=_nice_top(max((b.value or 0 for b in bars), default=0), whole=True))
    parts = [*plot.y_grid(_count), *plot.axes(x_label=x_label, y_label=y_label)]
    slot = plot.width / max(len(bars), 1)
    gap = min(2.0, slot * 0.2)
    for i, bar in enumerate(bars):
        x = plot.left + i * slot
        value = bar.value or 0
        y = plot.y(value)
        parts.append(
            f'<rect class="bar" data-value="{_number(value)}" x="{x + gap / 2:.1f}" '
            f'y="{y:.1f}" width="{max(slot - gap, 0.5):.1f}" height="{plot.bottom - y:.1f}" '
            f'style="fill:{BAR_COLOUR}">'
            f"<title>{escape(bar.label)}: {_count(value)}{escape(unit)}</title></rect>"
        )
        if bar.tick:
            parts.append(plot.x_tick(x + slot / 2, bar.tick))
    return _svg(title, parts)


def rate_chart(
    *,
    title: str,
    points: Sequence[Point],
    thresholds: Sequence[Threshold],
    x_label: str,
    y_label: str,
) -> Markup:
    """A rate (0.002 is 0.2%) per day as a line of points, with its limits drawn across."""
    highest = max([p.value or 0 for p in points] + [t.value * 1.25 for t in thresholds], default=0)
    plot = _Plot(top=_nice_top(highest, whole=False))
    parts = [*plot.y_grid(percent), *plot.axes(x_label=x_label, y_label=y_label)]
    for threshold in thresholds:
        y = plot.y(threshold.value)
        colour = SEVERITY_COLOURS[threshold.severity]
        parts.append(
            f'<line class="threshold {threshold.severity}" data-value="{_number(threshold.value)}" '
            f'x1="{plot.left}" x2="{plot.right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'style="stroke:{colour}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text class="threshold-label" x="{plot.right - 4}" y="{y - 4:.1f}" '
            f'text-anchor="end" style="fill:{colour}">{escape(threshold.label)}</text>'
        )
    slot = plot.width / max(len(points), 1)
    segment: list[str] = []
    segments: list[list[str]] = [segment]
    marks = []
    for i, point in enumerate(points):
        x = plot.left + (i + 0.5) * slot
        if point.tick:
            parts.append(plot.x_tick(x, point.tick))
        if point.value is None:
            segment = []
            segments.append(segment)
            continue
        y = plot.y(point.value)
        segment.append(f"{x:.1f},{y:.1f}")
        note = f" ({escape(point.note)})" if point.note else ""
        marks.append(
            f'<circle class="point" data-value="{_number(point.value)}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="3.5" style="fill:{LINE_COLOUR}">'
            f"<title>{escape(point.label)}: {percent(point.value)}{note}</title></circle>"
        )
    for line in segments:
        if len(line) > 1:
            parts.append(
                f'<polyline points="{" ".join(line)}" fill="none" '
                f'style="stroke:{LINE_COLOUR}" stroke-width="2"/>'
            )
    if not marks:
        parts.append(plot.empty("Nothing sent in this period: no rate to show."))
    return _svg(title, parts + marks)


def bar_chart(*, title: str, bars: Sequence[Bar], x_label: str) -> Markup:
    """Horizontal bars, one per row (queue depths now); an unknown value says so."""
    row = 30
    label_width = 250
    height = TOP + row * max(len(bars), 1) + BOTTOM
    plot = _Plot(
        top=_nice_top(max((b.value or 0 for b in bars), default=0), whole=True),
        height=height,
        left=label_width,
    )
    parts = list(plot.x_grid(_count))
    parts.append(
        f'<text class="axis-label" x="{plot.left + plot.width / 2:.1f}" y="{height - 10}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    for i, bar in enumerate(bars):
        y = plot.top + i * row
        middle = y + row / 2 + FONT / 2 - 2
        parts.append(
            f'<text x="{plot.left - 8}" y="{middle:.1f}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
        )
        if bar.value is None:
            parts.append(
                f'<text class="unknown" x="{plot.left + 4}" y="{middle:.1f}" opacity="0.7">'
                "unknown</text>"
            )
            continue
        width = plot.x(bar.value) - plot.left
        parts.append(
            f'<rect class="bar" data-value="{_number(bar.value)}" x="{plot.left}" '
            f'y="{y + 5}" width="{width:.1f}" height="{row - 10}" style="fill:{BAR_COLOUR}">'
            f"<title>{escape(bar.label)}: {_count(bar.value)}</title></rect>"
            f'<text x="{plot.left + width + 6:.1f}" y="{middle:.1f}">{_count(bar.value)}</text>'
        )
    return _svg(title, parts, height=height)


def percent(rate: float) -> str:
    """0.001 → '0.1%', 0.0025 → '0.25%', 0.02 → '2%'."""
    return f"{rate * 100:.3g}%"


# --- helpers -------------------------------------------------------------------------


class _Plot:
    """The plotting area of a chart and its scale: 0 at the axis, `top` at the far end."""

    def __init__(self, *, top: float, height: int = HEIGHT, left: int = LEFT) -> None:
        self.max = top
        self.left = left
        self.right = WIDTH - RIGHT
        self.top = TOP
        self.bottom = height - BOTTOM
        self.width = self.right - self.left

    def y(self, value: float) -> float:
        return self.bottom - (self.bottom - self.top) * min(value, self.max) / self.max

    def x(self, value: float) -> float:
        return self.left + self.width * min(value, self.max) / self.max

    def ticks(self) -> list[float]:
        return [self.max * i / 4 for i in range(5)]

    def y_grid(self, label: Callable[[float], str]) -> list[str]:
        return [
            f'<line x1="{self.left}" x2="{self.right}" y1="{self.y(v):.1f}" y2="{self.y(v):.1f}" '
            f'stroke="currentColor" stroke-opacity="{GRID_OPACITY}"/>'
            f'<text x="{self.left - 6}" y="{self.y(v) + 4:.1f}" text-anchor="end">'
            f"{label(v)}</text>"
            for v in self.ticks()
        ]

    def x_grid(self, label: Callable[[float], str]) -> list[str]:
        return [
            f'<line x1="{self.x(v):.1f}" x2="{self.x(v):.1f}" y1="{self.top}" y2="{self.bottom}" '
            f'stroke="currentColor" stroke-opacity="{GRID_OPACITY}"/>'
            f'<text x="{self.x(v):.1f}" y="{self.bottom + 16}" text-anchor="middle">'
            f"{label(v)}</text>"
            for v in self.ticks()
        ]

    def axes(self, *, x_label: str, y_label: str) -> list[str]:
        middle = (self.top + self.bottom) / 2
        return [
            f'<line x1="{self.left}" x2="{self.right}" y1="{self.bottom}" y2="{self.bottom}" '
            'stroke="currentColor"/>',
            f'<text class="axis-label" x="{self.left + self.width / 2:.1f}" '
            f'y="{self.bottom + 44}" text-anchor="middle">{escape(x_label)}</text>',
            f'<text class="axis-label" x="16" y="{middle:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 16 {middle:.1f})">{escape(y_label)}</text>',
        ]

    def x_tick(self, x: float, text: str) -> str:
        return (
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.bottom}" y2="{self.bottom + 4}" '
            'stroke="currentColor"/>'
            f'<text x="{x:.1f}" y="{self.bottom + 18}" text-anchor="middle">{escape(text)}</text>'
        )

    def empty(self, text: str) -> str:
        return (
            f'<text x="{self.left + self.width / 2:.1f}" y="{self.top + 24}" '
            f'text-anchor="middle" opacity="0.7">{escape(text)}</text>'
        )


def _svg(title: str, parts: list[str], *, height: int = HEIGHT) -> Markup:
    safe_title = escape(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{safe_title}" font-size="{FONT}" '
        'font-family="inherit" fill="currentColor">'
        f"<title>{safe_title}</title>"
        f'<text class="chart-title" x="{LEFT}" y="22" font-size="15" font-weight="600">'
        f"{safe_title}</text>" + "".join(parts) + "</svg>"
    )


def _nice_top(value: float, *, whole: bool) -> float:
    """The top of the axis: above value, with four round steps (counts: whole steps)."""
    if value <= 0:
        return 4.0 if whole else 1.0
    raw_step = value / 4
    magnitude = 10.0 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    if whole:
        step = max(1.0, float(math.ceil(step)))
    return step * 4


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))
