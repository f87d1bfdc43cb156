"""Compare a run with a baseline run, per request name, knowing the run-to-run noise.

Two run summaries in (the baseline's as the platform stored it, and the current one), one
:class:`Comparison` out: per name and metric the baseline and current whole-run values,
the change, a significance ``p`` and a verdict. Pure: no Locust, no I/O.

**The test.** Each summary carries, per name, the run's per-interval series (requests,
failures and p95 of every interval, see :mod:`locust_perfx.snapshot`). A metric's
per-interval values of the two runs are compared with the two-sided Mann-Whitney U test
(normal approximation with tie and continuity corrections, as ``scipy.stats.mannwhitneyu``
with ``method="asymptotic"``). Why this test:

- the unit of noise is the interval, not the request: requests of one run are not
  independent (a GC pause, a busy neighbour or a warm cache slows many at once), so a test
  over requests (a bootstrap over the histogram) finds a 2% shift "significant" in any long
  run, and an A/A comparison fails far more often than the confidence level says; the spread
  of a run's own intervals is the closest measure of what a second identical run would do;
- it is rank-based: no assumption on the shape of latency (long tails, Locust's
  two-significant-digit buckets, hence many ties: the tie correction matters);
- it is exact arithmetic in a dozen lines (``math.erfc``): no scipy dependency.

**A regression** is a change past the limit (whole-run values: e.g. p95 more than 10% over
the baseline's) *and* significant (``p < 1 - confidence``, default 95% confidence). A change
past the limit that cannot be tested (a baseline without series, too few intervals) is
``untested``, never a failure; names in only one run are ``new`` or ``gone``.

**Limits of the method.** Intervals are autocorrelated (a slow minute makes two slow
intervals), which makes the test somewhat optimistic; the limit is the guard against
flagging a real but harmless change. It compares what the two runs measured: a change in
load (users, rate, mix) is a change too, and it cannot tell the target's fault from the
load generator's. p95 per interval needs enough requests per interval to mean something
(about 20); a name with a handful of requests per interval compares noisily.

>>> base = {"requests": [{"method": "GET", "name": "/", "p95_ms": 100, "rps": 10,
...          "failure_ratio": 0, "series": {"interval_s": 1, "requests": [10] * 9,
...          "failures": [0] * 9, "p95_ms": [100, 98, 99, 101, 100, 102, 97, 100, 99]}}]}
>>> slower = {"requests": [{"method": "GET", "name": "/", "p95_ms": 131, "rps": 10,
...          "failure_ratio": 0, "series": {"interval_s": 1, "requests": [10] * 9,
...          "failures": [0] * 9, "p95_ms": [131, 128, 133, 130, 129, 135, 131, 127, 132]}}]}
>>> row = compare(base, slower).row("GET /", "p95_ms")
>>> row.verdict, row.reason
('regression', 'p95_ms for GET /: 131 vs baseline 100 ms (+31%, p<0.001)')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

DEFAULT_CONFIDENCE: Final = 0.95
MIN_INTERVALS: Final = 5
"""Fewer intervals than this on either side: no significance test (two-sided, 4 vs 4
intervals cannot reach p < 0.05 even when every value moved)."""
TOTAL: Final = "Aggregated"
"""The name of the whole run's row, as Locust names its total."""

Direction = Literal["up", "down"]
Verdict = Literal["regression", "improvement", "unchanged", "untested", "new", "gone"]


@dataclass(frozen=True)
class Limit:
    """How far a metric may move from the baseline before it counts: ``baseline + 10%``
    is ``Limit("p95_ms", 0.10, relative=True)``; ``worse`` is the harmful direction."""

    metric: str
    amount: float
    relative: bool = True
    worse: Direction = "up"

    def allowed(self, baseline: float) -> float:
        """The furthest value in the harmful direction that still passes."""
        step = baseline * self.amount if self.relative else self.amount
        return baseline + step if self.worse == "up" else baseline - step

    def passed_by(self, baseline: float, current: float) -> Direction | None:
        """Which way ``current`` is past the limit around ``baseline`` (``None``: within)."""
        step = abs(self.allowed(baseline) - baseline)
        if current > baseline + step:
            return "up"
        if current < baseline - step:
            return "down"
        return None

    @property
    def text(self) -> str:
        sign = "+" if self.worse == "up" else "-"
        amount = f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"
        return f"baseline {sign} {amount}"


