"""Thresholds: how they are written, and that the judge agrees with an independent count."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from locust.stats import RequestStats

from locust_perfx import ConfigError
from locust_perfx.criteria import (
    METRICS,
    Criterion,
    Judge,
    merge,
    parse_criteria,
)


def test_text_and_platform_objects_parse_to_the_same_criterion() -> None:
    text = parse_criteria(["p95_ms < 500 for GET /search, abort after 2m, per interval"], "x")
    objects = parse_criteria(
        [
            {
                "metric": "p95_ms",
                "op": "<",
                "limit": 500,
                "scope": "GET /search",
                "abort": True,
                "delay": 120,
                "per_interval": True,
            }
        ],
        "x",
    )
    expression = parse_criteria(
        [
            {
                "expression": "p95_ms < 500 for GET /search",
                "abort": True,
                "delay": 120,
                "per_interval": True,
            }
        ],
        "x",
    )
    assert text == objects == expression
    [criterion] = text
    assert (criterion.name, criterion.text) == (
        "p95_ms for GET /search",
        "p95_ms < 500 for GET /search",
    )
    assert (criterion.abort, criterion.delay, criterion.per_interval) == (True, 120.0, True)


def test_every_bad_criterion_is_named_with_its_source_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_criteria(
            [
                "p95 < 500",
                "rps >= lots",
                "avg_ms < 100, abort sometimes",
                "p95",
                "rps > 1",
                "rps < 9",
            ],
            "--threshold",
        )
    assert caught.value.problems == [
        "threshold 'p95 < 500' (from --threshold): unknown metric 'p95'; expected one of "
        + ", ".join(METRICS),
        "threshold 'rps >= lots' (from --threshold): the limit must be a number, got 'lots'",
        "threshold 'avg_ms < 100, abort sometimes' (from --threshold): unknown option 'abort "
        "sometimes'; expected 'abort', 'abort after 10s' or 'per interval'",
        "threshold 'p95' (from --threshold): expected METRIC OP LIMIT [for SCOPE][, abort "
        "[after 10s]][, per interval], e.g. 'p95_ms < 500 for GET /search'",
        "threshold 'rps' (from --threshold) is given twice; keep one",
    ]


def test_an_override_replaces_the_platform_criterion_of_the_same_metric_and_scope() -> None:
    platform = parse_criteria(["p95_ms < 500", "rps >= 10 for /a"], "the platform")
    overrides = parse_criteria(["p95_ms < 800", "failures == 0"], "--threshold")
    assert [c.text for c in merge(platform, overrides)] == [
        "p95_ms < 800",
        "rps >= 10 for /a",
        "failures == 0",
    ]


def _rounded(ms: int) -> int:
    """Locust's histogram rounding (``StatsEntry._log_time_of_request``), written out."""
    if ms < 100:
        return ms
    digits = -1 if ms < 1000 else -2 if ms < 10000 else -3
    return int(round(ms, digits))


def _percentile(times: list[int], percent: float) -> int:
    """Locust's rule, walking the sorted times from the slowest."""
    ordered = sorted((_rounded(t) for t in times), reverse=True)
    count = len(ordered)
    for processed, value in enumerate(ordered, start=1):
        if count - processed <= int(count * percent):
            return value
    return ordered[-1]


def _expected(metric: str, requests: list[tuple[int, bool]], seconds: float) -> float | None:
    times = [t for t, _ in requests]
    failures = sum(failed for _, failed in requests)
    if metric == "requests":
        return float(len(requests))
    if metric == "failures":
        return float(failures)
    if metric == "rps":
        return len(requests) / seconds
    if not requests:
        return None
    if metric == "failure_ratio":
        return failures / len(requests)
    if metric == "avg_ms":
        return sum(times) / len(times)
    if metric == "max_ms":
        return float(max(_rounded(t) for t in times))
    return float(
        _percentile(times, {"p50_ms": 0.5, "p90_ms": 0.9, "p95_ms": 0.95, "p99_ms": 0.99}[metric])
    )


REQUEST = st.tuples(st.integers(1, 20_000), st.booleans())
INTERVALS = st.lists(st.lists(REQUEST, max_size=40), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(intervals=INTERVALS, metric=st.sampled_from(METRICS), limit=st.integers(0, 2000))
def test_the_judge_agrees_with_an_independent_count(
    intervals: list[list[tuple[int, bool]]], metric: str, limit: int
) -> None:
    per_interval = Criterion(metric, "<", float(limit), "/a", per_interval=True)
    whole_run = Criterion(metric, "<=", float(limit), "GET /a")
    judge = Judge((per_interval, whole_run), interval=5.0)
    stats = RequestStats()
    judge.start(stats, 0.0)
    seen: list[tuple[int, bool]] = []
    first_breach: float | None = None
    for index, requests in enumerate(intervals, start=1):
        for ms, failed in requests:
            stats.log_request("GET", "/a", ms, 10)
            if failed:
                stats.log_error("GET", "/a", "boom")
        seen += requests
        now = 5.0 * index
        observed = _expected(metric, requests, 5.0)
        if first_breach is None and observed is not None and not observed < limit:
            first_breach = now
        results = {r.criterion: r for r in judge.check(stats, now)}
        assert results[per_interval].passed is (first_breach is None)
        total = _expected(metric, seen, now) if stats.entries else None
        whole = results[whole_run]
        assert whole.observed == pytest.approx(total)
        assert whole.passed is (total is None or total <= limit)
    assert any(not result.passed for result in judge.results()) is (
        first_breach is not None or not judge.results()[1].passed
    )


def test_an_abort_and_the_final_reason_say_which_figure_is_which() -> None:
    [failures] = parse_criteria(["failures < 10, abort"], "x")
    [interval] = parse_criteria(["failures < 5 for GET /a, abort, per interval"], "x")
    judge = Judge((failures, interval), interval=5.0)
    stats = RequestStats()
    judge.start(stats, 0.0)

    def fail(times: int) -> None:
        for _ in range(times):
            stats.log_request("GET", "/a", 10, 1)
            stats.log_error("GET", "/a", "boom")

    fail(27)
    judge.check(stats, 5.0)
    stopped = sorted(r.reason for r in judge.aborting(5.0))
    fail(59)  # the users still running while the test stops
    final = sorted(r.reason for r in judge.finish(stats, 8.0))

    per_interval = "failures < 5 for GET /a: observed 27"  # the first breached interval's
    assert stopped == ["failures < 10: observed 27 so far", per_interval]
    assert final == ["failures < 10: observed 86 over the whole run", per_interval]
