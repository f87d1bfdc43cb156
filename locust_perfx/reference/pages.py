"""The reference platform's HTML pages: the run list, one run's page, and the sign-in answer.

Charts are inline SVG drawn here from the progress calls, so the pages need no JavaScript
and nothing from a CDN (a platform often runs where the internet is out of reach). The
drawing functions are pure: points in, markup out. Everything a client sent (run ids,
arguments, reasons, request names) goes through Jinja's autoescape; the SVG holds numbers
and this module's own words, escaped too.

>>> history = [{"at": "2026-11-23T10:00:10Z", "rps": 5}, {"at": "2026-11-23T10:00:20Z", "rps": 8}]
>>> series(history, "rps", origin=parse_timestamp("2026-11-23T10:00:00Z").timestamp())
[(10.0, 5.0), (20.0, 8.0)]
>>> "<polyline" in chart_svg([(10.0, 5.0), (20.0, 8.0)], RPS)
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from statistics import median
from typing import Any

from jinja2 import DictLoader, Environment, Template
from markupsafe import Markup, escape

from locust_perfx.reference.contract import parse_timestamp
from locust_perfx.reference.store import JSON, utc_iso

Point = tuple[float, float | None]
"""Seconds since the run started, and the value then (None: not reported, drawn as a gap)."""

#: Most points a chart draws: more are thinned to each bucket's peak, so a spike stays visible.
MAX_CHART_POINTS = 400
MAX_SPARK_POINTS = 60
#: A pause between two progress calls longer than this many typical intervals breaks the line.
GAP_FACTOR = 3.0
#: Seconds between reloads of a page that shows a running run.
REFRESH = 10
NO_PROGRESS = "no progress reported yet"
#: The realm of the HTTP Basic challenge the pages answer with when the platform has a token.
REALM = "perfx platform"
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

# The per-request columns of the summary (openapi.yaml ``Totals``), with their headings.
_REQUEST_COLUMNS = (
    ("requests", "requests"),
    ("failures", "failures"),
    ("failure_ratio", "failure ratio"),
    ("rps", "req/s"),
    ("avg_ms", "avg ms"),
    ("min_ms", "min ms"),
    ("median_ms", "median ms"),
    ("p90_ms", "p90 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("bytes", "bytes"),
)


# -- criteria and results, worded for people (the run page and ``perfx-platform show``) ----


@dataclass(frozen=True)
class ResultLine:
    """One criterion's result, worded for people: the run page and ``perfx-platform show``."""

    verdict: str
    """``passed`` or ``BREACHED``."""
    criterion: str
    observed: str
    limit: str
    source: str
    """Where the criterion came from, or ``""`` when the summary does not say."""
    first_breach: str
    """When it was first breached (UTC), or ``""``."""

    def __str__(self) -> str:
        parts = [
            f"{self.verdict:<8}  {self.criterion}: observed {self.observed}",
            f"limit {self.limit}",
        ]
        if self.source:
            parts.append(f"from {self.source}")
        if self.first_breach:
            parts.append(f"first breached at {self.first_breach}")
        return ", ".join(parts)


def criteria_of(run: JSON) -> list[tuple[str, str]]:
    """The criteria the platform holds for a run, as (whose, criterion): the endpoint's, then
    the run's own. Objects are shown as stored: judging them is the plugin's job."""
    return [
        (whose, item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
        for whose, items in (
            (f"endpoint {run['endpoint']['name']}", run["endpoint"].get("thresholds")),
            (f"run {run['id']}", run.get("thresholds")),
        )
        for item in items or ()
    ]


def results_of(run: JSON) -> list[ResultLine]:
    """How each criterion stood at the end, from the summary the plugin sent (none before)."""
    summary = run["summary"] if isinstance(run["summary"], dict) else {}
    return [
        ResultLine(
            verdict="passed" if result["passed"] else "BREACHED",
            criterion=result["criterion"],
            observed="no requests" if result["observed"] is None else _number(result["observed"]),
            limit=_number(result["limit"]),
            source=result.get("source", ""),
            first_breach=_moment(result.get("first_breach_at")),
        )
        for result in summary.get("thresholds", ())
    ]


def _number(value: float) -> str:
    # Counts stay whole (12345678, not 1.23457e+07) up to where a float still holds every
    # integer; ratios, rates and anything larger keep 6 significant digits.
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.6g}"


