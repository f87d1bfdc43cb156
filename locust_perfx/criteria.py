"""Pass/fail criteria (thresholds): what they say, and how a run's stats are judged by them.

A criterion reads like ``p95_ms < 500 for GET /search, abort after 10s``: a metric, a
comparison and a limit, an optional scope (one request name, or ``METHOD name``; the whole
test when absent), and options: ``abort`` (stop the test at once on a breach, after an
optional grace period) and ``per interval`` (judge each interval instead of the whole run).
The platform sends them with the run, ``--threshold`` adds or overrides them; both go
through :func:`parse_criteria`, which reports every problem at once.

:class:`Judge` evaluates them from Locust's cumulative ``RequestStats``, the same numbers
the summary and the exporter use, with the same interval arithmetic
(:class:`~locust_perfx.snapshot.EntryDelta`): never per request. Pure: no Locust runner,
no I/O, no clock but the one passed in.

>>> [criterion] = parse_criteria(["p95_ms < 500 for GET /search, abort after 10s"], "--threshold")
>>> criterion.text, criterion.abort, criterion.delay
('p95_ms < 500 for GET /search', True, 10.0)
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from locust.stats import RequestStats, StatsEntry

from locust_perfx.compare import METRICS as COMPARED
from locust_perfx.compare import (
    MIN_INTERVALS,
    TOTAL,
    Comparison,
    Direction,
    Limit,
    Row,
    compare,
    so_far,
)
from locust_perfx.exceptions import ConfigError
from locust_perfx.snapshot import EntryDelta, fresh_delta, interval_delta

METRICS: Final = (
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "avg_ms",
    "max_ms",
    "failure_ratio",
    "failures",
    "rps",
    "requests",
)
_PERCENTILE_OF: Final = {"p50_ms": 0.5, "p90_ms": 0.9, "p95_ms": 0.95, "p99_ms": 0.99}
OPERATORS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPRESSION = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<limit>baseline\s*(?P<sign>[+-])\s*(?P<amount>[^\s,%]+)\s*(?P<percent>%)?|[^\s,]+)"
    r"(?:\s+for\s+(?P<scope>[^,]+?))?\s*$"
)
EACH_NAME: Final = "each name"
"""The scope of a relative criterion judged for every request name in both runs."""
_WORSE: Final = {"<": "up", "<=": "up", ">": "down", ">=": "down"}
"""A relative limit's harmful direction, from its operator."""
_ABORT = re.compile(r"^abort(?:\s+after\s+(?P<delay>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h)?)?$")
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_METHOD = re.compile(r"^[A-Z]+$")


@dataclass(frozen=True)
class Criterion:
    """One pass/fail criterion; ``scope`` is ``""`` for the whole test."""

    metric: str
    op: str
    limit: float
    scope: str = ""
    abort: bool = False
    delay: float = 0.0
    """Seconds after the test started before a breach may abort it (k6's delayAbortEval)."""
    per_interval: bool = False
    source: str = "the platform"
    relative: bool = False
    """The limit is the baseline's value plus ``limit`` (a percentage of it when ``percent``),
    judged against the baseline run (:mod:`locust_perfx.compare`): provisionally while the
    test runs, finally at the end."""
    percent: bool = False

    @property
    def name(self) -> str:
        """What a ``--threshold`` must share with a platform criterion to override it."""
        metric = f"{self.metric} vs baseline" if self.relative else self.metric
        return f"{metric} for {self.scope}" if self.scope else metric

    @property
    def text(self) -> str:
        """The criterion as it would be written, without its options."""
        scope = f" for {self.scope}" if self.scope else ""
        limit = _number(self.limit)
        if self.relative:
            sign = "-" if self.limit < 0 else "+"
            limit = f"baseline {sign} {_number(abs(self.limit))}{'%' if self.percent else ''}"
        return f"{self.metric} {self.op} {limit}{scope}"

    @property
    def baseline_limit(self) -> Limit:
        """A relative criterion's limit, as the comparison takes it."""
        amount = abs(self.limit) / 100 if self.percent else abs(self.limit)
        worse: Direction = "up" if _WORSE.get(self.op) == "up" else "down"
        return Limit(self.metric, amount, relative=self.percent, worse=worse)

    def describe(self) -> dict[str, Any]:
        return {
            "criterion": self.text,
            "abort": self.abort,
            "delay_s": self.delay,
            "per_interval": self.per_interval,
            "source": self.source,
        }

    def holds(self, observed: float) -> bool:
        return OPERATORS[self.op](observed, self.limit)


