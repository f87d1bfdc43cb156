"""The run page's charts as inline SVG: points in, markup out.

Inline SVG needs no JavaScript and nothing from a CDN (a platform often runs where the
internet is out of reach). The functions are pure; the SVG holds numbers and this module's
own words, escaped.

>>> "<polyline" in chart_svg([(10.0, 5.0), (20.0, 8.0)], RPS)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import median

from markupsafe import Markup, escape

Point = tuple[float, float | None]
"""Seconds since the run started, and the value then (None: not reported, drawn as a gap)."""

#: Most points a chart draws: more are thinned to each bucket's peak, so a spike stays visible.
MAX_CHART_POINTS = 400
MAX_SPARK_POINTS = 60
#: A pause between two progress calls longer than this many typical intervals breaks the line.
GAP_FACTOR = 3.0
NO_PROGRESS = "no progress reported yet"
# Steps of the time axis, in seconds: round to a person reading a clock.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_DAY = 86400.0


@dataclass(frozen=True)
class Metric:
    """One charted field of the progress body (openapi.yaml ``ProgressRequest``)."""

    field: str
    title: str
    unit: str
    scale: float = 1.0
    """Multiplies the reported value: a failure ratio is charted in percent."""


USERS = Metric("users", "Users", "users")
RPS = Metric("rps", "Requests per second", "req/s")
FAILURES = Metric("fail_ratio", "Failure ratio per interval", "%", 100.0)
P95 = Metric("p95_ms", "95th percentile response time", "ms")
METRICS = (USERS, RPS, FAILURES, P95)


def segments(points: Sequence[Point]) -> list[list[tuple[float, float]]]:
    """The stretches a line joins: broken at every missing value and at every pause longer
    than :data:`GAP_FACTOR` typical intervals (the load generator, or the network, was gone).
    """
    steps = [b[0] - a[0] for a, b in pairwise(points) if b[0] > a[0]]
    gap = GAP_FACTOR * median(steps) if len(steps) >= 2 else math.inf
    stretches: list[list[tuple[float, float]]] = [[]]
    last: float | None = None
    for at, value in points:
        broken = value is None or (last is not None and at - last > gap)
        if broken and stretches[-1]:
            stretches.append([])
        if value is not None:
            stretches[-1].append((at, value))
        last = at
    return [stretch for stretch in stretches if stretch]


def thin(points: Sequence[Point], limit: int) -> list[Point]:
    """At most ``limit`` points: each bucket of neighbours keeps its peak (a bucket with no
    value stays a gap), because the spike is what a person looks for."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / limit)
    kept: list[Point] = []
    for i in range(0, len(points), size):
        bucket = points[i : i + size]
        known = [point for point in bucket if point[1] is not None]
        kept.append(max(known, key=lambda point: point[1] or 0.0) if known else bucket[0])
    return kept


# -- axes ---------------------------------------------------------------------------------


