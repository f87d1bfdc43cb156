"""The reference platform's HTML pages: the run list, one run's page, and the sign-in answer.

This module shapes the data (progress calls into points, the summary into tables, criteria
and results into words); :mod:`~locust_perfx.reference.charts` draws the charts and the Jinja
templates in ``templates/`` lay the pages out. Everything a client sent (run ids, arguments,
reasons, request names) goes through Jinja's autoescape.

>>> history = [{"at": "2026-11-23T10:00:10Z", "rps": 5}, {"at": "2026-11-23T10:00:20Z", "rps": 8}]
>>> series(history, "rps", origin=parse_timestamp("2026-11-23T10:00:00Z").timestamp())
[(10.0, 5.0), (20.0, 8.0)]
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, Template
from markupsafe import Markup

from locust_perfx.reference.charts import (
    FAILURES,
    METRICS,
    NO_PROGRESS,
    P95,
    RPS,
    Metric,
    Point,
    chart_svg,
    format_value,
    sparkline_svg,
)
from locust_perfx.reference.contract import parse_timestamp
from locust_perfx.reference.store import JSON, utc_iso

#: Seconds between reloads of a page that shows a running run.
REFRESH = 10
#: The realm of the HTTP Basic challenge the pages answer with when the platform has a token.
REALM = "perfx platform"

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


# -- the baseline drawn over the run's charts ----------------------------------------------


@dataclass(frozen=True)
class Overlay:
    """The baseline run's per-interval RPS and p95, to draw dashed over the run's charts."""

    run_id: str
    """The baseline run, or ``""`` when the run has none."""
    lines: Mapping[str, list[Point]]
    """Points by the field of the chart they go on (``rps``, ``p95_ms``); empty: none drawn."""
    note: str
    """What the page says about it: what is drawn, or why nothing is."""


def baseline_id(run: JSON) -> str:
    """The run the page draws under this one: the one the plugin compared it with (its
    ``summary.baseline``), else the run's, else its endpoint's ``baseline_run_id``."""
    summary = run.get("summary")
    table = summary.get("baseline") if isinstance(summary, dict) else None
    if isinstance(table, dict):  # compared, or told there was no baseline yet
        return str(table.get("baseline_run_id") or "")
    endpoint = run.get("endpoint")
    mine = run.get("baseline_run_id")
    theirs = endpoint.get("baseline_run_id") if isinstance(endpoint, dict) else None
    return str(mine or theirs or "")


def baseline_points(summary: Any, metric: Metric) -> list[Point]:
    """The baseline's whole-run ``series`` (openapi.yaml ``Series``) as points at the end of
    each kept interval, in seconds since its start: requests per second, or the interval's
    p95 (None, a gap, where it had no request). ``[]`` without a usable series.

    >>> summary = {"total": {"series": {"interval_s": 5, "stride": 2, "requests": [50, 60],
    ...            "failures": [0, 0], "p95_ms": [120, None]}}}
    >>> baseline_points(summary, RPS), baseline_points(summary, P95)
    ([(5.0, 10.0), (15.0, 12.0)], [(5.0, 120.0), (15.0, None)])
    """
    total = summary.get("total") if isinstance(summary, dict) else None
    series = total.get("series") if isinstance(total, dict) else None
    if not isinstance(series, dict):
        return []
    seconds, stride = _value(series.get("interval_s"), 1.0), _value(series.get("stride"), 1.0)
    if not seconds or seconds <= 0 or not stride or stride < 1:
        return []
    raw = series.get("requests" if metric is RPS else "p95_ms")
    if not isinstance(raw, list):
        return []
    scale = 1.0 / seconds if metric is RPS else 1.0
    # Kept interval k stands for interval k * stride of the run (series.py thins that way).
    return [((k * stride + 1) * seconds, _value(v, scale)) for k, v in enumerate(raw)]


def overlay(baseline_run_id: str, baseline: JSON | None) -> Overlay:
    """What the run page draws of ``baseline`` (the run ``baseline_run_id``, None when the
    platform does not have it) and what it says about it."""
    if not baseline_run_id:
        return Overlay("", {}, "No baseline run: nothing is drawn over the charts.")
    where = f"Baseline run {baseline_run_id}"
    if baseline is None:
        return Overlay(baseline_run_id, {}, f"{where} is not on this platform: nothing drawn.")
    summary = baseline.get("summary")
    drawn = {metric.field: baseline_points(summary, metric) for metric in (RPS, P95)}
    lines = {k: v for k, v in drawn.items() if any(value is not None for _, value in v)}
    if not lines:
        return Overlay(
            baseline_run_id,
            {},
            f"{where} has no per-interval series in its summary (not finished, or sent by "
            "an older plugin): nothing drawn.",
        )
    return Overlay(
        baseline_run_id,
        lines,
        f"Dashed: baseline run {baseline_run_id}, each of its intervals by time since its "
        "start (requests per second and the interval's p95).",
    )


# -- what the pages show ------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """One chart of the run page, with the readings its caption shows."""

    metric: Metric
    svg: Markup
    last: str
    peak: str


def charts(run: JSON, history: Sequence[JSON], drawn_under: Overlay | None = None) -> list[Chart]:
    """The run page's charts, over time since the run started (none without progress); a
    chart whose metric the progress calls do not carry says so (older plugins send no
    ``p95_ms``). ``drawn_under``: the baseline's lines, drawn dashed on their charts."""
    lines = {} if drawn_under is None else drawn_under.lines
    label = f"baseline {drawn_under.run_id}" if drawn_under is not None else ""
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
                svg=chart_svg(
                    points,
                    metric,
                    end=end,
                    empty=empty,
                    baseline=lines.get(metric.field, ()),
                    baseline_label=label,
                ),
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
    baseline: list[str]
    """The comparison with a baseline run (``summary.baseline``): its headline lines."""
    baseline_rows: list[list[str]]
    """Its table: name, metric, baseline, current, change, p, verdict."""


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
            ("loop", "the load generator's event loop"),
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
        **_baseline_view(summary.get("baseline")),
    )