def _moment(epoch: float | None) -> str:
    return "" if epoch is None else utc_iso(datetime.fromtimestamp(epoch, UTC))


# -- series: the progress calls as points over time ---------------------------------------


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_timestamp(text).timestamp()
    except (ValueError, OverflowError):
        return None


def _value(raw: Any, scale: float) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:  # JSON integers have no size limit; a float does
        value = float(raw) * scale
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def series(
    history: Iterable[JSON], field: str, *, origin: float | None = None, scale: float = 1.0
) -> list[Point]:
    """One field of the progress bodies as points: (seconds since ``origin``, value).

    ``origin`` is the run's start in epoch seconds, or the first body's time when None.
    Points follow each body's own ``at`` (a retried call may arrive late); a value that is
    missing or not a number is None.
    """
    timed = sorted(
        ((at, body) for body in history if (at := _epoch(body.get("at"))) is not None),
        key=lambda pair: pair[0],
    )
    if not timed:
        return []
    start = timed[0][0] if origin is None else origin
    return [(at - start, _value(body.get(field), scale)) for at, body in timed]


def interval_failure_ratio(history: Iterable[JSON], *, origin: float | None = None) -> list[Point]:
    """Failures over requests between one progress call and the one before, in percent.

    A call's ``fail_ratio`` is the run's so far, which flattens a burst of errors late in a
    long run; the counts say when it happened. A call after a stats reset (its counts below
    the last) starts over; one without new requests has no ratio. Calls without the counts
    (an older client) are charted with their ``fail_ratio``.
    """
    history = list(history)
    requests = series(history, "requests", origin=origin)
    failures = series(history, "failures", origin=origin)
    counts = [
        (at, total, failed)
        for (at, total), (_, failed) in zip(requests, failures, strict=True)
        if total is not None and failed is not None
    ]
    if len(counts) < len(requests):
        return series(history, "fail_ratio", origin=origin, scale=FAILURES.scale)
    points: list[Point] = []
    before = (0.0, 0.0)
    for at, total, failed in counts:
        if total < before[0]:
            before = (0.0, 0.0)
        new = total - before[0]
        points.append((at, FAILURES.scale * (failed - before[1]) / new if new > 0 else None))
        before = (total, failed)
    return points


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


def _lines(frame: _Frame, points: Sequence[Point]) -> list[str]:
    """A polyline per stretch, and a dot for a stretch of one point (a line needs two)."""
    shapes = []
    for stretch in segments(points):
        coords = [(frame.x(at), frame.y(value)) for at, value in stretch]
        if len(coords) == 1:
            ((x, y),) = coords
            shapes.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3"/>')
        else:
            joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            shapes.append(f'<polyline class="line" points="{joined}"/>')
    return shapes


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
    points: Sequence[Point], metric: Metric, *, end: float | None = None, empty: str = NO_PROGRESS
) -> Markup:
    """A line chart of ``points`` with a labelled time axis and value axis, as inline SVG.

    ``end`` (seconds) stretches the time axis to the run's end, so a run that went silent
    shows the silence; ``empty`` is written across a chart with no value to draw.
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
    ys = value_ticks(min(values), max(values))
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
    body += _lines(frame, points)
    label = f"{metric.title} ({metric.unit}) since the start, peak {format_value(max(values))}"
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


# -- what the pages show ------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """One chart of the run page, with the readings its caption shows."""

    metric: Metric
    svg: Markup
    last: str
    peak: str


def charts(run: JSON, history: Sequence[JSON]) -> list[Chart]:
    """The run page's charts, over time since the run started (none without progress); a
    chart whose metric the progress calls do not carry says so (older plugins send no
    ``p95_ms``)."""
    if not history:
        return []
    origin = _epoch(run.get("started_at"))
    finished = _epoch(run.get("finished_at"))
    end = None if origin is None or finished is None else finished - origin
    drawn = []
    for metric in METRICS:
        if metric is FAILURES:
            points = interval_failure_ratio(history, origin=origin)
        else:
            points = series(history, metric.field, origin=origin, scale=metric.scale)
        values = [value for _, value in points if value is not None]
        empty = f"the progress calls carry no {metric.field}"
        drawn.append(
            Chart(
                metric=metric,
                svg=chart_svg(points, metric, end=end, empty=empty),
                last=format_value(values[-1]) if values else "",
                peak=format_value(max(values)) if values else "",
            )
        )
    return drawn


@dataclass(frozen=True)
class SummaryView:
    """The summary the plugin sent, taken apart for tables; any part may be missing."""

    error: str | None
    facts: list[tuple[str, str]]
    total: list[tuple[str, str]]
    columns: list[str]
    requests: list[list[str]]
    errors: list[list[str]]


def cell(value: Any) -> str:
    """A stored value as a table shows it: text as is, anything else as JSON, none a dash."""
    if value is None:
        return "\N{EN DASH}"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def measure(key: str, value: Any) -> str:
    """A summary field as a table shows it: response times in whole ms (an earlier plugin sent
    Locust's exact min/max, 5.371666999963054), the average with two decimals."""
    if key.endswith("_ms") and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2f}" if key == "avg_ms" else str(round(value))
    return cell(value)