def _round_up(x: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``x`` (> 0)."""
    base = 10.0 ** math.floor(math.log10(x))
    return next(m * base for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * base >= x)


def value_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Gridlines from 0 (or below, for negative values) to a round number at or above
    ``high``, about ``count`` even steps apart. Zeros only still get an axis (0 to 1)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1.0
    step = _round_up((high - low) / count)
    first, last = math.floor(low / step) * step, math.ceil(high / step) * step
    if not math.isfinite(last - first):  # near the largest float: no room to round up
        return [low, high]
    return [first + i * step for i in range(round((last - first) / step) + 1)]


def time_ticks(start: float, end: float, most: int = 6) -> list[float]:
    """Marks on the time axis at a clock-round step, at most ``most`` + 1 of them."""
    span = end - start
    step = next((float(s) for s in _TIME_STEPS if span / s <= most), 0.0)
    if not step:
        step = _DAY * _round_up(span / _DAY / most)
    first = math.ceil(start / step)
    return [i * step for i in range(first, math.floor(end / step) + 1)]


def format_value(value: float) -> str:
    """A tick or reading in at most 3 significant digits: ``0.25``, ``250``, ``1.5k``, ``2M``."""
    size = abs(value)
    if size >= 1e15:
        return f"{value:.2g}"
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return _three_digits(value / limit) + suffix
    return _three_digits(value)


def _three_digits(value: float) -> str:
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_seconds(seconds: float) -> str:
    """A time since the start as a clock reads: ``45s``, ``2m30s``, ``1h05m``."""
    sign, left = ("-" if seconds < 0 else ""), round(abs(seconds))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s" if secs else f"{sign}{minutes}m"
    return f"{sign}{secs}s"


# -- drawing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """Where a plot sits in its SVG and the values its edges stand for."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, at: float) -> float:
        return self.left + (at - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, value: float) -> float:
        share = (value - self.y0) / (self.y1 - self.y0)
        return self.top + self.height * (1.0 - min(max(share, 0.0), 1.0))


def _lines(frame: _Frame, points: Sequence[Point], css: str = "line") -> list[str]:
    """A polyline per stretch, and a dot for a stretch of one point (a line needs two)."""
    shapes = []
    dashes, dot = (_DASHES, "baseline-point") if css == "baseline" else ("", "point")
    for stretch in segments(points):
        coords = [(frame.x(at), frame.y(value)) for at, value in stretch]
        if len(coords) == 1:
            ((x, y),) = coords
            shapes.append(f'<circle class="{dot}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>')
        else:
            joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            shapes.append(f'<polyline class="{css}"{dashes} points="{joined}"/>')
    return shapes


# The baseline's line is dashed by its own attribute, not only by the page's style sheet: an
# SVG saved from the page, or read without styles, still tells the two lines apart.
_DASHES = ' stroke-dasharray="6 4"'


def _legend(frame: _Frame, label: str) -> list[str]:
    """Top right, inside the plot: a solid sample for the run, a dashed one for the baseline."""
    right, y = frame.left + frame.width - 4, frame.top + 10
    entries = []
    for css, text, dy in (("line", "this run", 0), ("baseline", label, 14)):
        dashes = _DASHES if css == "baseline" else ""
        entries.append(
            f'<line class="{css}"{dashes} x1="{right - 22:.1f}" x2="{right:.1f}"'
            f' y1="{y + dy - 4:.1f}" y2="{y + dy - 4:.1f}"/>'
            f'<text class="legend" x="{right - 26:.1f}" y="{y + dy:.1f}" text-anchor="end">'
            f"{escape(text)}</text>"
        )
    return [f'<g class="legend">{"".join(entries)}</g>']


def _svg(css: str, size: tuple[int, int], label: str, metric: Metric, body: list[str]) -> Markup:
    width, height = size
    return Markup(
        f'<svg class="{css}" data-metric="{escape(metric.field)}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


CHART_SIZE = (480, 200)
_MARGIN = (50, 12, 22, 26)  # left, right, top, bottom: room for the unit and tick labels


def chart_svg(
    points: Sequence[Point],
    metric: Metric,
    *,
    end: float | None = None,
    empty: str = NO_PROGRESS,
    baseline: Sequence[Point] = (),
    baseline_label: str = "baseline",
) -> Markup:
    """A line chart of ``points`` with a labelled time axis and value axis, as inline SVG.

    ``end`` (seconds) stretches the time axis to the run's end, so a run that went silent
    shows the silence; ``empty`` is written across a chart with no value to draw.
    ``baseline`` is drawn under the run as a dashed line, with a legend, over the run's own
    time span only: a longer baseline would squeeze the run into a corner of its chart.
    """
    width, height = CHART_SIZE
    left, right, top, bottom = _MARGIN
    points = thin(points, MAX_CHART_POINTS)
    values = [value for _, value in points if value is not None]
    if not values:
        note = (
            f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
            f"{escape(empty)}</text>"
        )
        return _svg("chart", CHART_SIZE, f"{metric.title}: {empty}", metric, [note])
    x0 = min(0.0, points[0][0])
    x1 = max(points[-1][0], end or 0.0, x0 + 1.0)
    under = thin([point for point in baseline if x0 <= point[0] <= x1], MAX_CHART_POINTS)
    both = values + [value for _, value in under if value is not None]
    ys = value_ticks(min(both), max(both))
    frame = _Frame(left, top, width - left - right, height - top - bottom, x0, x1, ys[0], ys[-1])
    body = []
    for tick in ys:
        y = frame.y(tick)
        body.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        body.append(
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{format_value(tick)}</text>"
        )
    base = top + frame.height
    body.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}"/>')
    for tick in time_ticks(x0, x1):
        x = frame.x(tick)
        body.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}"/>')
        body.append(
            f'<text class="tick" x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
            f"{format_seconds(tick)}</text>"
        )
    body.append(
        f'<text class="unit" x="{left - 6}" y="12" text-anchor="end">{escape(metric.unit)}</text>'
    )
    if under:
        body += _lines(frame, under, "baseline")
    body += _lines(frame, points)
    label = f"{metric.title} ({metric.unit}) since the start, peak {format_value(max(values))}"
    if under:
        body += _legend(frame, baseline_label)
        label += f", drawn over the {baseline_label}'s (dashed)"
    return _svg("chart", CHART_SIZE, label, metric, body)


SPARK_SIZE = (120, 28)


def sparkline_svg(points: Sequence[Point], metric: Metric = RPS) -> Markup:
    """A small line of ``points`` for the run list, from 0 to the peak; no axes."""
    points = thin(points, MAX_SPARK_POINTS)
    values = [value for _, value in points if value is not None]
    if not values:
        return Markup('<span class="muted">no progress</span>')
    width, height = SPARK_SIZE
    peak = max(max(values), 0.0) or 1.0
    x0, x1 = points[0][0], max(points[-1][0], points[0][0] + 1.0)
    frame = _Frame(2, 2, width - 4, height - 4, x0, x1, min(0.0, min(values)), peak)
    label = f"{metric.title}: peak {format_value(max(values))} {metric.unit}"
    return _svg("spark", SPARK_SIZE, label, metric, _lines(frame, points))