DEFAULT_LIMITS: Final = (
    Limit("p95_ms", 0.10, worse="up"),
    Limit("rps", 0.05, worse="down"),
    Limit("failure_ratio", 0.01, relative=False, worse="up"),
)
"""What ``perfx compare`` judges when no criterion says otherwise."""
METRICS: Final = tuple(limit.metric for limit in DEFAULT_LIMITS)
"""The metrics the per-interval series can test."""
_UNITS: Final = {"p95_ms": " ms", "rps": " req/s", "failure_ratio": ""}


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``(U, p)``: the Mann-Whitney U of ``x`` (pairs with ``x > y``, ties counting half)
    and the two-sided p value, by the normal approximation with tie and continuity
    corrections.

    >>> u, p = mann_whitney([19, 22, 16, 29, 24], [20, 11, 17, 12])
    >>> u, round(p, 6)
    (17.0, 0.111347)
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("both samples need at least one value")
    pooled = sorted([*x, *y])
    n = n1 + n2
    rank: dict[float, float] = {}
    ties = 0.0
    start = 0
    while start < n:  # equal values share the mean of their ranks
        end = start
        while end + 1 < n and pooled[end + 1] == pooled[start]:
            end += 1
        rank[pooled[start]] = (start + end) / 2 + 1
        t = end - start + 1
        ties += t**3 - t
        start = end + 1
    u = sum(rank[v] for v in x) - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every value equal: nothing moved
        return u, 1.0
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(variance)
    return u, min(1.0, math.erfc(z / math.sqrt(2)))


@dataclass(frozen=True)
class Row:
    """One name and metric compared; ``delta`` is ``current - baseline``."""

    name: str
    metric: str
    baseline: float | None
    current: float | None
    verdict: Verdict
    p: float | None = None
    limit: Limit | None = None
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def delta_ratio(self) -> float | None:
        """The change relative to the baseline; ``None`` from a baseline of 0."""
        if self.delta is None or not self.baseline:
            return None
        return self.delta / self.baseline

    @property
    def reason(self) -> str:
        """``p95_ms for GET /search: 131 vs baseline 100 ms (+31%, p=0.002)``."""
        unit = _UNITS.get(self.metric, "")
        head = f"{self.metric} for {self.name}"
        if self.verdict in ("new", "gone"):
            return f"{head}: {self.verdict}"
        current, baseline = _value(self.metric, self.current), _value(self.metric, self.baseline)
        return f"{head}: {current} vs baseline {baseline}{unit} ({self.change}, {self.p_text})"

    @property
    def change(self) -> str:
        """``+31%``, or the absolute change of a ratio or from a baseline of 0."""
        if self.delta is None:
            return "n/a"
        if self.metric == "failure_ratio" or self.delta_ratio is None:
            return f"{self.delta:+.4g}"
        return f"{self.delta_ratio * 100:+.0f}%"

    @property
    def p_text(self) -> str:
        if self.p is None:
            return "untested"
        return "p<0.001" if self.p < 0.001 else f"p={self.p:.3f}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "delta": self.delta,
            "delta_ratio": self.delta_ratio,
            "p": self.p,
            "limit": None if self.limit is None else self.limit.text,
            "verdict": self.verdict,
            "note": self.note,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Comparison:
    """The per-name table; ``rows`` in the current run's name order, the total first."""

    rows: tuple[Row, ...]
    confidence: float = DEFAULT_CONFIDENCE
    notes: tuple[str, ...] = ()
    baseline_run_id: str = ""

    def row(self, name: str, metric: str) -> Row:
        return next(r for r in self.rows if r.name == name and r.metric == metric)

    @property
    def regressions(self) -> list[Row]:
        """Regressions, the worst (largest relative change past its limit) first."""
        return sorted(
            (r for r in self.rows if r.verdict == "regression"),
            key=lambda r: -abs(r.delta_ratio if r.delta_ratio is not None else r.delta or 0),
        )

    def describe(self) -> dict[str, Any]:
        """``summary.baseline``: plain JSON."""
        return {
            "baseline_run_id": self.baseline_run_id or None,
            "method": "Mann-Whitney U over per-interval values, two-sided",
            "confidence": self.confidence,
            "notes": list(self.notes),
            "regressions": len(self.regressions),
            "worst": self.regressions[0].reason if self.regressions else None,
            "rows": [r.describe() for r in self.rows],
        }