def parse_criteria(items: Iterable[object], source: str) -> list[Criterion]:
    """Parse criteria written as text (``--threshold``) or as the platform's objects.

    One ConfigError names every bad one with its source. An object is either
    ``{"expression": "p95_ms < 500", "abort": true, "delay": 10, "per_interval": false}`` or
    ``{"metric": "p95_ms", "op": "<", "limit": 500, "scope": "GET /search", ...}``.
    """
    criteria: list[Criterion] = []
    problems: list[str] = []
    for item in items:
        try:
            criteria.append(_parse_one(item, source))
        except ConfigError as err:
            problems.extend(err.problems)
    names = [c.name for c in criteria]
    problems.extend(
        f"threshold {name!r} (from {source}) is given twice; keep one"
        for name in sorted({n for n in names if names.count(n) > 1})
    )
    if problems:
        raise ConfigError(problems)
    return criteria


def merge(platform: Sequence[Criterion], overrides: Sequence[Criterion]) -> tuple[Criterion, ...]:
    """The platform's criteria with each one an override names replaced, then the new ones."""
    by_name = {c.name: c for c in overrides}
    merged = [by_name.pop(c.name, c) for c in platform]
    return (*merged, *by_name.values())


def _parse_one(item: object, source: str) -> Criterion:
    if isinstance(item, str):
        return _parse_text(item, source)
    if not isinstance(item, Mapping):
        raise ConfigError(
            f"threshold {item!r} (from {source}): expected text like 'p95_ms < 500' or an object"
        )
    options = {
        "abort": item.get("abort", False),
        "delay": item.get("delay", 0),
        "per_interval": item.get("per_interval", False),
    }
    if "expression" in item:
        base = _parse_text(str(item["expression"]), source)
    else:
        scope = item.get("scope") or ""
        base = _parse_text(f"{item.get('metric')} {item.get('op')} {item.get('limit')}", source)
        base = replace(base, scope=str(scope).strip())
    problems = []
    if not isinstance(options["abort"], bool) or not isinstance(options["per_interval"], bool):
        problems.append(
            f"threshold {base.text!r} (from {source}): abort and per_interval are true or false"
        )
    delay = options["delay"]
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        problems.append(
            f"threshold {base.text!r} (from {source}): delay is seconds >= 0, got {delay!r}"
        )
    if problems:
        raise ConfigError(problems)
    criterion = replace(
        base,
        abort=base.abort or bool(options["abort"]),
        delay=base.delay or float(delay),
        per_interval=base.per_interval or bool(options["per_interval"]),
    )
    once = _no_per_interval_relative(criterion, f"threshold {criterion.text!r} (from {source})")
    if once:
        raise ConfigError(once)
    return criterion