def summary_view(summary: Any) -> SummaryView:
    """The parts of a summary (openapi.yaml ``Summary``) that are there and have the right
    shape; a summary the plugin could not build has only ``error``."""
    summary = summary if isinstance(summary, dict) else {}

    def rows(key: str) -> list[dict[str, Any]]:
        items = summary.get(key)
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    facts = [
        (label, cell(summary[key]))
        for key, label in (
            ("duration_s", "duration (s)"),
            ("users_peak", "peak users"),
            ("workers", "workers"),
            ("started_at", "started"),
            ("finished_at", "finished"),
            ("export", "live metrics export"),
        )
        if key in summary
    ]
    total = summary.get("total")
    if isinstance(total, dict):  # the comparison's raw material is no table cell
        total = {k: v for k, v in total.items() if k not in ("histogram", "series")}
    return SummaryView(
        error=str(summary["error"]) if summary.get("error") else None,
        facts=facts,
        total=[(key, measure(key, value)) for key, value in total.items()]
        if isinstance(total, dict)
        else [],
        columns=[heading for _, heading in _REQUEST_COLUMNS],
        requests=[
            [cell(item.get("method")), cell(item.get("name"))]
            + [measure(key, item.get(key)) for key, _ in _REQUEST_COLUMNS]
            for item in rows("requests")
        ],
        errors=[
            [cell(item.get(key)) for key in ("method", "name", "error", "occurrences")]
            for item in rows("errors")
        ],
    )


def _load(locust: Any) -> str:
    """What the load generator said it started, in one line."""
    if not isinstance(locust, dict):
        return ""
    return ", ".join(f"{key} {cell(value)}" for key, value in locust.items())