def _baseline_view(table: Any) -> dict[str, Any]:
    """``summary.baseline`` (openapi.yaml ``BaselineTable``) as headline lines and rows."""
    if not isinstance(table, dict):
        return {"baseline": [], "baseline_rows": []}
    run_id = table.get("baseline_run_id")
    head = [f"Compared with baseline run {run_id}" if run_id else "Not compared: no baseline"]
    if table.get("judged"):
        worst = table.get("worst")
        head.append(f"worst regression: {worst}" if worst else "no regression")
    head += [str(note) for note in table.get("notes") or () if note]
    rows = [row for row in table.get("rows") or () if isinstance(row, dict)]
    return {
        "baseline": head,
        "baseline_rows": [
            [
                cell(row.get("name")),
                cell(row.get("metric")),
                measure(str(row.get("metric")), row.get("baseline")),
                measure(str(row.get("metric")), row.get("current")),
                _change(row),
                cell(None if row.get("p") is None else round(float(row["p"]), 3)),
                cell(row.get("verdict")),
            ]
            for row in rows
        ],
    }


def _change(row: Mapping[str, Any]) -> str:
    ratio, delta = row.get("delta_ratio"), row.get("delta")
    if row.get("metric") != "failure_ratio" and isinstance(ratio, int | float):
        return f"{ratio * 100:+.0f}%"
    return f"{delta:+.4g}" if isinstance(delta, int | float) else cell(None)


def _load(locust: Any) -> str:
    """What the load generator said it started, in one line."""
    if not isinstance(locust, dict):
        return ""
    return ", ".join(f"{key} {cell(value)}" for key, value in locust.items())


@cache
def _templates() -> Environment:
    # Built on first use, not on import: importing the package does nothing.
    env = Environment(
        loader=PackageLoader("locust_perfx.reference"),
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
    return _template("list.html").render(
        runs=runs, sparks=sparks, home="./", refresh=REFRESH if running else None
    )


def run_page(run: JSON, history: Sequence[JSON], baseline: Overlay | None = None) -> str:
    """``/runs/ID``: the run, its charts over time (``baseline`` drawn under them),
    arguments, criteria and summary."""
    baseline = baseline or overlay("", None)
    return _template("run.html").render(
        run=run,
        load=_load(run.get("locust")),
        progress_calls=len(history),
        no_progress=NO_PROGRESS,
        charts=charts(run, history, baseline),
        overlay=baseline,
        criteria=criteria_of(run),
        results=results_of(run),
        summary=summary_view(run.get("summary")),
        home="../",
        refresh=REFRESH if run["status"] == "running" else None,
    )


def not_found_page(message: str, home: str) -> str:
    return _template("missing.html").render(message=message, home=home)


def sign_in_page(home: str) -> str:
    """The body of the 401 a page answers without the token: how to give it, never it."""
    return _template("sign_in.html").render(home=home)