def _parse_text(text: str, source: str) -> Criterion:
    head, *tail = (part.strip() for part in text.split(","))
    where = f"threshold {text.strip()!r} (from {source})"
    match = _EXPRESSION.match(head)
    if match is None:
        raise ConfigError(
            f"{where}: expected METRIC OP LIMIT [for SCOPE][, abort [after 10s]][, per interval],"
            " e.g. 'p95_ms < 500 for GET /search'"
        )
    problems = []
    metric = match["metric"]
    if metric not in METRICS:
        problems.append(f"{where}: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    relative = match["amount"] is not None
    raw = match["amount"] if relative else match["limit"]
    try:
        limit = float(raw)
    except ValueError:
        problems.append(f"{where}: the limit must be a number, got {raw!r}")
        limit = 0.0
    if relative:
        limit = -limit if match["sign"] == "-" else limit
        problems.extend(_relative_problems(where, metric, match["op"], limit))
    scope = (match["scope"] or "").strip()
    if scope == EACH_NAME and not relative:
        problems.append(
            f"{where}: 'for each name' is for limits relative to the baseline, like "
            "'p95_ms < baseline + 10% for each name'"
        )
    criterion = Criterion(
        metric,
        match["op"],
        limit,
        scope,
        source=source,
        relative=relative,
        percent=bool(match["percent"]),
    )
    for option in tail:
        abort = _ABORT.match(option)
        if abort is not None:
            delay = float(abort["delay"] or 0) * _UNIT_SECONDS[abort["unit"]]
            criterion = replace(criterion, abort=True, delay=delay)
        elif option in ("per interval", "each interval"):
            criterion = replace(criterion, per_interval=True)
        else:
            problems.append(
                f"{where}: unknown option {option!r}; expected 'abort', 'abort after 10s' or "
                "'per interval'"
            )
    problems.extend(_no_per_interval_relative(criterion, where))
    if problems:
        raise ConfigError(problems)
    return criterion


def _no_per_interval_relative(criterion: Criterion, where: str) -> list[str]:
    if criterion.relative and criterion.per_interval:
        return [
            f"{where}: a limit relative to the baseline is judged on the run so far, not per "
            "interval (its test compares the two runs' intervals); remove 'per interval'"
        ]
    return []


def _relative_problems(where: str, metric: str, op: str, amount: float) -> list[str]:
    if metric not in COMPARED:
        return [
            f"{where}: a limit relative to the baseline is for {', '.join(COMPARED)} "
            "(the metrics with a per-interval series)"
        ]
    worse = _WORSE.get(op)
    if worse is None:
        return [f"{where}: a limit relative to the baseline takes <, <=, > or >="]
    if (amount < 0) == (worse == "up") and amount:
        hint = "baseline + N" if worse == "up" else "baseline - N"
        return [f"{where}: with {op} the allowed change is {hint}, e.g. '{metric} {op} {hint}%'"]
    return []


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Result:
    """How one criterion stands: ``observed`` is ``None`` when its scope had no request."""

    criterion: Criterion
    observed: float | None
    passed: bool
    first_breach_at: float | None = None
    final: bool = False
    """Judged on the final stats: a whole-run figure then covers the whole run."""
    detail: str = ""
    """A relative criterion's finding: the worst name's numbers, or why it was not judged."""
    provisional: bool = False
    """Judged live on the run so far (a relative criterion): the end's judgement replaces it."""

    @property
    def reason(self) -> str:
        """``p95_ms < 500 for GET /search: observed 730 so far``.

        A whole-run criterion is judged again after an abort stopped the test: the figure
        that stopped it (``so far``) and the final one (``over the whole run``) differ, and
        both are shown, so each says which it is. A per-interval result keeps the first
        breached interval's figure.
        """
        if self.detail:
            mark = " (provisional)" if self.provisional else ""
            return f"{self.criterion.text}: {self.detail}{mark}"
        shown = _shown(self.criterion.metric, self.observed)
        if self.criterion.per_interval or self.observed is None:
            return f"{self.criterion.text}: observed {shown}"
        span = "over the whole run" if self.final else "so far"
        return f"{self.criterion.text}: observed {shown} {span}"

    def describe(self) -> dict[str, Any]:
        return {
            **self.criterion.describe(),
            "observed": self.observed,
            "limit": self.criterion.limit,
            "passed": self.passed,
            "first_breach_at": self.first_breach_at,
            **({"detail": self.detail} if self.detail else {}),
            **({"provisional": True} if self.provisional else {}),
        }


def _relative_result(criterion: Criterion, table: Comparison) -> Result:
    rows = [row for row in table.rows if _in_scope(criterion.scope, row.name)]
    regressions = [row for row in table.regressions if row in rows]
    if regressions:
        worst = regressions[0]
        return Result(criterion, worst.current, False, final=True, detail=worst.reason)
    judged = [row for row in rows if row.verdict not in ("new", "gone")]
    if not judged:
        return Result(
            criterion, None, True, final=True, detail="not judged: no such name in both runs"
        )
    shown = max(judged, key=_change)
    note = f"; {shown.note}" if shown.note else ""
    return Result(criterion, shown.current, True, final=True, detail=f"{shown.reason}{note}")


def _in_scope(scope: str, row_name: str) -> bool:
    """Whether a comparison row (``Aggregated``, ``METHOD name``) is in a criterion's scope."""
    if not scope:
        return row_name == TOTAL
    if scope == EACH_NAME:
        return row_name != TOTAL
    method, _, name = scope.partition(" ")
    if name and _METHOD.match(method):
        return row_name == scope
    return row_name.partition(" ")[2] == scope


def _change(row: Row) -> float:
    """How far a row moved in its harmful direction, relative where it can be."""
    change = row.delta_ratio if row.delta_ratio is not None else row.delta or 0.0
    return change if row.limit is None or row.limit.worse == "up" else -change


def _shown(metric: str, value: float | None) -> str:
    if value is None:
        return "no requests"
    if metric in ("failure_ratio",):
        return f"{value:.4g}"
    if metric == "rps":
        return f"{value:.2f}"
    return _number(round(value, 1))


def observe(metric: str, delta: EntryDelta, seconds: float) -> float | None:
    """The value of ``metric`` for what ``delta`` counts over ``seconds``; ``None``: no data."""
    if metric == "requests":
        return float(delta.requests)
    if metric == "failures":
        return float(delta.failures)
    if metric == "rps":
        return delta.requests / seconds if seconds > 0 else None
    if not delta.requests:
        return None
    if metric == "failure_ratio":
        return delta.failures / delta.requests
    if metric == "avg_ms":
        return delta.avg_ms
    if metric == "max_ms":
        return None if delta.max_ms is None else float(delta.max_ms)
    value = delta.percentile(_PERCENTILE_OF[metric])
    return None if value is None else float(value)


def scoped_entry(stats: RequestStats, scope: str) -> StatsEntry | None:
    """The stats of a scope: the total, one ``METHOD name`` entry, or every method of a name
    merged the way Locust merges worker reports (``StatsEntry.extend``)."""
    if not scope:
        return stats.total
    method, _, name = scope.partition(" ")
    if name and _METHOD.match(method):
        return stats.entries.get((name, method))
    matching = [e for (entry_name, _), e in stats.entries.items() if entry_name == scope]
    if not matching:
        return None
    merged = StatsEntry(stats, scope, "", use_response_times_cache=False)
    for entry in matching:
        merged.extend(entry)
    return merged


@dataclass
class Judge:
    """Judges one test's stats by ``criteria``: live each interval, and once at the end.

    A per-interval criterion fails the run if any interval breached it; a whole-run one is
    judged on the whole run so far, and finally on the final stats.
    """

    criteria: tuple[Criterion, ...]
    interval: float
    """Seconds between two live checks: what "per interval" means."""
    baseline: Mapping[str, Any] | None = None
    """The baseline run's summary: with it, relative criteria are also judged live
    (:meth:`check_baseline`)."""
    started_at: float = 0.0
    _baselines: dict[str, Any] = field(default_factory=dict)
    _breaches: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    _results: dict[str, Result] = field(default_factory=dict)
    _interval_started: float = 0.0

    def start(self, stats: RequestStats, now: float) -> None:
        """A test starts: judge from here (stats were cleared, or will be)."""
        self.started_at = self._interval_started = now
        self._baselines.clear()
        self._breaches.clear()
        self._results.clear()
        for criterion in self.criteria:
            if criterion.per_interval:
                self._baselines[criterion.scope] = None

    def check(self, stats: RequestStats, now: float, *, final: bool = False) -> list[Result]:
        """Judge every criterion on the interval that ends now; returns the results.

        The ``final`` interval is usually partial: per-interval criteria judge it only if it
        lasted at least half an interval (a few requests in 0.2 s say little about RPS).
        """
        seconds = now - self._interval_started
        judge_interval = not final or seconds >= self.interval / 2
        interval = {scope: self._advance(stats, scope) for scope in list(self._baselines)}
        self._interval_started = now
        for criterion in self.criteria:
            if criterion.relative:
                continue  # against the baseline: check_baseline(), judge_baseline()
            if criterion.per_interval:
                if not judge_interval and criterion.name in self._results:
                    continue
                delta = interval[criterion.scope]
                observed = None if delta is None else observe(criterion.metric, delta, seconds)
            else:
                observed = self._whole_run(stats, criterion, now)
            self._record(criterion, observed, now, final)
        return self.results()

    def finish(self, stats: RequestStats, now: float) -> list[Result]:
        """The final judgement, on the final stats (workers' last reports included)."""
        return self.check(stats, now, final=True)

    def results(self) -> list[Result]:
        return [self._results[c.name] for c in self.criteria if c.name in self._results]

    @property
    def judges_baseline_live(self) -> bool:
        return self.baseline is not None and any(c.relative for c in self.criteria)

    def check_baseline(self, summary: Mapping[str, Any], now: float) -> list[Result]:
        """Judge the relative criteria provisionally on ``summary``, the run's so far (its
        series up to the interval that just ended), against the baseline's same first
        seconds (:func:`~locust_perfx.compare.so_far`). Before ``MIN_INTERVALS`` whole
        intervals there is no test: not judged yet. A regression found here is a breach
        that ``abort`` acts on; the end's :meth:`judge_baseline` replaces these results.
        """
        assert self.baseline is not None, "judges_baseline_live says when"
        total = summary.get("total")
        series = total.get("series") if isinstance(total, Mapping) else None
        series = series if isinstance(series, Mapping) else {}
        intervals = len(series.get("requests") or ())
        seconds = (
            intervals * float(series.get("stride") or 1) * float(series.get("interval_s") or 0)
        )
        baseline = so_far(self.baseline, seconds)
        for criterion in self.criteria:
            if not criterion.relative:
                continue
            if intervals < MIN_INTERVALS:
                detail = f"not judged yet: {intervals} of {MIN_INTERVALS} intervals"
                result = Result(criterion, None, True, detail=detail, provisional=True)
            else:
                table = compare(baseline, summary, limits=[criterion.baseline_limit])
                found = _relative_result(criterion, table)
                if not found.passed:
                    self._breaches.setdefault(criterion.name, (now, found.observed))
                result = replace(
                    found,
                    first_breach_at=self._first_breach(criterion),
                    final=False,
                    provisional=True,
                    detail=f"{found.detail}, after {intervals} intervals",
                )
            self._results[criterion.name] = result
        return self.results()

    def _first_breach(self, criterion: Criterion) -> float | None:
        first = self._breaches.get(criterion.name)
        return None if first is None else first[0]

    def judge_baseline(
        self, baseline: Mapping[str, Any] | None, summary: Mapping[str, Any], why_not: str = ""
    ) -> list[Result]:
        """Judge the relative criteria: ``summary`` against the ``baseline`` run's.

        A criterion fails when a name in its scope is a regression (past its limit and
        significant, see :func:`~locust_perfx.compare.compare`); ``for each name`` covers
        every name in both runs. Without a baseline (``why_not`` says why) it is not judged,
        and passes.
        """
        for criterion in self.criteria:
            if not criterion.relative:
                continue
            if baseline is None:
                result = Result(criterion, None, True, final=True, detail=f"not judged: {why_not}")
            else:
                table = compare(baseline, summary, limits=[criterion.baseline_limit])
                result = _relative_result(criterion, table)
                if not result.passed:  # since when: the first regression seen live, if any
                    first = self._first_breach(criterion)
                    result = replace(result, first_breach_at=first)
            self._results[criterion.name] = result
        return self.results()

    def aborting(self, now: float) -> list[Result]:
        """Breached criteria that stop the test now (``abort``, past their ``delay``)."""
        return [
            result
            for result in self.results()
            if not result.passed
            and result.criterion.abort
            and now - self.started_at >= result.criterion.delay
        ]

    def _advance(self, stats: RequestStats, scope: str) -> EntryDelta | None:
        entry = scoped_entry(stats, scope)
        if entry is None:
            return None
        delta, self._baselines[scope] = interval_delta(entry, self._baselines[scope])
        return delta

    def _whole_run(self, stats: RequestStats, criterion: Criterion, now: float) -> float | None:
        entry = scoped_entry(stats, criterion.scope)
        if entry is None:
            return None
        return observe(criterion.metric, fresh_delta(entry), now - self.started_at)

    def _record(
        self, criterion: Criterion, observed: float | None, now: float, final: bool
    ) -> None:
        name = criterion.name
        breached_now = observed is not None and not criterion.holds(observed)
        if breached_now and name not in self._breaches:
            self._breaches[name] = (now, observed)
        first = self._breaches.get(name)
        if criterion.per_interval and first is not None:
            # One breached interval fails it for good; it shows what that interval observed.
            self._results[name] = Result(criterion, first[1], False, first[0])
            return
        at = None if first is None else first[0]
        self._results[name] = Result(criterion, observed, not breached_now, at, final)