def compare(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    limits: Iterable[Limit] = DEFAULT_LIMITS,
    confidence: float = DEFAULT_CONFIDENCE,
    baseline_run_id: str = "",
) -> Comparison:
    """The table of ``current`` against ``baseline`` (two run summaries), per name and
    limited metric; names in one run only are ``new`` or ``gone``, never regressions."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is between 0 and 1 (0.95 for 95%), got {confidence!r}")
    limits = tuple(limits)
    base, now = _entries(baseline), _entries(current)
    rows: list[Row] = []
    untested: set[str] = set()
    for name in [*now, *(n for n in base if n not in now)]:
        for limit in limits:
            if name not in base or name not in now:
                if name in now:
                    value = _number(now[name].get(limit.metric))
                    rows.append(Row(name, limit.metric, None, value, "new", limit=limit))
                else:
                    value = _number(base[name].get(limit.metric))
                    rows.append(Row(name, limit.metric, value, None, "gone", limit=limit))
                continue
            row = _judge(name, limit, base[name], now[name], 1 - confidence)
            if row.verdict == "untested":
                untested.add(row.note)
            rows.append(row)
    notes = sorted(untested)
    if not any("series" in e for e in base.values()) and base:
        notes.insert(
            0,
            "the baseline has no per-interval series (an older summary): compared on "
            "totals, without a significance test",
        )
    return Comparison(tuple(rows), confidence, tuple(dict.fromkeys(notes)), baseline_run_id)


def so_far(summary: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """The baseline ``summary`` as it stood ``seconds`` after its start, as far as its
    series tell: a live comparison sets a run's first minutes against the baseline's first
    minutes, not its whole run (a ramp-up's rate is no regression of the full rate).

    Each name's ``series`` keeps the intervals that had ended by then, and its ``rps`` and
    ``failure_ratio`` become those intervals' (a sample of them when ``stride`` > 1). Its
    ``p95_ms`` stays the whole run's: the histogram has no time in it. A name without a
    series keeps its totals.

    >>> base = {"total": {"rps": 20.0, "p95_ms": 90, "series": {"interval_s": 5,
    ...         "stride": 1, "requests": [50, 100, 100], "failures": [0, 1, 1],
    ...         "p95_ms": [80, 90, 95]}}}
    >>> first = so_far(base, 10.0)["total"]
    >>> first["rps"], first["failure_ratio"], first["p95_ms"], first["series"]["requests"]
    (15.0, 0.006666666666666667, 90, [50, 100])
    """
    cut: dict[str, Any] = dict(summary)
    if isinstance(summary.get("total"), Mapping):
        cut["total"] = _first(summary["total"], seconds)
    cut["requests"] = [
        _first(entry, seconds) if isinstance(entry, Mapping) else entry
        for entry in summary.get("requests") or ()
    ]
    return cut


def _first(entry: Mapping[str, Any], seconds: float) -> Mapping[str, Any]:
    series = entry.get("series")
    if not isinstance(series, Mapping):
        return entry
    interval = _number(series.get("interval_s")) or 0.0
    stride = max(int(_number(series.get("stride")) or 1), 1)
    if interval <= 0:
        return entry
    # Kept interval k is interval k * stride of the run; it ended at (k * stride + 1) * interval.
    kept = max(0, math.floor((seconds / interval - 1) / stride + 1e-9) + 1)
    cut = {
        key: list(values[:kept]) if isinstance(values, list) else values
        for key, values in series.items()
    }
    requests = [int(r) for r in cut.get("requests") or ()]
    failures = [int(f) for f in cut.get("failures") or ()]
    values = {**entry, "series": cut}
    if requests:
        values["rps"] = sum(requests) / (len(requests) * interval)
    if sum(requests):
        values["failure_ratio"] = sum(failures) / sum(requests)
    return values


def _entries(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The summary's rows by name: the total first, then ``METHOD name``."""
    entries: dict[str, Mapping[str, Any]] = {}
    if isinstance(summary.get("total"), Mapping):
        entries[TOTAL] = summary["total"]
    for entry in _requests(summary):
        entries[_row_name(entry)] = entry
    return entries


def _requests(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [entry for entry in summary.get("requests") or () if isinstance(entry, Mapping)]


def _row_name(entry: Mapping[str, Any]) -> str:
    return f"{entry.get('method') or ''} {entry.get('name')}".strip()


def request_names(*summaries: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Each row name of the summaries' table (``GET /search``) as Locust's ``(method,
    name)``; the total is ``("", "Aggregated")``.

    >>> request_names({"requests": [{"method": "GET", "name": "/a b"}]})
    {'Aggregated': ('', 'Aggregated'), 'GET /a b': ('GET', '/a b')}
    """
    names = {TOTAL: ("", TOTAL)}
    for summary in summaries:
        for entry in _requests(summary):
            names[_row_name(entry)] = (str(entry.get("method") or ""), str(entry.get("name")))
    return names


def _judge(
    name: str, limit: Limit, base: Mapping[str, Any], now: Mapping[str, Any], alpha: float
) -> Row:
    before, after = _number(base.get(limit.metric)), _number(now.get(limit.metric))
    if before is None or after is None:
        return Row(
            name, limit.metric, before, after, "unchanged", limit=limit, note="no value to compare"
        )
    past = limit.passed_by(before, after)
    x, y = samples(base, limit.metric), samples(now, limit.metric)
    p = None
    if min(len(x), len(y)) >= MIN_INTERVALS:
        p = mann_whitney(y, x)[1]
    if past is None:
        return Row(name, limit.metric, before, after, "unchanged", p, limit)
    if p is None:
        why = (
            "no per-interval series" if not x or not y else f"fewer than {MIN_INTERVALS} intervals"
        )
        return Row(
            name,
            limit.metric,
            before,
            after,
            "untested",
            p,
            limit,
            note=f"{why}: past the limit, but untested",
        )
    if p >= alpha:
        return Row(
            name,
            limit.metric,
            before,
            after,
            "unchanged",
            p,
            limit,
            note="past the limit, but within the runs' own variation",
        )
    verdict: Verdict = "regression" if past == limit.worse else "improvement"
    return Row(name, limit.metric, before, after, verdict, p, limit)


def samples(entry: Mapping[str, Any], metric: str) -> list[float]:
    """A name's per-interval values of ``metric`` from its summary ``series``.

    Intervals without requests have no p95 and no failure ratio.
    """
    series = entry.get("series")
    if not isinstance(series, Mapping):
        return []
    requests = [int(r) for r in series.get("requests") or ()]
    if metric == "p95_ms":
        return [float(p) for p in series.get("p95_ms") or () if p is not None]
    if metric == "failure_ratio":
        failures = series.get("failures") or ()
        return [f / r for r, f in zip(requests, failures, strict=False) if r]
    if metric == "rps":
        seconds = float(series.get("interval_s") or 0)
        return [r / seconds for r in requests] if seconds > 0 else []
    raise ValueError(f"no per-interval series for {metric!r}; expected one of {METRICS}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "none"
    if metric == "failure_ratio":
        return f"{value:.4g}"
    if metric == "rps":
        return f"{value:.2f}"
    return f"{value:.0f}"


@dataclass(frozen=True)
class _Table:
    """Rows as cells, for the text and markdown formats."""

    head: tuple[str, ...] = ("name", "metric", "baseline", "current", "change", "p", "verdict")
    cells: list[tuple[str, ...]] = field(default_factory=list)


def _cells(comparison: Comparison) -> _Table:
    table = _Table()
    for r in comparison.rows:
        table.cells.append(
            (
                r.name,
                r.metric,
                _value(r.metric, r.baseline),
                _value(r.metric, r.current),
                r.change,
                "" if r.p is None else r.p_text.removeprefix("p=").replace("p<", "<"),
                r.verdict,
            )
        )
    return table


def render(comparison: Comparison, fmt: str = "text") -> str:
    """The table as ``text`` (aligned columns), ``markdown`` (a CI comment) or ``json``."""
    if fmt == "json":
        import json

        return json.dumps(comparison.describe(), indent=2)
    table = _cells(comparison)
    regressions = comparison.regressions
    verdict = (
        f"{len(regressions)} regression(s); worst: {regressions[0].reason}"
        if regressions
        else "no regression"
    )
    footer = [
        verdict,
        f"confidence {comparison.confidence:.0%}; Mann-Whitney U over per-interval values",
        *comparison.notes,
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(table.head) + " |", "|" + "---|" * len(table.head)]
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table.cells
        ]
        return "\n".join([*lines, "", *(f"- {line}" for line in footer)]) + "\n"
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}; expected text, json or markdown")
    widths = [max(len(c) for c in column) for column in zip(table.head, *table.cells, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in (table.head, *table.cells)
    ]
    return "\n".join([*lines, "", *footer]) + "\n"