# -- templates ----------------------------------------------------------------------------

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}">{% endif %}
<title>{% block title %}{% endblock %} · perfx platform</title>
<style>
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2328;background:#f6f8fa}
header{background:#24292f;padding:10px 24px}header a{color:#fff;font-weight:600;
text-decoration:none}
main{max-width:1200px;margin:0 auto;padding:8px 24px 32px}
h1{font-size:22px;margin:16px 0 8px;word-break:break-all}h2{font-size:17px;margin:24px 0 6px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#eaeef2}tbody th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.wide{overflow-x:auto}.muted{color:#57606a}.nowrap{white-space:nowrap}
.status{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;
background:#eaeef2;color:#57606a}
.status-completed{background:#dafbe1;color:#116329}.status-failed{background:#ffebe9;color:#a40e26}
.status-running{background:#ddf4ff;color:#0550ae}
.reason{border-left:4px solid #a40e26;background:#fff;padding:6px 10px;margin:8px 0}
.verdict-BREACHED{color:#a40e26;font-weight:600}.verdict-passed{color:#116329}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 10px}
figcaption{font-weight:600}figcaption span{font-weight:400;color:#57606a;margin-left:8px}
svg.chart{display:block;width:100%;height:auto}
svg text{font-size:11px;fill:#57606a}svg text.empty{font-size:13px}svg text.unit{font-weight:600}
svg .grid{stroke:#eaeef2}svg .axis{stroke:#8c959f}
svg .line{fill:none;stroke:#0969da;stroke-width:1.6;stroke-linejoin:round}svg .point{fill:#0969da}
svg.spark{display:block;width:120px;height:28px}svg.spark .line{stroke-width:1.2}
td.reason-cell{max-width:360px}
</style></head>
<body><header><a href="{{ home }}">perfx platform</a></header>
<main>{% block main %}{% endblock %}</main></body></html>
"""

_LIST = """{% extends "base" %}{% block title %}runs{% endblock %}{% block main %}
<h1>Runs</h1>
{% if runs %}<div class="wide"><table>
<thead><tr><th>id</th><th>status</th><th>reason</th><th>RPS over time</th><th>endpoint</th>
<th>environment</th><th>created</th></tr></thead>
<tbody>
{% for run in runs %}<tr><td><a href="runs/{{ run.id | urlencode }}">{{ run.id }}</a></td>
<td><span class="status status-{{ run.status }}">{{ run.status }}</span></td>
<td class="reason-cell">{{ run.reason or "" }}</td><td>{{ sparks[run.id] }}</td>
<td>{{ run.endpoint.name }}</td><td>{{ run.environment.name }}</td>
<td class="nowrap">{{ run.created_at }}</td>
</tr>
{% endfor %}</tbody></table></div>
{% else %}<p>No runs yet: create one with <code>perfx-platform new-run</code>.</p>{% endif %}
{% endblock %}"""

_RUN = """{% extends "base" %}{% block title %}{{ run.id }}{% endblock %}{% block main %}
<h1>{{ run.id }} <span class="status status-{{ run.status }}">{{ run.status }}</span></h1>
{% if run.reason %}<p class="reason">{{ run.reason }}</p>{% endif %}
<table>
<tr><th>status</th><td>{{ run.status }}</td></tr>
<tr><th>endpoint</th><td>{{ run.endpoint.name }}</td></tr>
<tr><th>environment</th><td>{{ run.environment.name }} ({{ run.environment.host }})</td></tr>
<tr><th>host</th><td>{{ run.host or "" }}</td></tr>
{% if load %}<tr><th>load generator</th><td>{{ load }}</td></tr>{% endif %}
<tr><th>created</th><td>{{ run.created_at }}</td></tr>
<tr><th>started</th><td>{{ run.started_at or "" }}</td></tr>
<tr><th>finished</th><td>{{ run.finished_at or "" }}</td></tr>
{% if run.exit_code is not none %}<tr><th>exit code</th><td>{{ run.exit_code }}</td></tr>{% endif %}
</table>
<h2>Over time</h2>
{% if charts %}
<p class="muted">From the {{ progress_calls }} progress call{{ "" if progress_calls == 1 else "s" }}
received; time since the start.</p>
<div class="charts">
{% for chart in charts %}<figure class="chart-{{ chart.metric.field }}">
<figcaption>{{ chart.metric.title }}{% if chart.last %}<span>last {{ chart.last }}
{{ chart.metric.unit }}, peak {{ chart.peak }} {{ chart.metric.unit }}</span>{% endif %}
</figcaption>
{{ chart.svg }}</figure>
{% endfor %}</div>
{% else %}
<p>{{ no_progress | capitalize }}.</p>
{% endif %}
<h2>Arguments</h2>
{% if run.arguments is none %}<p>Not started yet.</p>
{% elif not run.arguments %}<p>No arguments.</p>
{% else %}<table>
{% for name, value in run.arguments.items() %}
<tr><th>{{ name }}</th><td>{{ value | cell }}</td></tr>
{% endfor %}</table>{% endif %}
{% if criteria or results %}<h2>Pass/fail criteria</h2>
{% if criteria %}<table>
<tr><th>of</th><th>criterion</th></tr>
{% for whose, criterion in criteria %}<tr><td>{{ whose }}</td><td>{{ criterion }}</td></tr>
{% endfor %}</table>{% endif %}
{% if results %}<h3>Results</h3>
<table>
<tr><th>result</th><th>criterion</th><th>observed</th><th>limit</th><th>from</th>
<th>first breach</th></tr>
{% for r in results %}<tr><td class="verdict-{{ r.verdict }}">{{ r.verdict }}</td>
<td>{{ r.criterion }}</td><td class="num">{{ r.observed }}</td><td class="num">{{ r.limit }}</td>
<td>{{ r.source }}</td><td>{{ r.first_breach }}</td></tr>
{% endfor %}</table>{% endif %}{% endif %}
<h2>Summary</h2>
{% if summary.error %}
<p class="reason">The load generator could not build the summary: {{ summary.error }}</p>
{% endif %}
{% if summary.facts %}<table>
{% for label, value in summary.facts %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>{% endif %}
{% if summary.total %}<h3>All requests</h3><table>
{% for name, value in summary.total %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>{% endif %}
{% if summary.requests %}<h3>Per request name</h3>
<div class="wide"><table class="requests">
<thead><tr><th>method</th><th>name</th>{% for heading in summary.columns %}<th>{{ heading }}</th>
{% endfor %}</tr></thead><tbody>
{% for row in summary.requests %}<tr><td>{{ row[0] }}</td><td>{{ row[1] }}</td>
{% for value in row[2:] %}<td class="num">{{ value }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>{% endif %}
{% if summary.errors %}<h3>Most frequent errors</h3>
<div class="wide"><table class="errors">
<thead><tr><th>method</th><th>name</th><th>error</th><th>occurrences</th></tr></thead><tbody>
{% for row in summary.errors %}<tr><td>{{ row[0] }}</td><td>{{ row[1] }}</td><td>{{ row[2] }}</td>
<td class="num">{{ row[3] }}</td></tr>
{% endfor %}</tbody></table></div>{% endif %}
{% if not (summary.error or summary.facts or summary.total or summary.requests) %}
<p>No summary{% if run.status in ("pending", "running") %} yet: it comes with the final
status{% endif %}.</p>{% endif %}
{% endblock %}"""

_MISSING = """{% extends "base" %}{% block title %}not found{% endblock %}{% block main %}
<h1>Not found</h1><p>{{ message }}</p>{% endblock %}"""

_SIGN_IN = """{% extends "base" %}{% block title %}sign in{% endblock %}{% block main %}
<h1>Sign in</h1>
<p>This platform needs its token. Your browser asks for it: any user name, and the token as
the password.</p>
<p>From a script, send it as HTTP Basic credentials (<code>curl -u :$PERFX_PLATFORM_TOKEN
URL</code>) or as the API's header (<code>Authorization: Bearer TOKEN</code>).</p>
{% endblock %}"""


@cache
def _templates() -> Environment:
    # Built on first use, not on import: importing the package does nothing.
    env = Environment(
        loader=DictLoader(
            {"base": _BASE, "list": _LIST, "run": _RUN, "missing": _MISSING, "sign_in": _SIGN_IN}
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = cell
    return env


def _template(name: str) -> Template:
    return _templates().get_template(name)


def run_list_page(runs: Sequence[JSON], progress: Mapping[str, Sequence[JSON]]) -> str:
    """``/``: every run with its status, reason and an RPS sparkline; reloads while one runs."""
    sparks = {
        run["id"]: sparkline_svg(series(progress.get(run["id"], ()), RPS.field)) for run in runs
    }
    running = any(run["status"] == "running" for run in runs)
    return _template("list").render(
        runs=runs, sparks=sparks, home="./", refresh=REFRESH if running else None
    )


def run_page(run: JSON, history: Sequence[JSON]) -> str:
    """``/runs/ID``: the run, its charts over time, arguments, criteria and summary."""
    return _template("run").render(
        run=run,
        load=_load(run.get("locust")),
        progress_calls=len(history),
        no_progress=NO_PROGRESS,
        charts=charts(run, history),
        criteria=criteria_of(run),
        results=results_of(run),
        summary=summary_view(run.get("summary")),
        home="../",
        refresh=REFRESH if run["status"] == "running" else None,
    )


def not_found_page(message: str, home: str) -> str:
    return _template("missing").render(message=message, home=home)


def sign_in_page(home: str) -> str:
    """The body of the 401 a page answers without the token: how to give it, never it."""
    return _template("sign_in").render(home=home)
